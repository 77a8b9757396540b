"""Declarative routing, after aiogram: each capability owns a Router, the app composes them.

    router = Router("points")

    @router.on(intent("points"))
    async def show_balance(msg: Inbound) -> Reply: ...

The first route whose filters all match wins; included routers are tried in order after the
including router's own routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from handlers.inbound import Inbound
from messages.replies import Reply

Handler = Callable[[Inbound], Awaitable[Reply | None]]


class Declined(Exception):
    """Raised by a handler that leaves the message to the routes after it (the dispatcher
    resolves again with the member's open state cleared)."""


class Filter:
    """A condition on an inbound message; ``intent`` names the capability it serves, if any."""

    intent: str | None = None

    def __call__(self, msg: Inbound) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class _Intent(Filter):
    intent: str | None

    def __call__(self, msg: Inbound) -> bool:
        return msg.intent == self.intent


@dataclass(frozen=True)
class _Event(Filter):
    names: frozenset[str]

    def __call__(self, msg: Inbound) -> bool:
        return msg.kind == "event" and msg.event in self.names


@dataclass(frozen=True)
class _Kind(Filter):
    kinds: frozenset[str]

    def __call__(self, msg: Inbound) -> bool:
        return msg.kind in self.kinds


@dataclass(frozen=True)
class _State(Filter):
    state: str

    def __call__(self, msg: Inbound) -> bool:
        return msg.state == self.state


def intent(name: str) -> Filter:
    """The member asked for ``name`` by keyword or menu key (see ``[chat]`` in the config)."""
    return _Intent(name)


def event(*names: str) -> Filter:
    """An event of one of these (lower-cased, as wechatpy names them) types."""
    return _Event(frozenset(names))


def kind(*kinds: str) -> Filter:
    """A message of one of these MsgTypes."""
    return _Kind(frozenset(kinds))


def state(name: str) -> Filter:
    """The member's conversation is in this state (an open question, a handoff…)."""
    return _State(name)


class Router:
    """An ordered table of (filters, handler), plus included routers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._routes: list[tuple[tuple[Filter, ...], Handler]] = []
        self._children: list[Router] = []

    def on(self, *filters: Filter) -> Callable[[Handler], Handler]:
        """Register the decorated handler for messages matching every filter."""

        def register(handler: Handler) -> Handler:
            self._routes.append((filters, handler))
            return handler

        return register

    def include(self, *routers: Router) -> None:
        """Try these routers, in order, after this router's own routes."""
        self._children.extend(routers)

    def resolve(self, msg: Inbound) -> Handler | None:
        """The handler for ``msg``, or None when nothing here answers to it."""
        for filters, handler in self._routes:
            if all(f(msg) for f in filters):
                return handler
        for child in self._children:
            found = child.resolve(msg)
            if found is not None:
                return found
        return None

    def intents(self) -> Iterator[str]:
        """Every intent some handler in this tree answers to."""
        for filters, _ in self._routes:
            for f in filters:
                if f.intent:
                    yield f.intent
        for child in self._children:
            yield from child.intents()
