"""Block and allow rules: the one shape shared by dialplan files, runtime entries, the store and the matcher."""

from __future__ import annotations

import enum

import msgspec

from edge.policy.facts import Action


class RuleKind(str, enum.Enum):
    NUMBER = "number"  # value: E.164 caller number
    CNAM = "cnam"  # value: normalised caller-name pattern, '*' wildcards allowed
    PREFIX = "prefix"  # value: E.164 prefix ('+1', '+1202', '+1202555')
    ANONYMOUS = "anonymous"  # value: ''
    INVALID = "invalid"  # value: '' (phonenumbers says the caller number is not valid)
    COUNTRY = "country"  # value: ISO 3166 region code ('NG')
    # Content kinds (messages, chats, forms): indexed apart, matched by edge.messaging.rules.
    TEXT = "text"  # value: normalised text pattern, '*' wildcards ('*giftcard*')
    EMAIL = "email"  # value: lower-case address or pattern ('*@mailinator.com', 'bob@x.org')
    IP = "ip"  # value: address or CIDR ('203.0.113.0/24')


CONTENT_KINDS = frozenset({RuleKind.TEXT, RuleKind.EMAIL, RuleKind.IP})


class Scope(str, enum.Enum):
    GLOBAL = "global"
    CUSTOMER = "customer"  # scope_value: customer name
    NUMBER = "number"  # scope_value: E.164 called number


class BlockRule(msgspec.Struct, frozen=True):
    """One block (or, with allow=True, allow) entry. Allow entries override blocks in the same or wider scope."""

    id: str
    kind: RuleKind
    value: str = ""
    scope: Scope = Scope.GLOBAL
    scope_value: str = ""
    allow: bool = False
    action: Action = Action.REJECT
    sip_status: int = 603
    expires_at: float | None = None  # unix seconds; None = never
    dry_run: bool = False
    source: str = "runtime"  # 'runtime' or 'dialplan:<file>'
    created_at: float = 0.0
    created_by: str = ""
    reason: str = ""
    activity_id: str = ""  # the flagged activity this rule was created from
