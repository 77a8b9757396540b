"""Routing: intents from words and menu keys, and the order routes are tried in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from handlers.inbound import Inbound
from handlers.intents import normalize
from handlers.router import Router, event, intent, kind, state
from handlers.understanding.keywords import IntentMatcher


def _msg(**fields: object) -> Inbound:
    values: dict[str, object] = {"openid": "o_x", "kind": "text", "sent_at": datetime.now(UTC)}
    return Inbound(**{**values, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("积分", "积分"),
        (" 积分 ", "积分"),
        ("积分？", "积分"),
        ("积分!!", "积分"),
        ("ＨＥＬＰ", "help"),
        ("?", "?"),
        ("？", "?"),
        ("", ""),
    ],
)
def test_normalize(typed: str, expected: str) -> None:
    assert normalize(typed) == expected


def test_matcher_maps_words_and_menu_keys() -> None:
    matcher = IntentMatcher(
        {"points": ["积分", "Points"], "help": ["帮助"]}, {"MENU_POINTS": "points"}
    )
    assert matcher.for_text("points") == "points"
    assert matcher.for_text("我的积分") is None
    assert matcher.for_menu_key("MENU_POINTS") == "points"
    assert matcher.for_menu_key("OTHER") is None
    assert matcher.first_keyword("points") == "积分"


async def _answer(msg: Inbound) -> None:
    return None


def _handler() -> object:
    async def handler(msg: Inbound) -> None:
        return await _answer(msg)

    return handler


def test_first_matching_route_wins_and_children_come_after() -> None:
    parent, child = Router("parent"), Router("child")
    in_state = parent.on(state("rating"))(_handler())
    by_intent = child.on(intent("points"))(_handler())
    any_text = child.on(kind("text"))(_handler())
    on_follow = child.on(event("subscribe"))(_handler())
    parent.include(child)
    assert parent.resolve(_msg(intent="points", state="rating")) is in_state
    assert parent.resolve(_msg(intent="points")) is by_intent
    assert parent.resolve(_msg()) is any_text
    assert parent.resolve(_msg(kind="event", event="subscribe")) is on_follow
    assert parent.resolve(_msg(kind="event", event="scan")) is None
    assert list(parent.intents()) == ["points"]
