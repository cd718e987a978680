"""Admin HTTP API (aiohttp): activities, flag -> block, blocks, number lifecycle, health, Prometheus metrics.

Bound to 127.0.0.1 by default. Every route except `GET /health` needs credentials (edge.console.auth):
the operator's `Authorization: Bearer <token>` (the token file named in `[admin] token_file`), a console
user's Basic credentials or console session; `/metrics` needs an operator (Prometheus sends the token
with `authorization.credentials_file`). Console users are scoped to their customer (edge.console.access).
Errors are JSON `{"error": reason}`: 400 bad JSON, 401 missing/wrong credentials, 403 role refuses,
404 unknown (or another customer's) id, 409 lifecycle refusal, 422 invalid input, 503 store failure.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edge.call.activity import Activity
from edge.call.explain import ExplainRequest, Explanation, validate_request
from edge.console import access
from edge.console.access import Forbidden, Principal
from edge.daemon.admin_context import (  # re-exported: the admin API's context and errors
    CTX,
    AdminContext,
    CoolOffs,
    ApiError,
    BadRequest,
    InvalidInput,
    NotFound,
    RulesChanged,
    notify_rules_changed,
)
from edge.console.auth import CONSOLE, Console, ConsoleSettings, authenticate, security_headers, who
from edge.lifecycle.manager import LifecycleRefused
from edge.numbers import parse_number
from edge.policy.blocking import normalise_rule
from edge.policy.cnam import normalise_cnam
from edge.policy.facts import Action
from edge.policy.rules import BlockRule, RuleKind, Scope
from edge.store.protocol import MAX_PAGE, ActivityQuery, parse_cursor
from edge.store.sqlite import StoreError
from edge.units import parse_duration

log = structlog.get_logger()

T = TypeVar("T")
MAX_EXPIRY = 3650 * 86400.0  # a longer expiry is a typo or an overflow; permanent rules say so by omitting it
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?\Z")
_MAX_UNIX_SECONDS = 253402300799.0  # 9999-12-31T23:59:59Z
_JSON = "application/json"


class FlagRequest(msgspec.Struct, forbid_unknown_fields=True):
    by: Literal["number", "cnam", "name", "email", "ip"]  # name = cnam (chats and forms)
    scope: Scope | None = None  # default: the activity's customer (its called number when it has none); global only when asked
    action: Action = Action.REJECT
    sip_status: int = 603
    expires_in: str = ""
    reason: str = ""
    created_by: str = "admin-api"
    dry_run: bool = False


class BlockRequest(msgspec.Struct, forbid_unknown_fields=True):
    kind: RuleKind
    value: str = ""
    scope: Scope = Scope.GLOBAL
    scope_value: str = ""
    allow: bool = False
    action: Action = Action.REJECT
    sip_status: int = 603
    expires_in: str = ""
    expires_at: float | None = None
    dry_run: bool = False
    reason: str = ""
    created_by: str = "admin-api"


class ReleaseRequest(msgspec.Struct, forbid_unknown_fields=True):
    customer: str = ""


class AssignRequest(msgspec.Struct, forbid_unknown_fields=True):
    customer: str
    force: bool = False
    reason: str = ""


#: Decisions of texts (deliver/hold; outbound send/queued/refuse) and of chats and forms (challenge).
CONTENT_DECISIONS = ("deliver", "hold", "send", "queued", "refuse", "challenge")
_enc = msgspec.json.Encoder()


def load_token(path: str | Path, create: bool = False) -> str:
    """Read the bearer token; with create=True write a fresh random one (mode 0600) when the file is missing."""
    p = Path(path)
    if create and not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        log.info("admin_token_created", path=str(p))
    token = p.read_text().strip()
    if not token:
        raise ValueError(f"admin token file {str(p)!r} is empty")
    return token


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_enc.encode(data), status=status, content_type=_JSON)


def _error(status: int, reason: str) -> web.Response:
    return _json({"error": reason}, status=status)


async def _body(request: web.Request, type_: type[T], empty_ok: bool = False) -> T:
    raw = await request.read()
    if not raw.strip() and empty_ok:
        raw = b"{}"
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise InvalidInput(str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from exc


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, str(exc))
    except Forbidden as exc:
        return _error(403, str(exc))
    except LifecycleRefused as exc:
        return _error(409, exc.reason)
    except StoreError as exc:
        return _error(503, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)


# --- input parsing ---------------------------------------------------------------------------------
def _number(raw: str, region: str, what: str = "number") -> str:
    n = parse_number(raw, region)
    if not n.e164 or not n.valid:
        raise InvalidInput(f"invalid {what} {raw!r}: not a valid telephone number")
    return n.e164


def _time(raw: str, now: float, name: str) -> float:
    """Unix seconds, ISO 8601 ('2024-05-01T10:00:00Z') or a look-back duration ('1h' = one hour ago)."""
    if _UNIX_SECONDS.match(raw):
        seconds = float(raw)
        if seconds <= _MAX_UNIX_SECONDS:
            return seconds
        raise InvalidInput(f"invalid {name} {raw[:32]!r}: unix seconds beyond year 9999")
    try:
        return now - parse_duration(raw)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"invalid {name} {raw[:32]!r}: expected unix seconds, ISO 8601 or a duration like '1h'") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


def _activity_query(request: web.Request, ctx: AdminContext, limit_default: int = 100) -> ActivityQuery:
    q = request.query
    unknown = set(q) - {"since", "until", "number", "calling", "called", "decision", "flagged", "voicemail", "limit",
                        "cursor"}
    if unknown:
        raise InvalidInput(f"unknown filter {sorted(unknown)[0]!r}")
    now = ctx.clock()
    limit = limit_default
    if "limit" in q:
        raw = q["limit"]
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or not 1 <= int(raw) <= MAX_PAGE:
            raise InvalidInput(f"invalid limit {raw[:32]!r}: expected 1-{MAX_PAGE}")
        limit = int(raw)
    flagged = None
    if "flagged" in q:
        if q["flagged"] not in ("true", "false", "1", "0"):
            raise InvalidInput(f"invalid flagged {q['flagged']!r}: expected true or false")
        flagged = q["flagged"] in ("true", "1")
    voicemail = q.get("voicemail", "") in ("true", "1")
    decision = q.get("decision", "")
    decisions = [a.value for a in Action] + list(CONTENT_DECISIONS)
    if decision and decision not in decisions:
        raise InvalidInput(f"invalid decision {decision!r}: expected one of {', '.join(decisions)}")
    cursor = q.get("cursor", "")
    if cursor:
        try:
            parse_cursor(cursor)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
    p = who(request)
    return ActivityQuery(
        customer="" if p.operator else p.customer,
        since=_time(q["since"], now, "since") if "since" in q else None,
        until=_time(q["until"], now, "until") if "until" in q else None,
        number=_number(q["number"], ctx.region) if q.get("number") else "",
        calling=_number(q["calling"], ctx.region, "calling number") if q.get("calling") else "",
        called=_number(q["called"], ctx.region, "called number") if q.get("called") else "",
        decision=decision,
        flagged=flagged,
        voicemail=voicemail,
        limit=limit,
        cursor=cursor,
    )


def _expires_at(expires_in: str, expires_at: float | None, now: float) -> float | None:
    """When a runtime rule lapses; None (permanent) only when neither field is given, never by overflow."""
    if expires_in:
        try:
            seconds = parse_duration(expires_in)
        except ValueError as exc:
            raise InvalidInput(f"invalid expires_in: {exc}") from None
        if seconds > MAX_EXPIRY:
            raise InvalidInput(f"invalid expires_in {expires_in[:32]!r}: at most 3650d; omit it for a permanent rule")
        return now + seconds
    if expires_at is not None:
        if not math.isfinite(expires_at) or expires_at > now + MAX_EXPIRY:
            raise InvalidInput("invalid expires_at: at most 3650 days ahead; omit it for a permanent rule")
        if expires_at <= now:
            raise InvalidInput("expires_at is in the past")
    return expires_at


def _check_action(action: Action, allow: bool, sip_status: int) -> None:
    if not allow and action in (Action.ALLOW, Action.INTERCEPT):
        raise InvalidInput(f"invalid action {action.value!r} for a block rule: use allow=true for an allow entry")
    if not 400 <= sip_status <= 699:
        raise InvalidInput(f"invalid sip_status {sip_status}: expected a final failure code 400-699")


def _normalised(rule: BlockRule) -> BlockRule:
    try:
        return normalise_rule(rule)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def new_rule_id() -> str:
    return f"rt-{secrets.token_hex(6)}"


# --- handlers --------------------------------------------------------------------------------------
async def health(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    store = ctx.store.health()
    daemon = ctx.health()
    ok = bool(daemon.get("ok", True))
    body = {"status": "ok" if ok and not store.degraded else ("degraded" if ok else "unhealthy"), "store": store, **daemon}
    return _json(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    access.require_operator(who(request), "metrics")
    data = generate_latest(ctx.registry) if ctx.registry is not None else generate_latest()
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def list_activities(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    page = await ctx.store.query_activities(_activity_query(request, ctx))
    return _json(page)


async def list_voicemail(request: web.Request) -> web.Response:
    """Messages left by callers: each activity with its WAV file (path, size) for the PBX or an operator."""
    ctx = request.app[CTX]
    query = msgspec.structs.replace(_activity_query(request, ctx), voicemail=True)
    page = await ctx.store.query_activities(query)
    items = []
    for a in page.items:
        path = Path(a.voicemail_path)
        items.append({"activity_id": a.id, "received_at": a.received_at, "calling_number": a.calling_number,
                      "called_number": a.called_number, "cnam": a.cnam, "path": a.voicemail_path,
                      "bytes": path.stat().st_size if path.is_file() else None})
    return _json({"voicemail": items, "next_cursor": page.next_cursor})


async def export_activities(request: web.Request) -> web.StreamResponse:
    """JSON lines, newest first, every page of the filtered log (for collectors merging nodes)."""
    ctx = request.app[CTX]
    query = _activity_query(request, ctx, limit_default=MAX_PAGE)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    while True:
        page = await ctx.store.query_activities(query)
        if page.items:
            await response.write(b"".join(_enc.encode(a) + b"\n" for a in page.items))
        if not page.next_cursor:
            break
        query = msgspec.structs.replace(query, cursor=page.next_cursor)
    await response.write_eof()
    return response


async def _activity_or_404(ctx: AdminContext, activity_id: str, p: Principal) -> Activity:
    activity = await ctx.store.get_activity(activity_id)
    if activity is None or not access.sees_activity(p, activity):
        raise NotFound(f"unknown activity {activity_id!r}")
    return activity


async def get_activity(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return _json(await _activity_or_404(ctx, request.match_info["id"], who(request)))


async def flag_activity(request: web.Request) -> web.Response:
    """Turn an unwanted contact into a runtime block rule (by its caller number or caller name)."""
    ctx = request.app[CTX]
    activity_id = request.match_info["id"]
    req = await _body(request, FlagRequest)
    p = who(request)
    activity = await _activity_or_404(ctx, activity_id, p)
    access.require_editor(p)
    if req.scope is Scope.GLOBAL:
        access.require_operator(p, "a global rule")
    if p.via != "token":
        req = msgspec.structs.replace(req, created_by=p.name)  # a user's rule names the user
    now = ctx.clock()
    _check_action(req.action, False, req.sip_status)
    if req.by == "number":
        if not activity.calling_number:
            raise InvalidInput(f"activity {activity_id} has no calling number (anonymous): block kind 'anonymous' instead")
        kind, value = RuleKind.NUMBER, activity.calling_number
    elif req.by == "email":
        if not activity.email:
            raise InvalidInput(f"activity {activity_id} has no e-mail address to block")
        kind, value = RuleKind.EMAIL, activity.email
    elif req.by == "ip":
        ip = activity.source.rsplit(":", 1)[0] if activity.kind not in ("form", "chat") else activity.source
        if not ip:
            raise InvalidInput(f"activity {activity_id} has no IP address to block")
        kind, value = RuleKind.IP, ip.strip("[]")
    else:
        if not activity.cnam:
            raise InvalidInput(f"activity {activity_id} has no caller name to block")
        # The caller chose this name: a '*' in it is a literal, never a wildcard (normalising drops it).
        kind, value = RuleKind.CNAM, normalise_cnam(activity.cnam)
        if not value:
            raise InvalidInput(f"activity {activity_id} has no letters or digits in its caller name to block")
    scope_value = ""
    scope = req.scope
    if scope is None:  # one customer's flag must not block the caller for every customer
        scope = Scope.CUSTOMER if activity.customer else Scope.NUMBER
    if scope is Scope.CUSTOMER:
        if not activity.customer:
            raise InvalidInput(f"activity {activity_id} has no customer for a customer-scoped rule")
        scope_value = activity.customer
    elif scope is Scope.NUMBER:
        if not activity.called_number:
            raise InvalidInput(f"activity {activity_id} has no called number for a number-scoped rule: choose scope 'global'")
        scope_value = activity.called_number
    rule = _normalised(
        BlockRule(
            id=new_rule_id(),
            kind=kind,
            value=value,
            scope=scope,
            scope_value=scope_value,
            action=req.action,
            sip_status=req.sip_status,
            expires_at=_expires_at(req.expires_in, None, now),
            dry_run=req.dry_run,
            created_at=now,
            created_by=req.created_by,
            reason=req.reason or f"flagged from activity {activity_id}",
            activity_id=activity_id,
        )
    )
    for existing in await ctx.store.list_blocks():
        if (existing.kind, existing.value, existing.scope, existing.scope_value, existing.allow) == (
            rule.kind, rule.value, rule.scope, rule.scope_value, False
        ):
            flagged = await ctx.store.set_activity_flagged(activity_id)
            return _json({"rule": existing, "activity": flagged, "created": False})
    await ctx.store.add_block(rule)
    flagged = await ctx.store.set_activity_flagged(activity_id)
    await notify_rules_changed(ctx, rule, None)
    log.info("activity_flagged", activity_id=activity_id, rule_id=rule.id, kind=kind.value, scope=scope.value)
    return _json({"rule": rule, "activity": flagged, "created": True}, status=201)


async def list_blocks(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    p = who(request)
    return _json({"blocks": [r for r in await ctx.store.list_blocks() if access.sees_rule(p, r, ctx.customer_of)]})


async def get_block(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    rule = await ctx.store.get_block(request.match_info["id"])
    if rule is None or not access.sees_rule(who(request), rule, ctx.customer_of):
        raise NotFound(f"unknown block rule {request.match_info['id']!r}")
    return _json(rule)


async def add_block(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    req = await _body(request, BlockRequest)
    p = who(request)
    access.require_editor(p)
    if not p.operator:
        if req.scope is Scope.GLOBAL:
            raise Forbidden("a global rule is for operators only: use scope customer or number")
        if req.scope is Scope.CUSTOMER and req.scope_value not in ("", p.customer):
            raise Forbidden(f"rules can only be scoped to your own customer {p.customer!r}")
        req = msgspec.structs.replace(req, scope_value=p.customer if req.scope is Scope.CUSTOMER else req.scope_value)
    if p.via != "token":
        req = msgspec.structs.replace(req, created_by=p.name)
    now = ctx.clock()
    _check_action(req.action, req.allow, req.sip_status)
    if req.kind in (RuleKind.ANONYMOUS, RuleKind.INVALID) and req.value:
        raise InvalidInput(f"kind {req.kind.value!r} takes no value")
    if req.kind is RuleKind.NUMBER:
        value = _number(req.value, ctx.region)
    else:
        value = req.value
    scope_value = req.scope_value
    if req.scope is Scope.NUMBER:
        scope_value = _number(req.scope_value, ctx.region, "called number")
        if not access.owns_number(p, scope_value, "", ctx.customer_of):
            raise Forbidden(f"{scope_value} is not one of customer {p.customer!r}'s numbers")
    rule = _normalised(
        BlockRule(
            id=new_rule_id(),
            kind=req.kind,
            value=value,
            scope=req.scope,
            scope_value=scope_value,
            allow=req.allow,
            action=Action.ALLOW if req.allow else req.action,
            sip_status=req.sip_status,
            expires_at=_expires_at(req.expires_in, req.expires_at, now),
            dry_run=req.dry_run,
            created_at=now,
            created_by=req.created_by,
            reason=req.reason,
        )
    )
    await ctx.store.add_block(rule)
    await notify_rules_changed(ctx, rule, None)
    log.info("block_added", rule_id=rule.id, kind=rule.kind.value, scope=rule.scope.value, allow=rule.allow)
    return _json(rule, status=201)


async def remove_block(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    rule_id = request.match_info["id"]
    p = who(request)
    rule = await ctx.store.get_block(rule_id)
    if rule is None or not access.sees_rule(p, rule, ctx.customer_of):
        raise NotFound(f"unknown block rule {rule_id!r}")
    access.require_editor(p)
    if not await ctx.store.remove_block(rule_id):
        raise NotFound(f"unknown block rule {rule_id!r}")
    await notify_rules_changed(ctx, None, rule_id)
    log.info("block_removed", rule_id=rule_id)
    return _json({"removed": rule_id})


async def list_numbers(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    p = who(request)
    return _json({"numbers": [s for s in ctx.lifecycle.statuses(ctx.clock())
                              if access.owns_number(p, s.number, s.customer, ctx.customer_of)]})


async def numbers_available(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    access.require_operator(who(request), "the pool of available numbers")
    return _json({"numbers": ctx.lifecycle.available(ctx.clock())})


async def get_number(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    number = _number(request.match_info["number"], ctx.region)
    status = ctx.lifecycle.status(number, ctx.clock())
    if status is None or not access.owns_number(who(request), number, status.customer, ctx.customer_of):
        raise NotFound(f"{number} has no lifecycle record (never released)")
    return _json(status)


async def release_number(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    number = _number(request.match_info["number"], ctx.region)
    req = await _body(request, ReleaseRequest, empty_ok=True)
    p = who(request)
    status = ctx.lifecycle.status(number, ctx.clock())
    if not access.owns_number(p, number, status.customer if status else "", ctx.customer_of):
        raise NotFound(f"{number} is not one of customer {p.customer!r}'s numbers")
    access.require_editor(p)
    if not p.operator:
        req = ReleaseRequest(customer=p.customer)
    now = ctx.clock()
    record = ctx.lifecycle.release(number, now, customer=req.customer)
    await ctx.store.put_number(record)
    log.info("number_released", number=number, customer=record.customer)
    return _json(ctx.lifecycle.status(number, now))


async def assign_number(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    number = _number(request.match_info["number"], ctx.region)
    req = await _body(request, AssignRequest)
    p = who(request)
    status = ctx.lifecycle.status(number, ctx.clock())
    if not access.owns_number(p, number, status.customer if status else "", ctx.customer_of):
        raise NotFound(f"{number} is not one of customer {p.customer!r}'s numbers")
    access.require_editor(p)
    if not p.operator:
        if req.customer != p.customer:
            raise Forbidden(f"a number can only be assigned back to your own customer {p.customer!r}")
        if req.force:
            raise Forbidden("forcing an assignment before eligibility is for operators only")
    now = ctx.clock()
    record = ctx.lifecycle.assign(number, req.customer, now, force=req.force, reason=req.reason)
    await ctx.store.put_number(record)
    if req.force and record.overrides and record.overrides[-1].at == now:
        log.warning("number_assigned_by_override", number=number, customer=req.customer, reason=req.reason,
                    refused_because=record.overrides[-1].refused_because)
    else:
        log.info("number_assigned", number=number, customer=req.customer)
    return _json(ctx.lifecycle.status(number, now))


def _held(request: web.Request) -> Any:
    held = request.app[CTX].held
    if held is None:
        raise NotFound("messaging is not running")
    return held


def _own_held(request: web.Request, held_id: str) -> None:
    """A customer user reviews only its own customer's held messages (404 otherwise, like activities)."""
    p = who(request)
    access.require_editor(p)
    if p.operator:
        return
    if not any(h["id"] == held_id for h in _held(request).list(p.customer)):
        raise NotFound(f"no held message {held_id}")


async def list_held(request: web.Request) -> web.Response:
    """Messages held for review, oldest first (`?customer=` narrows; a customer user sees only its own)."""
    p = who(request)
    customer = request.query.get("customer", "") if p.operator else p.customer
    return _json({"held": _held(request).list(customer)})


async def _review(request: web.Request, verb: str) -> web.Response:
    """Release (deliver to the number's PBX) or drop a held message; its activity records who did which."""
    held_id = request.match_info["id"]
    _own_held(request, held_id)
    held = _held(request)
    if verb == "released":
        done, decision, missing = held.release(held_id), "deliver", " (or no PBX target in rotation)"
    else:
        done, decision, missing = held.drop(held_id), "reject", ""
    if not done:
        raise NotFound(f"no held message {held_id}{missing}")
    store = request.app[CTX].store
    a = await store.get_activity(held_id)
    if a is not None:
        a.decision, a.rule_id = decision, f"review.{verb}"
        a.reason = f"{verb} by {who(request).name} after review"
        await store.update_activity(a)
    return _json({verb: held_id})


async def release_held(request: web.Request) -> web.Response:
    return await _review(request, "released")


async def drop_held(request: web.Request) -> web.Response:
    return await _review(request, "dropped")


async def list_optouts(request: web.Request) -> web.Response:
    """Recipients who opted out, per campaign (this node's view, shared through the store)."""
    access.require_operator(who(request), "the opt-out list")
    return _json({"optouts": _held(request).optouts()})


def make_admin_app(ctx: AdminContext) -> web.Application:
    app = web.Application(middlewares=[security_headers, _errors, authenticate], client_max_size=1 << 20)
    app[CTX] = ctx
    app[CONSOLE] = Console(ctx.store, ctx.token, ctx.console, ctx.clock)
    r = app.router
    r.add_get("/health", health)
    r.add_get("/metrics", metrics)
    r.add_get("/activities", list_activities)
    r.add_get("/activities/export", export_activities)
    r.add_get("/activities/{id}", get_activity)
    r.add_post("/activities/{id}/flag", flag_activity)
    r.add_get("/voicemail", list_voicemail)
    r.add_get("/blocks", list_blocks)
    r.add_post("/blocks", add_block)
    r.add_get("/blocks/{id}", get_block)
    r.add_delete("/blocks/{id}", remove_block)
    r.add_get("/numbers", list_numbers)
    r.add_get("/numbers-available", numbers_available)
    r.add_get("/numbers/{number}", get_number)
    r.add_post("/numbers/{number}/release", release_number)
    r.add_post("/numbers/{number}/assign", assign_number)
    r.add_get("/messages/held", list_held)
    r.add_post("/messages/held/{id}/release", release_held)
    r.add_delete("/messages/held/{id}", drop_held)
    r.add_get("/optouts", list_optouts)
    add_cool_off_routes(r)
    add_explain_routes(r)
    from edge.console import pages

    pages.mount(app, ctx)
    return app


# -- Spam Detective cool-offs: look one up, lift it ------------------------------------------------


def _cool_off(ctx: AdminContext, request: web.Request) -> tuple[CoolOffs, str]:
    # A cool-off is about a caller across every customer: operators only.
    access.require_operator(who(request), "a Spam Detective cool-off")
    if ctx.cool_offs is None:
        raise NotFound("no Spam Detective in this process")
    return ctx.cool_offs, _number(request.match_info["number"], ctx.region, "caller number")


async def get_cool_off(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    cool_offs, number = _cool_off(ctx, request)
    now = ctx.clock()
    flag = cool_offs.flag(number, now)
    if flag is None:
        raise NotFound(f"{number} is not in a Spam Detective cool-off")
    return _json({"number": number, "until": flag.until, "seconds_left": round(flag.until - now, 1), "score": flag.score,
                  "action": flag.action.value, "rule_id": flag.rule_id, "reason": flag.reason})


async def clear_cool_off(request: web.Request) -> web.Response:
    """Lift a caller's cool-off: its next call is judged on its own evidence again."""
    ctx = request.app[CTX]
    cool_offs, number = _cool_off(ctx, request)
    flag = cool_offs.flag(number, ctx.clock())
    if not cool_offs.clear_flag(number):
        raise NotFound(f"{number} is not in a Spam Detective cool-off")
    log.info("cool_off_cleared", calling=number, rule_id=flag.rule_id if flag else "", reason=flag.reason if flag else "")
    return _json({"cleared": number})


def add_cool_off_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/cool-off/{number}", get_cool_off)
    r.add_delete("/cool-off/{number}", clear_cool_off)


# -- sip-edge explain --live: the decision path with this daemon's counts ---------------------------


async def explain_contact(request: web.Request) -> web.Response:
    """What a contact would get now (edge.call.explain), counting nothing."""
    ctx = request.app[CTX]
    access.require_operator(who(request), "explain (it shows every customer's rules)")
    if ctx.explain is None:
        raise NotFound("explain is not available in this process")
    req = await _body(request, ExplainRequest)
    problems = validate_request(req)
    if problems:
        raise InvalidInput("; ".join(problems))
    result = ctx.explain(req)
    if isinstance(result, str):
        raise InvalidInput(result)
    return _json(result)


def add_explain_routes(r: web.UrlDispatcher) -> None:
    r.add_post("/explain", explain_contact)


async def start_admin(app: web.Application, host: str = "127.0.0.1", port: int = 8081) -> web.AppRunner:
    """Start serving; stop with `await runner.cleanup()`. Port 0 picks a free port (see `bound_port`)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("admin_listening", host=host, port=bound_port(runner))
    return runner


def bound_port(runner: web.AppRunner) -> int:
    for addr in runner.addresses:
        return int(addr[1])
    raise RuntimeError("admin API is not listening")


async def expire_rules(ctx: AdminContext) -> list[str]:
    """Drop expired runtime rules from the store and the matcher; the daemon calls this every second or so."""
    gone = await ctx.store.expire_blocks(ctx.clock())
    for rule_id in gone:
        await notify_rules_changed(ctx, None, rule_id)
    if gone:
        log.info("blocks_expired", count=len(gone))
    return gone
