"""A stand-in for WeChat's HTTP API (api.weixin.qq.com), served on 127.0.0.1 by the tests.

It answers with WeChat's JSON shapes and errcodes and keeps WeChat's token rules: each /token
fetch starts a new token and leaves the previous one valid for five more minutes; /stable_token
returns the current token while it is valid unless ``force_refresh`` is set. Faults can be
scripted per API path: an errcode, an HTTP status, or a delay. Temporary QR codes and uploaded
images are kept (``qr_scenes``, ``media``) so tests can look them up.

It also plays WeChat's web authorisation (网页授权, open.weixin.qq.com): the authorize page
redirects the browser back with a code for ``browser_openid`` (the follower "holding the
phone"), and ``sns/oauth2/access_token`` exchanges a code once, within five minutes, with
WeChat's errors: 40029 invalid code, 40163 code been used.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import BodyPartReader, hdrs, web
from aiohttp.typedefs import Handler

OVERLAP_SECONDS = 300
QR_SCENE_MAX_CHARS = 64
QR_MAX_SECONDS = 2_592_000  # WeChat answers with this for a longer temporary code
IMAGE_MAX_BYTES = 10 * 1024 * 1024
# What WeChat accepts as an image: png, jpeg, gif, bmp.
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
# A web authorisation code is good for one exchange within five minutes.
OAUTH_CODE_SECONDS = 300
OAUTH_SCOPES = ("snsapi_base", "snsapi_userinfo")


@dataclass(frozen=True)
class Fault:
    """What the next call to a path gets: an error (``errcode`` or ``http_status``, after
    ``delay``) instead of an answer, or, with a ``delay`` alone, its answer that much later."""

    errcode: int | None = None
    http_status: int | None = None
    delay: float = 0.0


@dataclass
class Call:
    path: str
    params: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class WeChatStandIn:
    """The fake WeChat: its state is inspected and steered by the tests."""

    appid: str
    secret: str
    token_ttl: int = 7200
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expires_at
    current: str | None = None
    token_fetches: int = 0
    calls: list[Call] = field(default_factory=list)
    faults: dict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    unfollowed: set[str] = field(default_factory=set)
    next_msgid: int = 400_000_000_000
    mass_client_ids: set[str] = field(default_factory=set)
    qr_scenes: dict[str, str] = field(default_factory=dict)  # ticket -> scene_str
    media: dict[str, bytes] = field(default_factory=dict)  # media_id -> uploaded bytes
    # Web authorisation: who is at the browser, the host redirect_uri must have (WeChat's
    # 网页授权域名; None: any), codes issued (code -> openid, expires_at) and those exchanged.
    browser_openid: str | None = None
    oauth_domain: str | None = None
    oauth_codes: dict[str, tuple[str, float]] = field(default_factory=dict)
    oauth_used: set[str] = field(default_factory=set)
    snapshot_openids: set[str] = field(default_factory=set)

    def fail_next(self, path: str, *faults: Fault) -> None:
        """Queue faults for the next calls to ``path`` (e.g. ``/cgi-bin/message/custom/send``)."""
        self.faults[path].extend(faults)

    def expire_all_tokens(self) -> None:
        """Every token issued so far now gets 42001."""
        for token in self.tokens:
            self.tokens[token] = 0.0

    def invalidate_all_tokens(self) -> None:
        """Every token issued so far now gets 40001, as when another party refreshed."""
        self.tokens.clear()
        self.current = None

    def issue_oauth_code(self, openid: str) -> str:
        """A code as the authorize page would give ``openid``'s browser."""
        code = secrets.token_urlsafe(24)
        self.oauth_codes[code] = (openid, time.time() + OAUTH_CODE_SECONDS)
        return code

    def sent(self, path: str = "/cgi-bin/message/custom/send") -> list[dict[str, Any]]:
        """Bodies of the successful calls to ``path``."""
        return [c.body or {} for c in self.calls if c.path == path]

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._faults])
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_post("/cgi-bin/stable_token", self._stable_token)
        app.router.add_post("/cgi-bin/message/custom/send", self._custom_send)
        app.router.add_post("/cgi-bin/message/template/send", self._template_send)
        app.router.add_post("/cgi-bin/message/mass/send", self._mass_send)
        app.router.add_post("/cgi-bin/message/mass/preview", self._mass_preview)
        app.router.add_post("/cgi-bin/menu/create", self._menu_create)
        app.router.add_post("/cgi-bin/qrcode/create", self._qrcode_create)
        app.router.add_post("/cgi-bin/media/upload", self._media_upload)
        app.router.add_get("/connect/oauth2/authorize", self._oauth_authorize)
        app.router.add_get("/sns/oauth2/access_token", self._oauth_access_token)
        return app

    async def _oauth_authorize(self, request: web.Request) -> web.Response:
        """WeChat's authorize page: with snsapi_base it redirects at once, silently, to
        ``redirect_uri?code=CODE&state=STATE``; bad parameters get WeChat's error page."""
        query = request.query
        redirect_uri = query.get("redirect_uri", "")
        parts = urlsplit(redirect_uri)
        if query.get("appid") != self.appid:
            return _oauth_error_page("appid 参数错误")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return _oauth_error_page("redirect_uri 参数错误")
        if self.oauth_domain is not None and parts.hostname != self.oauth_domain:
            return _oauth_error_page("redirect_uri 域名与后台配置不一致，错误码：10003")
        if query.get("response_type") != "code" or query.get("scope") not in OAUTH_SCOPES:
            return _oauth_error_page("scope 参数错误或没有 scope 权限")
        state = query.get("state", "")
        if len(state.encode()) > 128:
            return _oauth_error_page("state 参数错误")
        if self.browser_openid is None:
            return _oauth_error_page("请在微信客户端打开链接")
        code = self.issue_oauth_code(self.browser_openid)
        separator = "&" if parts.query else "?"
        target = f"{redirect_uri}{separator}{urlencode({'code': code, 'state': state})}"
        raise web.HTTPFound(target)

    async def _oauth_access_token(self, request: web.Request) -> web.Response:
        """``sns/oauth2/access_token``: a code for the follower's openid, once."""
        query = request.query
        if query.get("grant_type") != "authorization_code":
            return _error(40002, "invalid grant_type")
        if query.get("appid") != self.appid:
            return _error(40013, "invalid appid")
        if query.get("secret") != self.secret:
            return _error(40125, "invalid appsecret")
        code = query.get("code")
        if not code:
            return _error(41008, "missing code")
        if code in self.oauth_used:
            return _error(40163, "code been used")
        issued = self.oauth_codes.get(code)
        if issued is None or issued[1] <= time.time():
            return _error(40029, "invalid code")
        self.oauth_used.add(code)
        openid = issued[0]
        self.calls.append(Call(request.path, {"code": code}, None))
        answer: dict[str, Any] = {
            "access_token": secrets.token_urlsafe(48),
            "expires_in": 7200,
            "refresh_token": secrets.token_urlsafe(48),
            "openid": openid,
            "scope": "snsapi_base",
        }
        if openid in self.snapshot_openids:
            answer["is_snapshotuser"] = 1
        return web.json_response(answer)

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The next fault queued for the path, if any: an error (after its delay) instead of
        the call; or, a delay alone, the call carried out and answered that much later (the
        caller may have stopped waiting by then)."""
        queue = self.faults.get(request.path)
        if not queue:
            return await handler(request)
        fault = queue.popleft()
        if fault.http_status is None and fault.errcode is None:
            await request.read()
            response = await handler(request)
            await asyncio.sleep(fault.delay)
            return response
        await asyncio.sleep(fault.delay)
        if fault.errcode is not None:
            return _error(fault.errcode)
        return web.Response(status=fault.http_status or 500, text="upstream error")

    def _issue(self, *, keep_current: bool) -> tuple[str, int]:
        now = time.time()
        if keep_current and self.current and self.tokens.get(self.current, 0) > now:
            return self.current, int(self.tokens[self.current] - now)
        if self.current in self.tokens:
            self.tokens[self.current] = min(self.tokens[self.current], now + OVERLAP_SECONDS)
        self.current = secrets.token_urlsafe(96)
        self.tokens[self.current] = now + self.token_ttl
        self.token_fetches += 1
        return self.current, self.token_ttl

    def _credentials_error(self, data: dict[str, Any]) -> web.Response | None:
        if data.get("grant_type") != "client_credential":
            return _error(40002, "invalid grant_type")
        if data.get("appid") != self.appid:
            return _error(40013, "invalid appid")
        if data.get("secret") != self.secret:
            return _error(40125, "invalid appsecret")
        return None

    async def _token(self, request: web.Request) -> web.Response:
        if error := self._credentials_error(dict(request.query)):
            return error
        token, ttl = self._issue(keep_current=False)
        return web.json_response({"access_token": token, "expires_in": ttl})

    async def _stable_token(self, request: web.Request) -> web.Response:
        data = await request.json()
        if error := self._credentials_error(data):
            return error
        token, ttl = self._issue(keep_current=not data.get("force_refresh"))
        return web.json_response({"access_token": token, "expires_in": ttl})

    def _token_error(self, request: web.Request) -> web.Response | None:
        token = request.query.get("access_token")
        if not token:
            return _error(41001, "access_token missing")
        expires_at = self.tokens.get(token)
        if expires_at is None:
            return _error(40001, "invalid credential, access_token is invalid or not latest")
        if expires_at <= time.time():
            return _error(42001, "access_token expired")
        return None

    async def _custom_send(self, request: web.Request) -> web.Response:
        if error := self._token_error(request):
            return error
        body = await request.json()
        if not body.get("touser") or body.get("msgtype") not in (
            "text",
            "image",
            "voice",
            "video",
            "music",
            "news",
            "mpnews",
            "msgmenu",
            "wxcard",
            "miniprogrampage",
        ):
            return _error(40008, "invalid message type")
        if body["msgtype"] == "image":
            image = body.get("image")
            if not isinstance(image, dict) or image.get("media_id") not in self.media:
                return _error(40007, "invalid media_id")
        if body["touser"] in self.unfollowed:
            return _error(43004, "require subscribe")
        params = {k: v for k, v in request.query.items() if k != "access_token"}
        self.calls.append(Call(request.path, params, body))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _template_send(self, request: web.Request) -> web.Response:
        if error := self._token_error(request):
            return error
        body = await request.json()
        if not body.get("touser"):
            return _error(40003, "invalid openid")
        if not body.get("template_id"):
            return _error(40037, "invalid template_id")
        data = body.get("data")
        if not isinstance(data, dict) or not all(
            isinstance(v, dict) and "value" in v for v in data.values()
        ):
            return _error(47003, "argument invalid! data.value invalid")
        if body["touser"] in self.unfollowed:
            return _error(43004, "require subscribe")
        self.calls.append(Call(request.path, {}, body))
        self.next_msgid += 1
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": self.next_msgid})

    async def _mass_send(self, request: web.Request) -> web.Response:
        if error := self._token_error(request):
            return error
        body = await request.json()
        users = body.get("touser")
        if not isinstance(users, list) or not 2 <= len(users) <= 10_000:
            return _error(40130, "invalid openid list size, at least two openid")
        client_id = body.get("clientmsgid")
        if client_id and client_id in self.mass_client_ids:
            return _error(45065, "clientmsgid exist")
        if client_id:
            self.mass_client_ids.add(client_id)
        self.calls.append(Call(request.path, {}, body))
        self.next_msgid += 1
        return web.json_response(
            {
                "errcode": 0,
                "errmsg": "send job submission success",
                "msg_id": self.next_msgid,
                "msg_data_id": self.next_msgid,
            }
        )

    async def _mass_preview(self, request: web.Request) -> web.Response:
        if error := self._token_error(request):
            return error
        body = await request.json()
        if not body.get("touser") and not body.get("towxname"):
            return _error(40003, "invalid openid")
        if body.get("msgtype") != "text" or not body.get("text", {}).get("content"):
            return _error(40008, "invalid message type")
        if body.get("touser") in self.unfollowed:
            return _error(43004, "require subscribe")
        self.calls.append(Call(request.path, {}, body))
        return web.json_response({"errcode": 0, "errmsg": "preview success", "msg_id": 34182})

    async def _menu_create(self, request: web.Request) -> web.Response:
        if error := self._token_error(request):
            return error
        body = await request.json()
        buttons = body.get("button")
        # WeChat's limits: 1-3 buttons, 1-5 sub-buttons, names of at most 16 bytes (sub: 60).
        if not buttons or len(buttons) > 3:
            return _error(40017, "invalid button size")
        for button in buttons:
            subs = button.get("sub_button", [])
            if len(subs) > 5 or len(button["name"].encode()) > 16:
                return _error(40017, "invalid button size")
            for leaf in subs or [button]:
                if error := _leaf_error(leaf, sub=bool(subs)):
                    return error
        self.calls.append(Call(request.path, {}, body))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _qrcode_create(self, request: web.Request) -> web.Response:
        if error := self._token_error(request):
            return error
        body = await request.json()
        # String scenes only; integer scenes (QR_SCENE, QR_LIMIT_SCENE) are not modelled.
        if not isinstance(body, dict) or body.get("action_name") not in (
            "QR_STR_SCENE",
            "QR_LIMIT_STR_SCENE",
        ):
            return _error(40097, "invalid args")
        info = body.get("action_info")
        scene = info.get("scene") if isinstance(info, dict) else None
        scene_str = scene.get("scene_str") if isinstance(scene, dict) else None
        if not isinstance(scene_str, str) or not 1 <= len(scene_str) <= QR_SCENE_MAX_CHARS:
            return _error(40097, "invalid args")
        expire_seconds = body.get("expire_seconds", 60)  # WeChat's default
        if type(expire_seconds) is not int or expire_seconds < 1:
            return _error(40097, "invalid args")
        self.calls.append(Call(request.path, {}, body))
        ticket = secrets.token_urlsafe(48)
        self.qr_scenes[ticket] = scene_str
        answer: dict[str, Any] = {
            "ticket": ticket,
            "url": f"http://weixin.qq.com/q/{secrets.token_urlsafe(18)}",
        }
        if body["action_name"] == "QR_STR_SCENE":
            answer["expire_seconds"] = min(expire_seconds, QR_MAX_SECONDS)
        return web.json_response(answer)

    async def _media_upload(self, request: web.Request) -> web.Response:
        if error := self._token_error(request):
            return error
        # Images only; voice, video and thumb uploads are not modelled.
        if request.query.get("type") != "image":
            return _error(40004, "invalid media type")
        upload = await _read_media(request)
        if isinstance(upload, web.Response):
            return upload
        filename, content_type, data = upload
        if not data.startswith(IMAGE_MAGIC):
            return _error(40005, "invalid file type")
        media_id = secrets.token_urlsafe(48)
        self.media[media_id] = data
        params = {k: v for k, v in request.query.items() if k != "access_token"}
        described = {"filename": filename, "content_type": content_type, "size": len(data)}
        self.calls.append(Call(request.path, params, {"media": described}))
        return web.json_response(
            {"type": "image", "media_id": media_id, "created_at": int(time.time())}
        )


async def _read_media(request: web.Request) -> tuple[str, str, bytes] | web.Response:
    """The ``media`` file field of a multipart body: (filename, content type, bytes)."""
    if request.content_type != "multipart/form-data":
        return _error(41005, "media data missing")
    try:
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader) or part.name != "media" or not part.filename:
                continue
            data = bytearray()
            while chunk := await part.read_chunk():
                data += chunk
                if len(data) > IMAGE_MAX_BYTES:
                    return _error(40006, "invalid meida size")  # sic, WeChat's spelling
            if not data:
                break
            return part.filename, part.headers.get(hdrs.CONTENT_TYPE, ""), bytes(data)
    except ValueError:  # a malformed multipart body
        pass
    return _error(41005, "media data missing")


def _leaf_error(button: dict[str, Any], *, sub: bool) -> web.Response | None:
    """WeChat's checks of a button that does something: a CLICK has a key of at most 128
    bytes; a VIEW a URL of at most 1024 bytes; a sub-button's name at most 60 bytes."""
    if sub and len(str(button.get("name", "")).encode()) > 60:
        return _error(40018, "invalid button name size")
    kind = button.get("type")
    if kind == "click":
        if not 0 < len(str(button.get("key", "")).encode()) <= 128:
            return _error(40019, "invalid button key size")
    elif kind == "view":
        url = str(button.get("url", ""))
        if not url.startswith(("http://", "https://")) or len(url.encode()) > 1024:
            return _error(40023, "invalid sub button url size")
    else:
        return _error(40016, "invalid button type")
    return None


def _oauth_error_page(text: str) -> web.Response:
    return web.Response(
        status=200, text=f"<html><body>{text}</body></html>", content_type="text/html"
    )


def _error(errcode: int, errmsg: str = "") -> web.Response:
    messages = {
        -1: "system error",
        45009: "reach max api daily quota limit",
        45011: "api minute-quota reach limit",
    }
    return web.json_response({"errcode": errcode, "errmsg": errmsg or messages.get(errcode, "")})
