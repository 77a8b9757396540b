"""``/wechat`` on a port of its own, HTTP/1.1 parsed by httptools (``[server] webhook_port``).

aiohttp's request machinery (its request and response objects, router, middleware chain and
writer) cost about 55-80 µs of CPU per request on this project's bench machine; the same
signature check and fixed reply on an asyncio protocol over httptools (llhttp, as aiohttp's own
parser) cost about 20. WeChat's pushes are the one traffic that comes in thousands a second, so
the webhook gets this listener, and everything else stays on aiohttp. The endpoint's behaviour
is ``Webhook``'s, shared with the aiohttp route; this module only speaks HTTP: keep-alive and
pipelined requests answered in order, ``Expect: 100-continue``, the body limit, and a clean
stop that answers what has arrived. Each request gets the same log line and metrics as on
aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote_plus

import httptools

from bot.metrics import Metrics
from bot.request_log import RequestLog
from bot.wechat.webhook import Answer, Webhook

log = logging.getLogger(__name__)

PATH = b"/wechat"
ROUTE = "/wechat"
# Requests a client may have waiting on one connection before it is read no further.
MAX_QUEUED = 32
# A connection with nothing to answer is closed after this long without a byte (aiohttp's
# keep-alive default). Slow senders are nginx's to absorb: it buffers a request before
# passing it on.
IDLE_SECONDS = 75.0
_REASONS = {status.value: status.phrase for status in HTTPStatus}


class _Clock:
    """The ``Date`` header, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def date(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True).encode()
        return self._value


def _query(raw: bytes | None) -> dict[str, str]:
    """The query's parameters, the first value of each (as aiohttp's ``query.get``), read as
    ``parse_qsl(…, keep_blank_values=True)`` reads them. WeChat's parameters are hex, digits
    and base64url, so a part is unquoted only when it has something to unquote: parse_qsl's
    unquoting of every name and value was a quarter of this listener's own cost."""
    params: dict[str, str] = {}
    if not raw:
        return params
    for part in raw.decode("latin-1").split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            name, value = unquote_plus(name), unquote_plus(value)
        params.setdefault(name, value)
    return params


class _Request:
    __slots__ = ("arrived", "body", "http10", "keep_alive", "method", "refused", "url")

    def __init__(self, arrived: float) -> None:
        self.method = ""
        self.url = b""
        self.body = bytearray()
        self.keep_alive = True
        self.http10 = False
        self.arrived = arrived
        # Answered without the webhook: a status and its reason.
        self.refused: tuple[int, str] | None = None


class WebhookListener:
    """The listening socket and its connections; ``start`` and ``stop`` from the app's life."""

    def __init__(
        self,
        webhook: Webhook,
        lines: RequestLog,
        metrics: Metrics,
        max_body_bytes: int,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.webhook = webhook
        self.idle_seconds = idle_seconds
        self.lines = lines
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.clock = _Clock()
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (shared with the other web processes on the host)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, reuse_port=True, backlog=1024
        )

    @property
    def port(self) -> int:
        """The port listened on (the one the OS chose, when started on port 0)."""
        if self._server is None:
            raise RuntimeError("not listening")
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, grace: float = 10.0) -> None:
        """Stop listening, answer the requests that have arrived, then close every
        connection (waiting at most ``grace`` seconds for the answers)."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self.connections):
            connection.closing = True
            connection.close_if_idle()
        serving = [c.serving for c in self.connections if c.serving is not None]
        if serving:
            await asyncio.wait(serving, timeout=grace)
        for connection in list(self.connections):
            connection.close()
        await self._server.wait_closed()
        self._server = None


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them one at a time in order."""

    def __init__(self, listener: WebhookListener) -> None:
        self.listener = listener
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[_Request] = deque()
        self.current: _Request | None = None
        self.serving: asyncio.Task[None] | None = None
        self.closing = False
        self.paused = False
        # A request could not be read to its end: nothing after it is read.
        self.broken = False
        self.loop = asyncio.get_running_loop()
        # One idle timer a connection, re-armed when it fires: a timer made and cancelled per
        # request cost more than the rest of the connection's bookkeeping.
        self.idle: asyncio.TimerHandle | None = None
        self.active_at = self.loop.time()

    # asyncio's side.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, though they are one.
        self.transport = cast(asyncio.Transport, transport)
        self.listener.connections.add(self)
        self.idle = self.loop.call_later(self.listener.idle_seconds, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        # What is being answered runs on (its outcome is stored for WeChat's retry); what was
        # queued behind it had no answer yet and is dropped with the connection.
        self.listener.connections.discard(self)
        self.queue.clear()
        self.transport = None
        if self.idle is not None:
            self.idle.cancel()

    def data_received(self, data: bytes) -> None:
        self.active_at = self.loop.time()
        if self.broken:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "upgrade not supported")
        except httptools.HttpParserError:
            self._fail(400, "malformed request")

    # httptools' side.
    def on_message_begin(self) -> None:
        self.current = _Request(self.loop.time())

    def on_url(self, url: bytes) -> None:
        if self.current is not None:
            self.current.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" and value.isdigit():
            if int(value) > self.listener.max_body_bytes:
                self._fail(413, "body too large")
        elif name == b"expect" and value.lower() == b"100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_headers_complete(self) -> None:
        request = self.current
        if request is None:
            return  # refused on a header
        request.method = self.parser.get_method().decode("latin-1")
        request.keep_alive = self.parser.should_keep_alive()
        request.http10 = self.parser.get_http_version() == "1.0"

    def on_body(self, body: bytes) -> None:
        request = self.current
        if request is None:
            return  # refused while its body was on the way
        request.body += body
        if len(request.body) > self.listener.max_body_bytes:
            self._fail(413, "body too large")

    def on_message_complete(self) -> None:
        request, self.current = self.current, None
        if request is None:
            return
        self.queue.append(request)
        if len(self.queue) > MAX_QUEUED and self.transport and not self.paused:
            self.transport.pause_reading()
            self.paused = True
        if self.serving is None:
            self.serving = self.loop.create_task(self._serve())

    # Answering.
    async def _serve(self) -> None:
        try:
            while self.queue:
                request = self.queue.popleft()
                resume = self.paused and not self.broken and len(self.queue) <= MAX_QUEUED // 2
                if resume and self.transport:
                    self.transport.resume_reading()
                    self.paused = False
                await self._answer(request)
                if not request.keep_alive:
                    self.close()
                    return
        finally:
            self.serving = None
        self.active_at = self.loop.time()
        self.close_if_idle()

    async def _answer(self, request: _Request) -> None:
        listener = self.listener
        fields: dict[str, Any] = {}
        started = time.perf_counter()
        status = 500
        try:
            answer = await self._dispatch(request, fields)
            status = answer.status
            self._write(answer, request.keep_alive and not self.closing, request.http10)
        except Exception:
            log.exception("webhook request failed")
            self._write(Answer(500, "internal error"), False, request.http10)
            request.keep_alive = False
        finally:
            elapsed = time.perf_counter() - started
            route = ROUTE if request.url.split(b"?", 1)[0] == PATH else "unmatched"
            listener.metrics.observe_request(route, status, elapsed)
            line = {"method": request.method, "route": route, "status": status}
            line["ms"] = round(elapsed * 1000, 2)
            listener.lines.write(line | fields)

    async def _dispatch(self, request: _Request, fields: dict[str, Any]) -> Answer:
        if request.refused is not None:
            status, reason = request.refused
            return Answer(status, reason)
        try:
            url = httptools.parse_url(bytes(request.url))
        except httptools.HttpParserInvalidURLError:
            return Answer(400, "bad URL")
        if url.path != PATH:
            return Answer(404, "not found")
        webhook = self.listener.webhook
        if request.method == "POST":
            query = _query(url.query)
            return await webhook.receive_body(query, bytes(request.body), fields, request.arrived)
        if request.method == "GET":
            return webhook.verify_query(_query(url.query), fields)
        return Answer(405, "method not allowed")

    def _write(self, answer: Answer, keep_alive: bool, http10: bool) -> None:
        if self.transport is None:
            return
        if not keep_alive:
            connection = b"Connection: close\r\n"
        else:
            connection = b"Connection: keep-alive\r\n" if http10 else b""
        body = answer.text.encode()
        head = (
            b"HTTP/1.1 %d %s\r\nContent-Type: %s; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Date: %s\r\n%s\r\n"
            % (
                answer.status,
                _REASONS.get(answer.status, "Unknown").encode(),
                answer.content_type.encode(),
                len(body),
                self.listener.clock.date(),
                connection,
            )
        )
        self.transport.write(head + body)

    def _fail(self, status: int, reason: str) -> None:
        """A request that cannot be read (malformed, or its body too large to be worth
        reading): answered after those before it, and the connection closed."""
        request = self.current or _Request(self.loop.time())
        self.current = None
        request.refused = (status, reason)
        request.keep_alive = False
        request.body = bytearray()
        self.queue.append(request)
        self.broken = True
        if self.transport is not None and not self.paused:
            self.transport.pause_reading()
            self.paused = True
        if self.serving is None:
            self.serving = self.loop.create_task(self._serve())

    def _check_idle(self) -> None:
        """Close the connection once it has had nothing to read or answer for ``idle_seconds``
        (a request half received is not idle: slow senders are nginx's); else look again
        when that could first be true."""
        self.idle = None
        if self.transport is None:
            return
        wait = self.listener.idle_seconds
        if self.serving is None and not self.queue and self.current is None:
            quiet = self.loop.time() - self.active_at
            if quiet >= wait:
                self.close()
                return
            wait -= quiet
        self.idle = self.loop.call_later(wait, self._check_idle)

    def close_if_idle(self) -> None:
        """Close the connection when it is stopping and nothing is left to answer."""
        if self.closing and self.serving is None and not self.queue and self.current is None:
            self.close()

    def close(self) -> None:
        """Close the connection (what is written is sent first)."""
        if self.transport is not None:
            with contextlib.suppress(RuntimeError):
                self.transport.close()
