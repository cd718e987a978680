"""Authentication for the admin listener: the operator bearer token, console sessions, per-user Basic auth.

Every request except `/health`, `/login` and `/static/` resolves to a `Principal` (request["principal"])
or is refused: 401 JSON for the API, a redirect to the login page for the console page. A session
cookie is `HttpOnly; SameSite=Strict` (plus `Secure` over TLS); a state-changing request made with it
must carry the session's CSRF token in `X-CSRF-Token` and, when the browser sends one, a same-origin
`Origin`. Password checks (scrypt) run off the event loop so a login never stalls SIP.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import structlog
from aiohttp import web

from edge.console.access import OPERATOR_TOKEN, Principal
from edge.console.sessions import LoginThrottle, SessionTable
from edge.console.users import MAX_SECRET, ConsoleUser, hash_secret, verify_secret
from edge.store.protocol import StateStore
from edge.store.schema import AdminConfig
from edge.units import parse_duration

log = structlog.get_logger()

COOKIE = "edge_session"
PUBLIC = ("/health", "/login")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_enc = msgspec.json.Encoder()
_DUMMY_HASH = hash_secret("not-a-real-user-secret")  # equal work for unknown users: no user-name oracle
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConsoleSettings(msgspec.Struct, frozen=True):
    session_ttl: float = 12 * 3600.0
    session_idle: float = 3600.0
    secure_cookies: bool = False  # set when a TLS proxy fronts the listener (request.secure covers direct TLS)
    login_failures: int = 5
    login_window: float = 300.0


def console_settings(cfg: AdminConfig) -> ConsoleSettings:
    """[admin] (already validated by `sip-edge check`) -> the console's settings."""
    return ConsoleSettings(session_ttl=parse_duration(cfg.session_ttl), session_idle=parse_duration(cfg.session_idle),
                           secure_cookies=cfg.secure_cookies, login_failures=cfg.login_failures,
                           login_window=parse_duration(cfg.login_window))


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    user: str
    password: str


class Console:
    """Per-app console state: sessions, throttle, verified-credential cache, counters."""

    def __init__(self, store: StateStore, token: str, settings: ConsoleSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.token = token
        self.settings = settings = settings or ConsoleSettings()
        self.clock = clock
        self.sessions = SessionTable(ttl=settings.session_ttl, idle=settings.session_idle)
        self.throttle = LoginThrottle(max_failures=settings.login_failures, window=settings.login_window)
        self._verified: collections.OrderedDict[str, float] = collections.OrderedDict()  # Basic auth cache
        self.logins = 0
        self.login_failures = 0
        self.streams = 0  # open live-activity streams
        self._hashing = asyncio.Semaphore(2)  # scrypt takes 16 MiB each: at most two at once, whoever asks

    def stats(self) -> dict[str, int]:
        return {"console_sessions": len(self.sessions), "console_logins_total": self.logins,
                "console_login_failures_total": self.login_failures,
                "console_logins_refused_total": self.throttle.refused}

    async def check_password(self, name: str, password: str, remote: str) -> tuple[ConsoleUser | None, float]:
        """(user, 0) on success; (None, retry_after) when throttled; (None, 0) on a wrong name or secret."""
        now = self.clock()
        keys = [f"ip:{remote}", f"user:{name}"]
        wait = self.throttle.retry_after(keys, now)
        if wait:
            log.warning("console_login_throttled", user=name, remote=remote, retry_after=round(wait))
            return None, wait
        user = await self.store.get_user(name) if len(name) <= 64 else None
        stored = user.secret_hash if user is not None else _DUMMY_HASH
        async with self._hashing:
            ok = await asyncio.get_running_loop().run_in_executor(None, verify_secret, password, stored)
        if user is None or not ok:
            self.throttle.failed(keys, self.clock())
            self.login_failures += 1
            log.warning("console_login_failed", user=name, remote=remote)
            return None, 0.0
        self.throttle.succeeded([f"user:{name}"])
        return user, 0.0

    async def basic(self, header: str, remote: str) -> Principal | None:
        try:
            raw = binascii.a2b_base64(header.encode()).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, sep, password = raw.partition(":")
        if not sep or len(password) > MAX_SECRET:
            return None
        user = await self.store.get_user(name) if len(name) <= 64 else None
        key = ""
        if user is not None:
            key = hashlib.sha256(f"{name}\0{password}\0{user.secret_hash}".encode()).hexdigest()
            now = self.clock()
            if self._verified.get(key, 0.0) > now:
                return principal_of(user, "basic")
        user, _ = await self.check_password(name, password, remote)
        if user is None or not key:
            return None
        self._verified[key] = self.clock() + 300.0
        while len(self._verified) > 1000:
            self._verified.popitem(last=False)
        return principal_of(user, "basic")


def principal_of(user: ConsoleUser, via: str) -> Principal:
    return Principal(name=user.name, role=user.role, customer=user.customer, via=via)


CONSOLE = web.AppKey("console", Console)
PRINCIPAL = web.RequestKey("principal", Principal)


def _unauthorized(reason: str) -> web.Response:
    return web.Response(body=_enc.encode({"error": reason}), status=401, content_type="application/json",
                        headers={"WWW-Authenticate": 'Bearer realm="sip-edge"'})


def _forbidden(reason: str) -> web.Response:
    return web.Response(body=_enc.encode({"error": reason}), status=403, content_type="application/json")


def same_origin(request: web.Request) -> bool:
    """A browser names the page's origin on cross-origin and POST requests; it must be this listener's
    (with `secure_cookies`, a TLS proxy in front: the browser's origin is https on the same Host)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if origin == f"{request.scheme}://{request.host}":
        return True
    return request.app[CONSOLE].settings.secure_cookies and origin == f"https://{request.host}"


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if isinstance(response, web.HTTPException):
        raise response
    return response


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path in PUBLIC or path.startswith("/static/"):
        return await handler(request)
    console = request.app[CONSOLE]
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    principal: Principal | None = None
    if header:
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), console.token.encode()):
            principal = OPERATOR_TOKEN
        elif scheme.lower() == "basic":
            principal = await console.basic(given.strip(), request.remote or "")
        if principal is None:
            log.warning("admin_unauthorized", path=path, remote=request.remote)
            return _unauthorized("wrong user name or password" if scheme.lower() == "basic"
                                 else "missing or invalid bearer token")
    else:
        session = console.sessions.get(request.cookies.get(COOKIE, ""), console.clock())
        if session is None:
            if path == "/" and request.method in SAFE_METHODS:
                raise web.HTTPSeeOther("/login")
            return _unauthorized("missing or invalid bearer token")
        if request.method not in SAFE_METHODS:
            given_csrf = request.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(given_csrf.encode(), session.csrf.encode()) or not same_origin(request):
                log.warning("console_csrf_refused", path=path, user=session.principal.name, remote=request.remote)
                return _forbidden("missing or invalid CSRF token")
        user = await console.store.get_user(session.principal.name)
        if user is None or principal_of(user, "session") != session.principal or user.secret_hash != session.secret_hash:
            console.sessions.end(session.id)  # removed or changed since login: log in again
            return _unauthorized("session ended: the user was removed or changed")
        principal = session.principal
    request[PRINCIPAL] = principal
    structlog.contextvars.bind_contextvars(user=principal.name)
    try:
        return await handler(request)
    finally:
        structlog.contextvars.unbind_contextvars("user")


def who(request: web.Request) -> Principal:
    """The authenticated principal; KeyError would mean a route escaped `authenticate`."""
    return request[PRINCIPAL]


def _cookie(response: web.StreamResponse, request: web.Request, console: Console, value: str, max_age: int) -> None:
    response.set_cookie(COOKIE, value, max_age=max_age, path="/", httponly=True, samesite="Strict",
                        secure=request.secure or console.settings.secure_cookies)


async def login(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    if request.method == "GET":
        return web.FileResponse(static_dir() / "login.html", headers={"Cache-Control": "no-store"})
    if not same_origin(request):
        return _forbidden("cross-origin login refused")
    raw = await request.read()
    try:
        req = msgspec.json.decode(raw, type=LoginRequest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return web.json_response({"error": f"expected {{\"user\", \"password\"}}: {exc}"}, status=400)
    remote = request.remote or ""
    user, wait = await console.check_password(req.user, req.password, remote)
    if wait:
        return web.json_response({"error": f"too many failed logins: try again in {int(wait) + 1}s"}, status=429,
                                 headers={"Retry-After": str(int(wait) + 1)})
    if user is None:
        return web.json_response({"error": "wrong user name or password"}, status=401)
    session = console.sessions.create(principal_of(user, "session"), console.clock(), user.secret_hash)
    console.logins += 1
    log.info("console_login", user=user.name, customer=user.customer, role=user.role.value, remote=remote)
    response = web.json_response(_me(session.principal, session.csrf))
    _cookie(response, request, console, session.id, int(console.settings.session_ttl))
    return response


def _me(p: Principal, csrf: str = "") -> dict[str, Any]:
    return {"user": p.name, "role": p.role.value, "customer": p.customer, "operator": p.operator,
            "can_edit": p.can_edit, "csrf": csrf}


async def me(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    session = console.sessions.get(request.cookies.get(COOKIE, ""), console.clock())
    return web.json_response(_me(who(request), session.csrf if session is not None else ""))


async def logout(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    ended = console.sessions.end(request.cookies.get(COOKIE, ""))
    log.info("console_logout", user=who(request).name, ended=ended)
    response = web.json_response({"logged_out": ended})
    _cookie(response, request, console, "", 0)
    return response


def static_dir() -> Path:
    return Path(__file__).resolve().parent / "static"
