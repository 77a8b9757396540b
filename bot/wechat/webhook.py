"""``GET|POST /wechat``: WeChat's push protocol, and nothing of the programme's rules.

Checks the signature and timestamp, decrypts in safe mode, parses, passes the gate (dedupe and
interaction record), hands the message to the dispatcher under a time budget, renders and,
in safe mode, encrypts the reply.

The budget (``reply_budget_seconds``) runs from the request's arrival, and every wait on the
way is bounded by it: the gate (past its deadline: the busy reply, nothing done), the handler
(past its share: ``success`` now, the reply later by customer-service message). The outcome
for retries is stored with the answer, not waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

from bot.logs import mask_openid
from bot.metrics import Metrics
from bot.request_log import LOG_FIELDS
from bot.tasks import BackgroundTasks
from bot.wechat.client import WeChatAPIError, WeChatClient
from bot.wechat.cs_window import WINDOW_ERRORS, CustomerServiceWindows
from bot.wechat.gate import (
    ASYNC,
    EVENT_WINDOW,
    MESSAGE_WINDOW,
    PENDING,
    REPLY,
    InboundGate,
    dedupe_key,
)
from bot.wechat.rate_limit import RateLimiter
from bot.wechat.safe_mode import EnvelopeError, SafeMode
from bot.wechat.settings import WeChatConfig
from bot.wechat.xml_codec import (
    BadMessage,
    parse_inbound,
    reject_declarations,
    render_reply,
)
from handlers.dispatcher import Dispatcher
from handlers.inbound import Inbound
from messages import copy
from messages.outbound import custom_message
from messages.replies import Reply, TextReply
from models.ratings import OpenQuestion

log = logging.getLogger(__name__)

SUCCESS = "success"
# The end of the budget kept for answering (at most a quarter of it): rendering, encrypting and
# the way back to WeChat.
ANSWER_SHARE = 0.25
_MESSAGE_KINDS = frozenset({"text", "image", "voice", "video", "shortvideo", "location", "link"})
_WINDOW_EVENTS = frozenset({"click", "subscribe", "subscribe_scan", "scan"})
# WeChat's reports on the template and mass sends we made, not anything a member did.
_REPORTS = frozenset({"templatesendjobfinish", "masssendjobfinish"})


# The query string's parameters, first value of each (aiohttp's MultiDict or a plain dict).
Query = Mapping[str, str]
TEXT, XML = "text/plain", "application/xml"


@dataclass(frozen=True, slots=True)
class Answer:
    """What the endpoint answers, whichever HTTP server carried the request."""

    status: int
    text: str
    content_type: str = TEXT


def _response(answer: Answer) -> web.Response:
    return web.Response(status=answer.status, text=answer.text, content_type=answer.content_type)


class Rejected(Exception):
    """A request refused before anything was written: HTTP status and a short reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _window(msg: Inbound) -> tuple[int, int] | None:
    """The customer-service window this message opens, if it is a member's interaction."""
    if msg.kind in _MESSAGE_KINDS:
        return MESSAGE_WINDOW
    if msg.kind == "event" and msg.event in _WINDOW_EVENTS:
        return EVENT_WINDOW
    return None


def _log_unstored(stored: asyncio.Future[Any]) -> None:
    """The outcome's store answered: the work is done and its reply gone out, so a failed
    write only means a retry of this message would get "success" instead of the reply."""
    if not stored.cancelled() and stored.exception() is not None:
        log.error("could not store the outcome for retries")


async def _done_by(task: asyncio.Task[Any], deadline: float) -> bool:
    """Wait for ``task`` until the event loop's clock reaches ``deadline``; whether it is done.
    The task runs on either way. One future and one timer: ``asyncio.wait`` with a timeout
    costs a set, a waiter, a timer and a callback per task on every message. A handler that
    needs no I/O (积分 from the points cache) finishes in its first step, which the one pass of
    the event loop given first lets it take: then nothing is set up to wait for it."""
    await asyncio.sleep(0)
    if task.done():
        return True
    loop = task.get_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def release(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    task.add_done_callback(release)
    timer = loop.call_at(deadline, release)
    try:
        await waiter
    finally:
        timer.cancel()
        task.remove_done_callback(release)
    return task.done()


class Webhook:
    """The endpoint's behaviour, wired by the app factory."""

    def __init__(
        self,
        config: WeChatConfig,
        gate: InboundGate,
        dispatcher: Dispatcher,
        wechat: WeChatClient,
        metrics: Metrics,
        tasks: BackgroundTasks,
        windows: CustomerServiceWindows,
        limiter: RateLimiter,
    ) -> None:
        """``windows`` and ``limiter``: the customer-service windows and the API's shared rate
        limits, which late replies obey like every other customer-service message."""
        self._config = config
        self._token = config.token.get_secret_value()
        self._crypto = (
            SafeMode(self._token, config.encoding_aes_key.get_secret_value(), config.appid)
            if config.safe_mode
            else None
        )
        self._gate = gate
        self._dispatcher = dispatcher
        self._wechat = wechat
        self._metrics = metrics
        self._tasks = tasks
        self._windows = windows
        self._limiter = limiter

    async def verify(self, request: web.Request) -> web.Response:
        """``GET /wechat`` through aiohttp: see ``verify_query``."""
        return _response(self.verify_query(request.query, request[LOG_FIELDS]))

    async def receive(self, request: web.Request) -> web.Response:
        """``POST /wechat`` through aiohttp: see ``receive_body``."""
        arrived = asyncio.get_running_loop().time()
        fields = request[LOG_FIELDS]
        try:
            body = await self._read_body(request)
        except Rejected as exc:
            return _response(self._reject(fields, exc))
        return _response(await self.receive_body(request.query, body, fields, arrived))

    def verify_query(self, query: Query, fields: dict[str, Any]) -> Answer:
        """URL verification: echo ``echostr`` when the signature is WeChat's."""
        try:
            self._check_signature(query)
        except Rejected as exc:
            return self._reject(fields, exc)
        echostr = query.get("echostr")
        if echostr is None:
            return self._reject(fields, Rejected(400, "echostr missing"))
        fields["outcome"] = "verified"
        return Answer(200, echostr)

    async def receive_body(
        self, query: Query, body: bytes, fields: dict[str, Any], arrived: float
    ) -> Answer:
        """A pushed message or event (``body``, read whole and within ``max_body_bytes``):
        answer within the reply budget from ``arrived`` (the event loop's clock). ``fields``
        takes the request log line's own fields."""
        budget = self._config.reply_budget_seconds
        deadline = arrived + budget
        # The gate and the handler must be done by then; the rest is for answering.
        work_deadline = deadline - min(ANSWER_SHARE, budget / 4)
        try:
            self._check_signature(query)
            encrypted, xml = self._plaintext(query, body)
            parsed = parse_inbound(xml)
        except Rejected as exc:
            return self._reject(fields, exc)
        except BadMessage as exc:
            return self._reject(fields, Rejected(400, str(exc)))

        msg = parsed.inbound
        fields.update(type=msg.event or msg.kind, openid=mask_openid(msg.openid))
        nonce = query["nonce"]
        if msg.kind == "unknown":
            log.warning(
                "unknown message type answered with success", extra={"type": msg.event or msg.kind}
            )
            return self._answer(fields, "unknown_type", "", encrypted, nonce)

        key = dedupe_key(msg.openid, parsed.msg_id, parsed.created, msg.event, msg.key)
        try:
            admission = await self._gate.admit(key, msg.openid, _window(msg), work_deadline)
        except RedisError:
            if msg.event not in _REPORTS:
                # Without dedupe a retry could act twice, and without the member's state (a
                # person talking to them, an open question) the handler could answer wrongly:
                # say we are busy and do nothing. A passive reply, so WeChat shows it and does
                # not retry.
                log.error("redis unavailable or too slow; answered busy")
                busy = render_reply(TextReply(copy.BUSY), msg.openid, parsed.account)
                return self._answer(fields, "busy", busy, encrypted, nonce)
            return self._report_ungated(msg, fields, encrypted, nonce)

        if not admission.first:
            self._metrics.dedupe_hits.inc()
            return await self._answer_retry(
                fields, key, admission.earlier, encrypted, nonce, deadline
            )

        msg.member_id = admission.member_id
        msg.points_seen = admission.points
        msg.asked_seen = admission.asked
        if admission.question:
            msg.question = OpenQuestion.loads(admission.question)
        msg.handoff = admission.handoff
        msg.not_understood = admission.not_understood
        task = asyncio.get_running_loop().create_task(self._dispatcher.dispatch(msg))
        if not await _done_by(task, work_deadline):
            self._tasks.spawn(self._reply_later(task, msg), name=f"reply-later:{key}")
            self._gate.mark_async(key).add_done_callback(_log_unstored)
            return self._answer(fields, "async", "", encrypted, nonce)
        try:
            reply = task.result()
        except Exception:
            log.exception("handler failed", extra={"type": fields["type"]})
            reply, fields["error"] = TextReply(copy.BUSY), True
        xml_reply = render_reply(reply, msg.openid, parsed.account) if reply else ""
        self._gate.remember_reply(key, xml_reply).add_done_callback(_log_unstored)
        return self._answer(fields, "replied" if reply else "no_reply", xml_reply, encrypted, nonce)

    def _report_ungated(
        self, msg: Inbound, fields: dict[str, Any], encrypted: bool, nonce: str
    ) -> Answer:
        """WeChat's report on a send of ours (a template's receipt) while Redis is unavailable:
        handled without the gate, since one applied twice changes nothing, and answered
        ``success`` at once (a report gets no reply, and no member wrote, so there is no busy
        text to show anyone). Its handler runs on in the background, however long Redis takes
        to fail, and a clean stop waits for it."""
        log.warning("redis unavailable or too slow; report handled without dedupe")
        self._tasks.spawn(self._dispatcher.dispatch(msg), name=f"report:{msg.msg_id}")
        return self._answer(fields, "no_reply", "", encrypted, nonce)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self._config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise Rejected(413, "body too large")
        body = bytearray()
        async for chunk in request.content.iter_chunked(16384):
            body += chunk
            if len(body) > limit:
                raise Rejected(413, "body too large")
        return bytes(body)

    def _check_signature(self, query: Query) -> None:
        signature, timestamp, nonce = (query.get(k) for k in ("signature", "timestamp", "nonce"))
        if not (signature and timestamp and nonce):
            raise Rejected(403, "signature missing")
        try:
            check_signature(self._token, signature, timestamp, nonce)
        except InvalidSignatureException:
            raise Rejected(403, "bad signature") from None
        try:
            skew = abs(time.time() - int(timestamp))
        except ValueError:
            raise Rejected(403, "bad timestamp") from None
        if skew > self._config.timestamp_tolerance_seconds:
            raise Rejected(403, "stale timestamp")

    def _plaintext(self, query: Query, body: bytes) -> tuple[bool, str]:
        try:
            reject_declarations(body)
        except BadMessage as exc:
            raise Rejected(400, str(exc)) from None
        if query.get("encrypt_type") == "aes":
            if self._crypto is None:
                raise Rejected(400, "encrypted message but no encoding_aes_key configured")
            msg_signature = query.get("msg_signature")
            if not msg_signature:
                raise Rejected(403, "msg_signature missing")
            try:
                xml = self._crypto.open(body, msg_signature, query["timestamp"], query["nonce"])
            except EnvelopeError as exc:
                raise Rejected(403 if exc.signature else 400, exc.reason) from None
            reject_declarations(xml.encode())
            return True, xml
        if self._crypto is not None and not self._config.allow_plaintext:
            raise Rejected(403, "plaintext messages are not accepted in safe mode")
        try:
            return False, body.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected(400, "body is not UTF-8") from None

    async def _answer_retry(
        self,
        fields: dict[str, Any],
        key: str,
        earlier: bytes,
        encrypted: bool,
        nonce: str,
        deadline: float,
    ) -> Answer:
        if earlier == PENDING:
            try:
                earlier = await self._gate.wait_for_outcome(key, deadline)
            except RedisError:
                # The first attempt is still responsible for the answer; this one acts on
                # nothing, so "success" is safe.
                log.error("redis unavailable while a retry waited; answered success")
        if earlier.startswith(REPLY):
            return self._answer(fields, "duplicate", earlier[1:].decode(), encrypted, nonce)
        return self._answer(
            fields,
            "duplicate_async" if earlier in (ASYNC, PENDING) else "duplicate",
            "",
            encrypted,
            nonce,
        )

    def _answer(
        self, fields: dict[str, Any], outcome: str, xml_reply: str, encrypted: bool, nonce: str
    ) -> Answer:
        fields["outcome"] = outcome
        self._metrics.count_message(fields.get("type", ""), outcome)
        if not xml_reply:
            return Answer(200, SUCCESS)
        if encrypted and self._crypto is not None:
            xml_reply = self._crypto.seal(xml_reply, nonce, str(int(time.time())))
        return Answer(200, xml_reply, XML)

    def _reject(self, fields: dict[str, Any], rejected: Rejected) -> Answer:
        fields["outcome"] = f"rejected:{rejected.reason}"
        self._metrics.count_message("", "rejected")
        return Answer(rejected.status, rejected.reason)

    async def _reply_later(self, task: asyncio.Task[Reply | None], msg: Inbound) -> None:
        """Send a late reply as a customer-service message once the handler finishes: like
        any other, it takes a slot of the member's window (none left: it is not sent, as
        WeChat would refuse it) and a token of the API's rate limit shared with the pushes."""
        try:
            reply = await task
        except Exception:
            log.exception("slow handler failed")
            reply = TextReply(copy.BUSY)
        payload = custom_message(msg.openid, reply) if reply else None
        if payload is None:
            return
        openid = mask_openid(msg.openid)
        try:
            if not await self._windows.take_slot(msg.openid):
                log.warning("late reply not sent: window closed or spent", extra={"openid": openid})
                return
            await self._limiter.take("custom")
        except RedisError:
            log.error("late reply not sent: redis unavailable", extra={"openid": openid})
            return
        try:
            await self._wechat.send_custom_message(payload)
        except WeChatAPIError as exc:
            log.warning(
                "late reply not delivered", extra={"errcode": exc.errcode, "openid": openid}
            )
            if exc.errcode in WINDOW_ERRORS:
                # WeChat knows best: the window is closed or spent for every sender.
                with contextlib.suppress(RedisError):
                    await self._windows.close(msg.openid)
