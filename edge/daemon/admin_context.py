"""What the admin API's handlers share: the context the daemon builds, the app key it is stored under,
the API's error types and the rules-changed notification. Its own module so the console pages
(edge/console/pages.py) and the admin routes (edge/daemon/admin.py) both import it without importing
each other.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from edge.call.explain import ExplainRequest, Explanation
from edge.console.auth import ConsoleSettings
from edge.lifecycle.manager import Lifecycle
from edge.policy.rules import BlockRule
from edge.policy.spam import Flag
from edge.store.protocol import StateStore

RulesChanged = Callable[[BlockRule | None, str | None], Awaitable[None] | None]


class CoolOffs(Protocol):
    """What the routes need from the policy engine (edge.policy.pipeline.PolicyEngine)."""

    def flag(self, calling_number: str, now: float) -> Flag | None: ...
    def clear_flag(self, calling_number: str) -> bool: ...


@dataclasses.dataclass(frozen=True)
class AdminContext:
    """What the admin API reaches into; the daemon builds one and keeps it for the app's life."""

    store: StateStore
    lifecycle: Lifecycle
    token: str
    on_rules_changed: RulesChanged  # wired to the RuleIndex so a flag applies to the next contact
    health: Callable[[], dict[str, Any]] = lambda: {"ok": True}  # daemon view; 'ok': False -> 503
    registry: CollectorRegistry | None = None
    clock: Callable[[], float] = time.time
    region: str = "US"  # default region for numbers typed without a country code
    held: Any = None  # edge.daemon.messaging.HeldView: messages held for review, opt-outs
    customer_of: Callable[[str], str] = lambda number: ""  # dialplan owner of a called number (console scoping)
    console: ConsoleSettings = ConsoleSettings()
    rule_hits: Callable[[], dict[str, int]] = dict  # decisions per rule id since start (policy counters)
    plan_numbers: Callable[[], list[tuple[str, str]]] = list  # (exact number, customer) from the dialplans
    plan_rules: Callable[[], list[BlockRule]] = list  # block/allow rules written in the dialplan files
    cool_offs: CoolOffs | None = None  # the Spam Detective's flags (GET/DELETE /cool-off/{number})
    explain: Callable[[ExplainRequest], Explanation | str] | None = None  # POST /explain; str: why not


class ApiError(Exception):
    status = 500


class BadRequest(ApiError):
    """400: the body is not JSON."""

    status = 400


class NotFound(ApiError):
    status = 404


class InvalidInput(ApiError):
    """422: the request is well-formed JSON but a value is not acceptable."""

    status = 422




CTX = web.AppKey("ctx", AdminContext)


async def notify_rules_changed(ctx: AdminContext, add: BlockRule | None, removed: str | None) -> None:
    result = ctx.on_rules_changed(add, removed)
    if inspect.isawaitable(result):
        await result


__all__ = ["CTX", "AdminContext", "CoolOffs", "ApiError", "BadRequest", "InvalidInput", "NotFound", "RulesChanged", "notify_rules_changed"]
