"""The one async client for WeChat's HTTP API.

wechatpy's client is synchronous and its token cache races across processes (WECHAT.md §4), so
outbound calls go through this small aiohttp client instead. The access token lives in Redis,
shared by every process; a refresh is single-flight inside a process (an asyncio lock) and
across processes (a Redis lock), so a burst of callers finding it expired costs one fetch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from redis.asyncio import Redis

from bot.metrics import Metrics

if TYPE_CHECKING:
    from bot.wechat.settings import WeChatConfig

log = logging.getLogger(__name__)

TOKEN_ERRORS = frozenset({40001, 40014, 42001})
TRANSIENT_ERRORS = frozenset({-1, 45009, 45011})
# A mass send's clientmsgid was used already: WeChat accepted that very send before (an earlier
# attempt whose answer was lost), so this one is not sent again.
MASS_ALREADY_SENT = 45065
# Refresh this long before WeChat's stated expiry; old and new tokens overlap by ~5 minutes.
TOKEN_MARGIN_SECONDS = 120
LOCK_TTL_MS = 15_000
# Temporary QR codes: WeChat's scene_str is 1-64 characters, a code lives at most 30 days.
QR_SCENE_MAX_CHARS = 64
QR_MIN_SECONDS = 60
QR_MAX_SECONDS = 2_592_000
# WeChat's limit for an uploaded image: 10 MB (documented as 2 MB for some account types).
IMAGE_MAX_BYTES = 10 * 1024 * 1024

# Builds a multipart body; called once per attempt, since a FormData can be sent only once.
FormFactory = Callable[[], aiohttp.FormData]

_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class WeChatAPIError(Exception):
    """WeChat refused a call (``errcode`` set) or could not be reached (``errcode`` None)."""

    def __init__(
        self,
        api: str,
        errcode: int | None,
        errmsg: str,
        http_status: int | None = None,
        *,
        unanswered: bool = False,
    ):
        super().__init__(f"{api}: errcode={errcode} {errmsg}")
        self.api = api
        self.errcode = errcode
        self.errmsg = errmsg
        self.http_status = http_status
        # The request went out and no answer came back (a timeout, a dropped connection):
        # WeChat may have acted on it, so a message sent again could arrive twice.
        self.unanswered = unanswered
        # Worth retrying later: WeChat busy, a quota, HTTP 5xx or no answer at all.
        self.transient = (
            errcode in TRANSIENT_ERRORS
            if errcode is not None
            else http_status is None or http_status >= 500
        )


@dataclass(frozen=True)
class QrCode:
    """A temporary QR code: show it via ``url`` (or showqrcode with ``ticket``)."""

    ticket: str
    url: str
    expire_seconds: int


@dataclass(frozen=True)
class OAuthUser:
    """Who a web authorisation code stood for; ``snapshot``: WeChat's 快照页 virtual account
    (a page opened in snapshot mode), which is nobody's."""

    openid: str
    snapshot: bool = False


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float

    def fresh(self, now: float) -> bool:
        return self.expires_at - TOKEN_MARGIN_SECONDS > now


class WeChatClient:
    """Calls WeChat's API with a shared token, bounded retries and typed errors."""

    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        redis: Redis,
        appid: str,
        secret: str,
        base_url: str,
        token_endpoint: str = "stable",
        timeout: float = 5.0,
        max_attempts: int = 3,
        backoff: float = 0.2,
        metrics: Metrics | None = None,
    ) -> None:
        self._http = http
        self._redis = redis
        self._appid = appid
        self._secret = secret
        self._base = base_url.rstrip("/")
        self._stable = token_endpoint == "stable"
        # A connection that could not be made is told apart from a request left unanswered:
        # only the first is certain never to have reached WeChat.
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(2.0, timeout / 2))
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._metrics = metrics
        self._token: _Token | None = None
        self._refresh_lock = asyncio.Lock()
        self._token_key = f"wechat:token:{appid}"
        self._lock_key = f"wechat:token-lock:{appid}"

    @classmethod
    def from_config(
        cls,
        config: WeChatConfig,
        *,
        http: aiohttp.ClientSession,
        redis: Redis,
        metrics: Metrics | None = None,
    ) -> WeChatClient:
        """The client for ``[wechat]``."""
        return cls(
            http=http,
            redis=redis,
            appid=config.appid,
            secret=config.secret.get_secret_value(),
            base_url=config.api_base_url,
            token_endpoint=config.token_endpoint,
            timeout=config.api_timeout_seconds,
            max_attempts=config.api_max_attempts,
            backoff=config.api_backoff_seconds,
            metrics=metrics,
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        form: FormFactory | None = None,
        resend_unanswered: bool = True,
    ) -> dict[str, Any]:
        """Call ``path`` (e.g. ``/cgi-bin/message/custom/send``) and return WeChat's JSON.

        ``body`` is sent as JSON; ``form`` instead builds a multipart body, afresh per attempt.
        Token errors refresh the token once and retry; -1, 45009, 45011, HTTP 5xx and network
        failures retry with exponential backoff and full jitter; anything else raises
        WeChatAPIError at once. ``resend_unanswered=False`` (a message to a member) raises at
        once, ``unanswered`` set, when a request went out but no answer came: sending it again
        could deliver it twice.
        """
        if body is not None and form is not None:
            raise ValueError("pass body or form, not both")
        refreshed = False
        while True:
            token = await self.access_token()
            try:
                return await self._with_retries(
                    method,
                    path,
                    {**(params or {}), "access_token": token},
                    body,
                    form=form,
                    resend_unanswered=resend_unanswered,
                )
            except WeChatAPIError as exc:
                if exc.errcode not in TOKEN_ERRORS or refreshed:
                    raise
            # Refresh once; a token that keeps failing means a configuration problem.
            refreshed = True
            await self._refresh(stale=token)

    async def send_custom_message(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a customer-service message (only inside the member's interaction window)."""
        return await self.call(
            "POST", "/cgi-bin/message/custom/send", body=payload, resend_unanswered=False
        )

    async def send_template_message(self, payload: dict[str, Any]) -> int:
        """Send a template message (service notifications only); WeChat's msgid for it."""
        result = await self.call(
            "POST", "/cgi-bin/message/template/send", body=payload, resend_unanswered=False
        )
        return int(result["msgid"])

    async def send_mass_text(self, openids: list[str], text: str, client_msg_id: str) -> int:
        """Mass-send ``text`` to 2–10,000 followers (marketing); WeChat's msg_id for the job.
        ``client_msg_id`` makes a repeat of the same send a 45065 (``MASS_ALREADY_SENT``)
        instead of a second copy, so an attempt left unanswered is safely tried again."""
        body = {
            "touser": openids,
            "msgtype": "text",
            "text": {"content": text},
            "clientmsgid": client_msg_id[:64],
        }
        result = await self.call("POST", "/cgi-bin/message/mass/send", body=body)
        return int(result["msg_id"])

    async def send_mass_preview(self, openid: str, text: str) -> None:
        """Show a mass message to one follower first (WeChat's preview; no allowance spent)."""
        body = {"touser": openid, "msgtype": "text", "text": {"content": text}}
        await self.call("POST", "/cgi-bin/message/mass/preview", body=body)

    async def create_menu(self, menu: dict[str, Any]) -> dict[str, Any]:
        """Replace the official account's custom menu."""
        return await self.call("POST", "/cgi-bin/menu/create", body=menu)

    async def create_qr_code(self, scene_str: str, expire_seconds: int) -> QrCode:
        """A temporary string-scene QR code; scanning it sends ``scene_str`` in the event.
        ``scene_str``: 1-64 characters; ``expire_seconds``: 60 to 2,592,000 (30 days)."""
        if not 1 <= len(scene_str) <= QR_SCENE_MAX_CHARS:
            raise ValueError(f"scene_str must be 1-{QR_SCENE_MAX_CHARS} characters")
        if not QR_MIN_SECONDS <= expire_seconds <= QR_MAX_SECONDS:
            raise ValueError(f"expire_seconds must be {QR_MIN_SECONDS}-{QR_MAX_SECONDS}")
        body = {
            "expire_seconds": expire_seconds,
            "action_name": "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": scene_str}},
        }
        result = await self.call("POST", "/cgi-bin/qrcode/create", body=body)
        return QrCode(str(result["ticket"]), str(result["url"]), int(result["expire_seconds"]))

    async def upload_temporary_image(self, png: bytes, filename: str = "qr.png") -> str:
        """Upload a PNG as temporary media (WeChat keeps it 3 days); its media_id.
        WeChat takes bmp/png/jpeg/jpg/gif up to 10 MB."""
        if not 0 < len(png) <= IMAGE_MAX_BYTES:
            raise ValueError(f"image must be 1 to {IMAGE_MAX_BYTES} bytes, not {len(png)}")

        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("media", png, filename=filename, content_type="image/png")
            return data

        result = await self.call(
            "POST", "/cgi-bin/media/upload", params={"type": "image"}, form=form
        )
        return str(result["media_id"])

    async def oauth_openid(self, code: str) -> OAuthUser:
        """The follower behind a web authorisation ``code`` (snsapi_base), through
        ``sns/oauth2/access_token``. Asked once, never retried: a code is good for one exchange,
        so a second attempt could only earn 40163. WeChatAPIError for 40029 (invalid code),
        40163 (code been used) and every other refusal."""
        params = {
            "appid": self._appid,
            "secret": self._secret,
            "code": code,
            "grant_type": "authorization_code",
        }
        result = await self._request("GET", "/sns/oauth2/access_token", params, None)
        openid = result.get("openid")
        if not isinstance(openid, str) or not openid:
            raise WeChatAPIError("sns/oauth2/access_token", None, "no openid in the answer")
        return OAuthUser(openid, snapshot=result.get("is_snapshotuser") == 1)

    async def access_token(self) -> str:
        """A valid access token: this process's copy, else Redis's, else a fresh fetch."""
        token = self._token
        if token is not None and token.fresh(time.time()):
            return token.value
        return await self._refresh(stale=None)

    async def _refresh(self, stale: str | None) -> str:
        async with self._refresh_lock:
            usable = await self._usable_token(stale)
            if usable:
                return usable
            owner = secrets.token_hex(8)
            deadline = time.monotonic() + LOCK_TTL_MS / 1000
            while not await self._redis.set(self._lock_key, owner, nx=True, px=LOCK_TTL_MS):
                # Another process is fetching: wait for its token rather than invalidating it.
                await asyncio.sleep(0.05)
                usable = await self._usable_token(stale)
                if usable:
                    return usable
                if time.monotonic() > deadline:
                    raise WeChatAPIError("token", None, "timed out waiting for another refresh")
            try:
                usable = await self._usable_token(stale)
                if usable:
                    return usable
                token = await self._fetch_token(force=False)
                if token.value == stale:
                    # stable_token hands back the same token while it is valid in its view.
                    token = await self._fetch_token(force=True)
                ttl_ms = max(1000, int((token.expires_at - time.time()) * 1000))
                await self._redis.set(
                    self._token_key,
                    json.dumps({"token": token.value, "expires_at": token.expires_at}),
                    px=ttl_ms,
                )
                self._token = token
                return token.value
            finally:
                await self._redis.eval(_RELEASE_LOCK, 1, self._lock_key, owner)

    async def _usable_token(self, stale: str | None) -> str | None:
        now = time.time()
        for token in (self._token, await self._shared_token()):
            if token is not None and token.value != stale and token.fresh(now):
                self._token = token
                return token.value
        return None

    async def _shared_token(self) -> _Token | None:
        raw = await self._redis.get(self._token_key)
        if not raw:
            return None
        data = json.loads(raw)
        return _Token(data["token"], float(data["expires_at"]))

    async def _fetch_token(self, *, force: bool) -> _Token:
        if self._metrics:
            self._metrics.token_fetches.inc()
        credentials = {
            "grant_type": "client_credential",
            "appid": self._appid,
            "secret": self._secret,
        }
        if self._stable:
            data = await self._with_retries(
                "POST", "/cgi-bin/stable_token", None, {**credentials, "force_refresh": force}
            )
        else:
            data = await self._with_retries("GET", "/cgi-bin/token", credentials, None)
        return _Token(data["access_token"], time.time() + int(data["expires_in"]))

    async def _with_retries(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: dict[str, Any] | None,
        *,
        form: FormFactory | None = None,
        resend_unanswered: bool = True,
    ) -> dict[str, Any]:
        """``_request``, retrying transient failures with exponential backoff and full jitter
        (an unanswered request only with ``resend_unanswered``)."""
        for attempt in range(1, self._max_attempts):
            try:
                return await self._request(method, path, params, body, form=form)
            except WeChatAPIError as exc:
                if not exc.transient or (exc.unanswered and not resend_unanswered):
                    raise
            await asyncio.sleep(random.uniform(0, self._backoff * 2 ** (attempt - 1)))
        return await self._request(method, path, params, body, form=form)

    async def _request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: dict[str, Any] | None,
        *,
        form: FormFactory | None = None,
    ) -> dict[str, Any]:
        api = path.removeprefix("/cgi-bin/")
        data: bytes | aiohttp.FormData | None = None
        headers = None
        if form is not None:
            data = form()  # aiohttp sets the multipart Content-Type with its boundary
        elif body is not None:
            # ensure_ascii=False: WeChat shows \uXXXX escapes literally in some message types.
            data = json.dumps(body, ensure_ascii=False).encode()
            headers = {"Content-Type": "application/json"}
        try:
            async with self._http.request(
                method,
                self._base + path,
                params=params,
                data=data,
                headers=headers,
                timeout=self._timeout,
            ) as response:
                status = response.status
                if status >= 400:
                    self._count(api, f"http_{status}")
                    raise WeChatAPIError(api, None, f"HTTP {status}", status)
                result = json.loads(await response.read())
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Never reached WeChat. The exception's text may carry the URL and so the token or
            # secret: name the class only.
            self._count(api, "unreachable")
            raise WeChatAPIError(api, None, type(exc).__name__) from None
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            self._count(api, "unanswered")
            raise WeChatAPIError(api, None, type(exc).__name__, unanswered=True) from None
        errcode = int(result.get("errcode") or 0)
        self._count(api, str(errcode))
        if errcode:
            raise WeChatAPIError(api, errcode, str(result.get("errmsg", "")), status)
        return result

    def _count(self, api: str, errcode: str) -> None:
        if self._metrics:
            self._metrics.wechat_calls.labels(api=api, errcode=errcode).inc()
