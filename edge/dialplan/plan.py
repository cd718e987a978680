"""The compiled, indexed dialplan: called number -> the entry that owns it (exact first, longest prefix next).

A Plan is immutable; a reload builds a new one and swaps it in, so calls in progress keep theirs.
"""

from __future__ import annotations

import msgspec

from edge.media.schema import MediaSection, ScreeningMode
from edge.policy.facts import Action
from edge.policy.plan import DEFAULT_POLICY, NumberPolicy
from edge.policy.rules import BlockRule
from edge.stir.schema import StirPolicy

DEFAULT_STIR = StirPolicy()
NO_MEDIA = MediaSection()


class NumberEntry(msgspec.Struct, frozen=True):
    """What the edge knows about one dialplan number or prefix."""

    key: str  # E.164 number or prefix as written (normalised)
    exact: bool
    customer: str
    targets: tuple[str, ...]  # PBX names in failover order
    file: str
    vetted: bool = False
    action: Action = Action.ALLOW  # default treatment of a clean contact
    policy: NumberPolicy = DEFAULT_POLICY
    stir: StirPolicy = DEFAULT_STIR
    media: MediaSection = NO_MEDIA
    screening: ScreeningMode = ScreeningMode.ANSWER
    fax_target: str = ""  # PBX name for a fax heard while screening ('' = none: the flow carries on)
    path: str = ""  # JSON path of its number/prefix key in `file` ...
    line: int = 0  # ... and where that key is, for messages that point back at the file
    col: int = 0


class Plan:
    __slots__ = ("exact", "prefixes", "max_prefix", "files", "customers", "loaded_at", "rules", "pbx_customers")

    def __init__(
        self,
        entries: list[NumberEntry],
        files: tuple[str, ...] = (),
        loaded_at: float = 0.0,
        rules: list[BlockRule] | None = None,
    ) -> None:
        self.exact: dict[str, NumberEntry] = {}
        self.prefixes: dict[str, NumberEntry] = {}
        for e in entries:
            (self.exact if e.exact else self.prefixes)[e.key] = e
        self.max_prefix = max((len(k) for k in self.prefixes), default=0)
        self.files = files
        self.customers = {e.customer for e in entries if e.customer}
        self.loaded_at = loaded_at
        self.rules = rules or []  # static block/allow rules from the files
        # Which customers a PBX serves (for outbound attestation): PBX name -> customers.
        self.pbx_customers: dict[str, set[str]] = {}
        for e in entries:
            for t in e.targets:
                self.pbx_customers.setdefault(t, set()).add(e.customer)

    def lookup(self, e164: str) -> NumberEntry | None:
        """Exact match, else the longest prefix; O(number length)."""
        if not e164:
            return None
        hit = self.exact.get(e164)
        if hit is not None:
            return hit
        prefixes = self.prefixes
        if not prefixes:
            return None
        for n in range(min(len(e164), self.max_prefix), 1, -1):
            hit = prefixes.get(e164[:n])
            if hit is not None:
                return hit
        return None

    def numbers(self) -> list[NumberEntry]:
        return list(self.exact.values()) + list(self.prefixes.values())

    def __len__(self) -> int:
        return len(self.exact) + len(self.prefixes)
