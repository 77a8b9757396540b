"""One pipelined Redis connection for the webhook's hot path.

Every inbound message costs two Redis commands (the gate's script, then storing the reply).
Profiling the webhook showed redis-py spending about 60 µs of Python per command (pool
checkout, encoders, instrumentation hooks) against 5 µs here: commands are packed by hiredis,
written to one connection (all of one event-loop pass in one write) and answered in order, so
concurrent requests pipeline naturally without a pool. Everything else uses redis-py; this
covers only the few commands the webhook needs, for a standalone Redis server (TCP, TLS or a
Unix socket), with the same address, credentials, database and TLS settings as the redis-py
client it is made ``like``.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# A command unanswered this long means the server or the link is stuck: drop the connection so
# every waiting request fails fast. Longer than any wait a caller chose: the webhook gives each
# command a deadline inside its reply budget (under WeChat's 5 s), and dropping the connection
# earlier failed every request on it. At 2 s, a Redis that stalled between 2 s and the budget
# (a busy machine) made the webhook answer a whole burst "busy", and template receipts were lost.
COMMAND_TIMEOUT = 5.0
# How long a command nobody waits for (``post``) may wait for one that someone does, to leave in
# the same write: every write wakes Redis, which on a shared core takes the CPU from this process.
LINGER = 0.002


class LuaScript:
    """A Lua script run by its SHA1, loaded on first use and again after a server restart."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        # (sent at, reply, its deadline), in the order the commands were sent.
        self.waiting: deque[tuple[float, asyncio.Future[Any], float | None]] = deque()
        # One timer for every deadline, at the earliest: a timer made and cancelled per command
        # cost more than the rest of sending it. Deadlines mostly come in the order sent, so a
        # new one rarely moves it.
        self.expiry: asyncio.TimerHandle | None = None
        self.expiry_at = float("inf")
        self.transport: asyncio.Transport | None = None
        # Commands written in one pass of the event loop leave in one write: a socket write
        # per command was the pipe's largest cost under load.
        self.outgoing: list[bytes] = []
        # The write is due at the end of this pass; or, for posted commands alone, at a timer.
        self.due = False
        self.linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            _, future, _ = self.waiting.popleft()
            if future.done():  # its caller stopped waiting
                continue
            if isinstance(reply, hiredis.ReplyError):
                text = str(reply)
                error = NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text)
                future.set_exception(error)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.fail_all(RedisConnectionError("connection to Redis lost"))

    def send(self, packed: bytes, *, linger: bool = False) -> None:
        """Queue ``packed`` for the write at the end of this pass of the event loop; with
        ``linger``, for the next such write, or ``LINGER`` from now if none comes sooner."""
        self.outgoing.append(packed)
        if self.due:
            return
        if not linger:
            self.due = True
            asyncio.get_running_loop().call_soon(self.flush)
        elif self.linger is None:
            self.linger = asyncio.get_running_loop().call_later(LINGER, self.flush)

    def flush(self) -> None:
        """Write the queued commands (lost with the connection if it closed meanwhile)."""
        self.due = False
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None
        outgoing, self.outgoing = self.outgoing, []
        if outgoing and self.transport is not None:
            self.transport.write(b"".join(outgoing))

    def fail_all(self, error: Exception) -> None:
        while self.waiting:
            _, future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry, self.expiry_at = None, float("inf")

    def expire_by(self, deadline: float) -> None:
        """Make sure the replies waited for until ``deadline`` fail then if still unanswered."""
        if deadline < self.expiry_at:
            if self.expiry is not None:
                self.expiry.cancel()
            self.expiry_at = deadline
            self.expiry = asyncio.get_running_loop().call_at(deadline, self.expire)

    def expire(self) -> None:
        """Fail the replies whose deadline has come (their callers stop waiting; the replies
        keep their place in the queue, so later ones still find theirs); look again at the
        next deadline."""
        self.expiry, self.expiry_at = None, float("inf")
        now = asyncio.get_running_loop().time()
        following = float("inf")
        for _, future, deadline in self.waiting:
            if deadline is None or future.done():
                continue
            if deadline <= now:
                future.set_exception(RedisTimeoutError("Redis did not answer within the deadline"))
            else:
                following = min(following, deadline)
        if following != float("inf"):
            self.expire_by(following)


def _send(
    protocol: _Protocol, *command: Any, deadline: float | None = None, linger: bool = False
) -> asyncio.Future[Any]:
    """Send ``command`` (in order with every other); the future is its reply, or a
    TimeoutError once the event loop's clock reaches ``deadline``. ``linger``: see
    ``_Protocol.send``."""
    future = asyncio.get_running_loop().create_future()
    # The deadline is the reply's own, not a timeout around the caller's await: cheaper, and
    # the reply keeps its place in the queue.
    if deadline is not None:
        protocol.expire_by(deadline)
    protocol.waiting.append((time.monotonic(), future, deadline))
    protocol.send(hiredis.pack_command(command), linger=linger)
    return future


class RedisPipe:
    """``await pipe.execute("SET", key, value, "EX", 60)``, pipelined on one connection."""

    def __init__(
        self,
        address: dict[str, Any],
        master: Callable[[], Awaitable[tuple[str, int]]] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``address``: redis-py's connection keywords; ``master``: asked for the server's
        address at each connection instead (a Sentinel-managed deployment's current master);
        ``tls``: speak TLS to a TCP server with this context."""
        self._address = address
        self._master = master
        self._tls = tls
        self._protocol: _Protocol | None = None
        # One connection attempt that every caller awaits: a lock would hand the new connection
        # to its waiters one per loop pass, seconds for a burst of hundreds under load.
        self._connecting: asyncio.Task[_Protocol] | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    @classmethod
    def like(cls, client: Redis) -> RedisPipe:
        """A pipe to the same server, credentials, database and TLS settings as a redis-py
        client (with Sentinel, to whichever server is master when it connects)."""
        pool = client.connection_pool
        address = dict(pool.connection_kwargs)
        tls = None
        if issubclass(pool.connection_class, SSLConnection):
            # A rediss:// URL or ssl=True: redis-py's own context for its ssl_* settings (CA,
            # client certificate, hostname check), so the pipe trusts exactly what it trusts.
            tls = pool.connection_class(**address).ssl_context.get()
        return cls(address, getattr(pool, "get_master_address", None), tls)

    async def execute(self, *command: Any, deadline: float | None = None) -> Any:
        """Send one command and return its reply (errors raise redis-py's exceptions).

        ``deadline`` (the event loop's clock, ``loop.time()``): stop waiting then, connecting
        included, with redis-py's TimeoutError. The command may still run after it."""
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            protocol = await self._connect(deadline)
        try:
            return await _send(protocol, *command, deadline=deadline)
        except ResponseError as exc:
            # A master demoted by a failover answers writes with READONLY: reconnect, and so
            # find the new master, for the next command.
            if str(exc).startswith("READONLY") and protocol.transport is not None:
                protocol.transport.close()
            raise

    def post(self, *command: Any) -> asyncio.Future[Any]:
        """Send one command without waiting for it: the future is its reply (errors as in
        ``execute``). On a live connection the command is queued at once, in order with every
        other, and leaves with the next command someone awaits (one write, one wake-up of
        Redis for both), or within ``LINGER``; the caller waits for nothing and no task is
        made. Without a connection, ``execute`` connects first."""
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            return asyncio.ensure_future(self.execute(*command))
        return _send(protocol, *command, linger=True)

    async def run_script(
        self, script: LuaScript, keys: list[str], args: list[Any], deadline: float | None = None
    ) -> Any:
        """EVALSHA ``script``; on NOSCRIPT (first use, or Redis restarted) load it and retry;
        all of it by ``deadline`` (see ``execute``)."""
        try:
            return await self.execute(
                "EVALSHA", script.sha, len(keys), *keys, *args, deadline=deadline
            )
        except NoScriptError:
            await self.execute("SCRIPT", "LOAD", script.source, deadline=deadline)
            return await self.execute(
                "EVALSHA", script.sha, len(keys), *keys, *args, deadline=deadline
            )

    async def close(self) -> None:
        """Close the connection once the replies still awaited have come (commands posted
        without waiting included), at most ``COMMAND_TIMEOUT``; any still waiting then fail."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        protocol = self._protocol
        if protocol is not None:
            # Not only the last: a caller may have stopped waiting for it at its deadline.
            unanswered = [future for _, future, _ in protocol.waiting if not future.done()]
            if unanswered:
                await asyncio.wait(unanswered, timeout=COMMAND_TIMEOUT)
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None

    async def _connect(self, deadline: float | None) -> _Protocol:
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
        # Shielded: one caller giving up must not cancel the attempt the others await.
        if deadline is None:
            return await asyncio.shield(self._connecting)
        try:
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(self._connecting)
        except TimeoutError:
            raise RedisTimeoutError("no connection to Redis within the deadline") from None

    async def _open(self) -> _Protocol:
        if self._protocol is not None and self._protocol.transport is not None:
            return self._protocol
        loop = asyncio.get_running_loop()
        address = self._address
        timeout = address.get("socket_connect_timeout") or COMMAND_TIMEOUT
        protocol: _Protocol | None = None
        try:
            async with asyncio.timeout(timeout):
                if address.get("path"):
                    _, protocol = await loop.create_unix_connection(_Protocol, address["path"])
                else:
                    host, port = address.get("host", "localhost"), address.get("port", 6379)
                    if self._master is not None:
                        host, port = await self._master()
                    _, protocol = await loop.create_connection(_Protocol, host, port, ssl=self._tls)
                # AUTH and SELECT are answered before the connection is shared, so no other
                # command can reach Redis ahead of them, nor use a connection they failed on.
                for reply in [_send(protocol, *command) for command in self._setup()]:
                    await reply
        except (OSError, TimeoutError, RedisError) as exc:
            if protocol is not None and protocol.transport is not None:
                protocol.transport.close()
            raise RedisConnectionError(f"cannot connect to Redis ({exc})") from None
        self._protocol = protocol
        if self._watchdog is None:
            self._watchdog = loop.call_later(COMMAND_TIMEOUT / 4, self._check_stuck)
        return protocol

    def _setup(self) -> list[tuple[Any, ...]]:
        """The commands a new connection starts with: AUTH (the password alone unless a user
        is named, as servers before Redis 6 know only that form), the client's name, SELECT."""
        commands: list[tuple[Any, ...]] = []
        password = self._address.get("password")
        if password:
            username = self._address.get("username")
            commands.append(("AUTH", username, password) if username else ("AUTH", password))
        if self._address.get("client_name"):
            commands.append(("CLIENT", "SETNAME", self._address["client_name"]))
        if self._address.get("db"):
            commands.append(("SELECT", self._address["db"]))
        return commands

    def _check_stuck(self) -> None:
        protocol = self._protocol
        if protocol is not None and protocol.waiting:
            sent_at, _, _ = protocol.waiting[0]
            if time.monotonic() - sent_at > COMMAND_TIMEOUT and protocol.transport is not None:
                protocol.fail_all(RedisTimeoutError("Redis did not answer in time"))
                protocol.transport.abort()
        self._watchdog = asyncio.get_running_loop().call_later(
            COMMAND_TIMEOUT / 4, self._check_stuck
        )
