"""Who is looking at the member centre: WeChat's web authorisation, then a signed cookie.

1. A page opened without a session redirects to WeChat's authorize page (``[wechat]
   oauth_base_url``, scope ``snsapi_base``: silent, it only names the follower) with a random
   ``state``, which is also kept in a short-lived signed pre-session cookie (``m_login``,
   ``[member_centre] login_seconds``) with the page to return to.
2. WeChat sends the browser back to ``/m/auth?code=…&state=…``. The state must match the
   cookie's (constant time); the pre-session cookie is spent whatever happens next; the code
   is exchanged once through ``sns/oauth2/access_token`` for the openid (a forged code gets
   40029 from WeChat, a replayed one 40163: both a clear page).
3. A follower who is a member gets the session cookie (``m_session``): their member id and
   openid, a CSRF token and an expiry, signed with HMAC-SHA-256 under a key derived from
   ``[member_centre] secret``; HttpOnly, SameSite=Lax, Secure when the public URL is https,
   scoped to ``/m/``. Nothing is kept on the server, so every web process reads it.

Pages address "me" only through the session; an expired or forged cookie gets a clear page
and is deleted, and every page's query also requires the openid to still be the member's
(``models/member_centre.py``), so a session outliving an erasure shows nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from bot import wiring
from bot.pages.shell import document, html_response
from bot.wechat.client import WeChatAPIError
from messages import centre_copy as copy
from models.member_centre import member_by_openid

if TYPE_CHECKING:
    from bot.config import Config

log = logging.getLogger(__name__)

CENTRE_PATH = "/m/"
AUTH_PATH = "/m/auth"
SESSION_COOKIE = "m_session"
LOGIN_COOKIE = "m_login"
# Pages a sign-in may return to: the centre's own paths, nothing else (no open redirect).
RETURN_SHAPE = re.compile(r"/m/(?:[a-z]+(?:/[A-Za-z0-9]{1,32})?)?")
# WeChat's codes are short; anything longer is not asked about.
MAX_CODE_CHARS = 128


@dataclass(frozen=True, slots=True)
class MemberSession:
    """The signed-in member: their id and openid, and the CSRF token their forms carry."""

    member_id: int
    openid: str
    csrf: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, payload: dict[str, Any]) -> str:
    """``payload`` as a cookie value: base64url JSON, a dot, its HMAC-SHA-256."""
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{_b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"


def unsign(key: bytes, value: str) -> dict[str, Any] | None:
    """The payload of a value ``sign`` made with ``key``, or None for anything else."""
    body, _, mac = value.partition(".")
    if not body or not mac or len(value) > 4096:
        return None
    expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, mac):
        return None
    try:
        payload = json.loads(_unb64(body))
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


class CentreAuth:
    """Signs and reads the centre's cookies and builds WeChat's authorize URL."""

    def __init__(self, config: Config) -> None:
        centre = config.member_centre
        self._session_key = centre.key("session", config.wechat.secret)
        self._login_key = centre.key("login", config.wechat.secret)
        self._session_seconds = centre.session_hours * 3600
        self._login_seconds = centre.login_seconds
        self._appid = config.wechat.appid
        self._authorize = f"{config.wechat.oauth_base_url}/connect/oauth2/authorize"
        public = config.server.public_url.rstrip("/")
        self._redirect_uri = f"{public}{AUTH_PATH}"
        self.secure = public.startswith("https://")

    def read(self, request: web.Request) -> MemberSession | str:
        """The request's session, or why there is none: "absent", "expired" or "invalid"."""
        value = request.cookies.get(SESSION_COOKIE)
        if not value:
            return "absent"
        payload = unsign(self._session_key, value)
        try:
            session = MemberSession(
                int(payload["m"]), str(payload["o"]), str(payload["c"]), int(payload["e"])
            )
        except (TypeError, KeyError, ValueError):
            return "invalid"
        if session.expires_at <= time.time():
            return "expired"
        return session

    def sign_in(self, response: web.StreamResponse, member_id: int, openid: str) -> None:
        """Give ``response`` a new session cookie (a new CSRF token too: no fixation)."""
        payload = {
            "m": member_id,
            "o": openid,
            "c": secrets.token_urlsafe(24),
            "e": int(time.time()) + self._session_seconds,
        }
        self._set(response, SESSION_COOKIE, sign(self._session_key, payload), self._session_seconds)

    def start_login(self, request: web.Request) -> web.Response:
        """Off to WeChat's authorize page, with the state and the way back in a cookie."""
        state = secrets.token_hex(16)
        back = request.path if RETURN_SHAPE.fullmatch(request.path) else CENTRE_PATH
        login = {"s": state, "n": back, "e": int(time.time()) + self._login_seconds}
        # WeChat insists on this order of parameters, and on the #wechat_redirect fragment.
        query = urlencode(
            [
                ("appid", self._appid),
                ("redirect_uri", self._redirect_uri),
                ("response_type", "code"),
                ("scope", "snsapi_base"),
                ("state", state),
            ]
        )
        response = web.Response(
            status=302, headers={"Location": f"{self._authorize}?{query}#wechat_redirect"}
        )
        response.headers.update({"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
        self._set(response, LOGIN_COOKIE, sign(self._login_key, login), self._login_seconds)
        return response

    def read_login(self, request: web.Request) -> tuple[str, str] | None:
        """The pending sign-in's (state, return path), or None (none, forged or too old)."""
        payload = unsign(self._login_key, request.cookies.get(LOGIN_COOKIE, ""))
        if payload is None:
            return None
        state, back, expires = payload.get("s"), payload.get("n"), payload.get("e")
        if not isinstance(state, str) or not isinstance(back, str) or not isinstance(expires, int):
            return None
        if expires <= time.time() or not RETURN_SHAPE.fullmatch(back):
            return None
        return state, back

    def forget(self, response: web.StreamResponse, name: str) -> None:
        """Delete one of the centre's cookies."""
        response.del_cookie(name, path=CENTRE_PATH, secure=self.secure, samesite="Lax")

    def _set(self, response: web.StreamResponse, name: str, value: str, seconds: int) -> None:
        response.set_cookie(
            name,
            value,
            path=CENTRE_PATH,
            max_age=seconds,
            httponly=True,
            samesite="Lax",
            secure=self.secure,
        )


AUTH = web.AppKey("centre_auth", CentreAuth)


def notice(title: str, text: str, status: int, *, reenter: bool = False) -> web.Response:
    """A page that shows nothing of anyone: what happened, and the way back in."""
    link = f'<p><a class="button" href="{CENTRE_PATH}">{escape(copy.REENTER)}</a></p>'
    body = f'<h1>{escape(title)}</h1><p class="intro">{escape(text)}</p>{link if reenter else ""}'
    return html_response(document(title, body), status)


def signed_out(request: web.Request, reason: str) -> web.Response:
    """The page for an expired or unusable session; the cookie is deleted."""
    if reason == "expired":
        page = notice(copy.SESSION_EXPIRED_TITLE, copy.SESSION_EXPIRED_TEXT, 401, reenter=True)
    else:
        page = notice(copy.SESSION_INVALID_TITLE, copy.SESSION_INVALID_TEXT, 401, reenter=True)
    request.app[AUTH].forget(page, SESSION_COOKIE)
    return page


MemberHandler = Callable[[web.Request, MemberSession], Awaitable[web.StreamResponse]]


def member_page(handler: MemberHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Run ``handler`` for the signed-in member. No session: a page (GET) starts the sign-in,
    anything else gets the expired page; an expired or forged session: that page. A POST must
    carry the session's CSRF token in its form."""

    @wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        auth = request.app[AUTH]
        session = auth.read(request)
        if isinstance(session, str):
            if (
                session == "absent"
                and request.method == "GET"
                and RETURN_SHAPE.fullmatch(request.path)
            ):
                return auth.start_login(request)
            return signed_out(request, "expired" if session == "absent" else session)
        if request.method == "POST":
            form = await request.post()
            given = form.get("csrf")
            if not isinstance(given, str) or not hmac.compare_digest(given, session.csrf):
                return notice(copy.FORM_EXPIRED_TITLE, copy.FORM_EXPIRED_TEXT, 403, reenter=True)
        return await handler(request, session)

    return guarded


async def auth_callback(request: web.Request) -> web.StreamResponse:
    """WeChat's redirect back: check the state, exchange the code, sign the member in."""
    auth = request.app[AUTH]
    pending = auth.read_login(request)
    code = request.query.get("code", "")
    state = request.query.get("state", "")
    response = await _signed_in_or_refused(request, pending, code, state)
    auth.forget(response, LOGIN_COOKIE)  # one sign-in per state, whatever happened
    return response


async def _signed_in_or_refused(
    request: web.Request, pending: tuple[str, str] | None, code: str, state: str
) -> web.Response:
    expired = (copy.LINK_EXPIRED_TITLE, copy.LINK_EXPIRED_TEXT, 400)
    if pending is None or not hmac.compare_digest(state.encode(), pending[0].encode()):
        log.info("member centre sign-in refused", extra={"reason": "state"})
        return notice(*expired, reenter=True)
    if not code or len(code) > MAX_CODE_CHARS:
        return notice(*expired, reenter=True)
    try:
        user = await request.app[wiring.WECHAT].oauth_openid(code)
    except WeChatAPIError as exc:
        if exc.errcode is None:
            log.warning("member centre sign-in: WeChat unreachable", extra={"error": exc.errmsg})
            return notice(copy.UNAVAILABLE_TITLE, copy.UNAVAILABLE_TEXT, 503)
        log.info("member centre sign-in refused", extra={"errcode": exc.errcode})
        return notice(*expired, reenter=True)
    if user.snapshot:
        return notice(copy.SNAPSHOT_TITLE, copy.SNAPSHOT_TEXT, 403)
    async with request.config_dict[wiring.ENGINE].connect() as connection:
        member_id = await member_by_openid(connection, user.openid)
    if member_id is None:
        return notice(copy.NOT_MEMBER_TITLE, copy.NOT_MEMBER_TEXT, 403)
    response = web.Response(
        status=302, headers={"Location": pending[1], "Cache-Control": "no-store"}
    )
    request.app[AUTH].sign_in(response, member_id, user.openid)
    return response
