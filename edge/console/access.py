"""Who is asking, and what they may see or change: the one place that scopes the admin API per customer.

The operator token and operator users see everything. A customer user sees only records of its own
customer: activities (by the activity's customer), rules scoped to that customer or to one of its
numbers, lifecycle records whose customer is theirs, voicemail left on their activities. Global rules
and other customers' records are not shown at all (404, never 403, so ids cannot be probed).
Changing anything needs the editor role; global rules and forced reassignment need an operator.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from edge.call.activity import Activity
from edge.console.users import Role
from edge.policy.rules import BlockRule, Scope


class Principal(msgspec.Struct, frozen=True):
    name: str
    role: Role
    customer: str = ""  # '' for operators
    via: str = "token"  # 'token' | 'session' | 'basic'

    @property
    def operator(self) -> bool:
        return self.role is Role.OPERATOR

    @property
    def can_edit(self) -> bool:
        return self.role is not Role.VIEWER


OPERATOR_TOKEN = Principal(name="admin-token", role=Role.OPERATOR)


class Forbidden(Exception):
    """403: authenticated, but the role does not allow this."""


def require_editor(p: Principal) -> None:
    if not p.can_edit:
        raise Forbidden(f"user {p.name!r} has the viewer role: changes need an editor")


def require_operator(p: Principal, what: str) -> None:
    if not p.operator:
        raise Forbidden(f"{what} is for operators only")


def sees_activity(p: Principal, a: Activity) -> bool:
    return p.operator or (bool(a.customer) and a.customer == p.customer)


def sees_rule(p: Principal, rule: BlockRule, customer_of: Callable[[str], str]) -> bool:
    if p.operator:
        return True
    if rule.scope is Scope.CUSTOMER:
        return rule.scope_value == p.customer
    if rule.scope is Scope.NUMBER:
        return customer_of(rule.scope_value) == p.customer
    return False


def owns_number(p: Principal, number: str, record_customer: str, customer_of: Callable[[str], str]) -> bool:
    """A number is the customer's when the dialplan routes it to them or its lifecycle record names them."""
    if p.operator:
        return True
    return customer_of(number) == p.customer or (bool(record_customer) and record_customer == p.customer)
