"""Who is at the console: argon2 passwords, server-side sessions, CSRF, throttled logins, roles.

- Passwords are argon2id hashes (argon2-cffi's defaults); a hash made with older parameters is
  upgraded at the next login.
- A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie scoped to
  /console (Secure when the public URL is https). Redis keeps the session under the token's
  SHA-256, so a copy of Redis holds no usable session. Logging in always starts a new session
  (no fixation); logging out deletes it.
- Every state-changing request carries the session's CSRF token (a form field or the
  ``X-CSRF-Token`` header), compared in constant time. The login form, before any session,
  uses a double-submit cookie.
- Failed logins are counted per username and per address; past ``login_failures`` the login
  pauses for ``login_pause_minutes`` without checking the password. The address is the peer's,
  or behind proxies the right-most X-Forwarded-For hop that is not a ``trusted_proxies`` one:
  hops further left are whatever the client sent, so a caller cannot choose its own address.
- ``requires(*roles)`` guards a route: no session → the login page (or 401 for a non-GET),
  another role → 403.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis

from bot.console.settings import ConsoleConfig

COOKIE = "console_session"
LOGIN_CSRF_COOKIE = "console_login_csrf"
SESSION_KEY = "console:session:{digest}"
FAILURES_KEY = "console:login:failures:{who}"
MIN_PASSWORD = 10
_hasher = PasswordHasher()
# Verified against when a username is unknown, so a guess costs the same either way.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (ValueError when it is too short to be safe)."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def check_password(stored: str | None, password: str) -> tuple[bool, str | None]:
    """(matches, a rehash to store when the hash's parameters are outdated)."""
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False, None
    if stored is None:
        return False, None
    return True, _hasher.hash(password) if _hasher.check_needs_rehash(stored) else None


@dataclass(frozen=True, slots=True)
class StaffSession:
    """The signed-in staff member, as the session recorded them at login."""

    staff_id: int
    username: str
    role: str
    csrf: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Console sessions and login throttling, in Redis."""

    def __init__(self, redis: Redis, config: ConsoleConfig, secure: bool) -> None:
        self._redis = redis
        self._config = config
        self.secure = secure

    async def start(self, staff_id: int, username: str, role: str) -> tuple[str, StaffSession]:
        """A new session (its cookie token, and what it holds)."""
        token = secrets.token_urlsafe(32)
        session = StaffSession(staff_id, username, role, secrets.token_urlsafe(32))
        key = SESSION_KEY.format(digest=_digest(token))
        fields = {"staff_id": staff_id, "username": username, "role": role, "csrf": session.csrf}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self._config.session_hours * 3600)
            await pipe.execute()
        return token, session

    async def load(self, token: str | None) -> StaffSession | None:
        """The session behind a cookie token, if it is live."""
        if not token or len(token) > 100:
            return None
        raw = await self._redis.hgetall(SESSION_KEY.format(digest=_digest(token)))
        if not raw:
            return None
        data = {k.decode(): v.decode() for k, v in raw.items()}
        return StaffSession(int(data["staff_id"]), data["username"], data["role"], data["csrf"])

    async def end(self, token: str | None) -> None:
        """Delete the session (logout, or a new login replacing it)."""
        if token:
            await self._redis.delete(SESSION_KEY.format(digest=_digest(token)))

    async def end_all_of(self, staff_id: int) -> None:
        """Delete every session of one staff member (their account was disabled)."""
        async for key in self._redis.scan_iter(match=SESSION_KEY.format(digest="*")):
            if await self._redis.hget(key, "staff_id") == str(staff_id).encode():
                await self._redis.delete(key)

    async def paused(self, username: str, address: str) -> bool:
        """Whether logins for this username or from this address are paused."""
        keys = [FAILURES_KEY.format(who=f"user:{username}"), FAILURES_KEY.format(who=address)]
        counts = await self._redis.mget(keys)
        return any(int(c or 0) >= self._config.login_failures for c in counts)

    async def failed(self, username: str, address: str) -> None:
        """Count a failed login against the username and the address."""
        pause = self._config.login_pause_minutes * 60
        async with self._redis.pipeline(transaction=True) as pipe:
            for who in (f"user:{username}", address):
                key = FAILURES_KEY.format(who=who)
                pipe.incr(key).expire(key, pause)
            await pipe.execute()

    async def succeeded(self, username: str) -> None:
        await self._redis.delete(FAILURES_KEY.format(who=f"user:{username}"))

    def set_cookie(self, response: web.StreamResponse, token: str) -> None:
        response.set_cookie(
            COOKIE,
            token,
            max_age=self._config.session_hours * 3600,
            path="/console",
            httponly=True,
            samesite="Strict",
            secure=self.secure,
        )

    def clear_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/console")


SESSIONS = web.AppKey("console_sessions", Sessions)
STAFF = web.RequestKey("console_staff", StaffSession)


def csrf_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a CSRF token."""
    return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())


async def _form_or_header_token(request: web.Request) -> str | None:
    header = request.headers.get("X-CSRF-Token")
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get("csrf")
        return value if isinstance(value, str) else None
    return None


def requires(*roles: str) -> Callable[[Handler], Handler]:
    """Guard a console route: a live session with one of ``roles``, and for anything but
    GET/HEAD the session's CSRF token."""

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            sessions = request.config_dict[SESSIONS]
            staff = await sessions.load(request.cookies.get(COOKIE))
            reading = request.method in ("GET", "HEAD")
            if staff is None:
                if reading:
                    raise web.HTTPSeeOther("/console/login")
                raise web.HTTPUnauthorized(text="not signed in")
            if staff.role not in roles:
                raise web.HTTPForbidden(text="your role cannot do this")
            if not reading and not csrf_matches(staff.csrf, await _form_or_header_token(request)):
                raise web.HTTPForbidden(text="missing or wrong CSRF token")
            request[STAFF] = staff
            return await handler(request)

        guarded.roles = roles  # type: ignore[attr-defined]  # read by the route-table test
        return guarded

    return decorate


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: web.Request, trusted_proxies: Sequence[Network]) -> str:
    """The caller's address, for the login throttle and the audit log.

    A proxy appends the address it saw to X-Forwarded-For (nginx's
    ``$proxy_add_x_forwarded_for``), after whatever the client sent. So, starting from the peer
    and walking the hops from the right, the first address that is not a trusted proxy is the
    caller; the hops left of it are the client's own words and are never read. A peer that is
    not a trusted proxy is the caller, whatever the header says."""
    hops = ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")
    earlier = reversed([hop.strip() for hop in hops if hop.strip()])
    address = request.remote or "unknown"
    while _is_trusted(address, trusted_proxies):
        hop = next(earlier, None)
        if hop is None:
            break  # proxies all the way: the left-most is as far as anyone can tell
        address = hop
    return address[:64]  # a Redis key part: a hop that is not an address stays short


def _is_trusted(address: str, trusted_proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return any(ip in network for network in trusted_proxies)


def template_context(request: web.Request, **values: Any) -> dict[str, Any]:
    """What every console template gets: the signed-in staff member and their CSRF token."""
    staff = request.get(STAFF)
    return {"staff": staff, "csrf": staff.csrf if staff else "", **values}
