"""Load a directory of dialplan files into a Plan, or report every error as `file: $.path: reason`."""

from __future__ import annotations

import tomllib
from collections.abc import Collection
from pathlib import Path

import msgspec

from edge.dialplan.plan import NumberEntry, Plan
from edge.dialplan.schema import DialplanFile, NumberSpec
from edge.media.schema import MediaSection, validate_media
from edge.numbers import parse_number
from edge.policy.facts import Action
from edge.policy.rules import BlockRule, Scope
from edge.policy.schema import compile_number_policy, compile_rules, compile_spam
from edge.stir.schema import validate_policy

DEFAULT_ACTIONS = (Action.ALLOW, Action.MENU, Action.CAPTCHA, Action.VOICEMAIL)


class DialplanError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _normalise_key(text: str, exact: bool) -> str | None:
    """Exact numbers are canonical E.164 (phonenumbers); prefixes are '+' and digits."""
    if exact:
        n = parse_number(text)
        return n.e164 or None
    s = text.strip()
    if not s.startswith("+") or not (s[1:].isascii() and s[1:].isdigit()) or len(s) < 2:
        return None
    return s


def _msgspec_path(exc: msgspec.ValidationError) -> tuple[str, str]:
    text = str(exc)
    reason, sep, path = text.rpartition(" - at `")
    return (path.rstrip("`"), reason) if sep else ("$", text)


class _FileCompiler:
    """Compiles one decoded file; errors accumulate as `file: $.path: reason`."""

    def __init__(self, name: str, df: DialplanFile, pbx_names: set[str], prompts: Collection[str] | None,
                 seen_rules: dict[str, str]) -> None:
        self.name = name
        self.df = df
        self.pbx = pbx_names
        self.prompts = prompts
        self.seen = seen_rules
        self.errors: list[str] = []
        self.rules: list[BlockRule] = []

    def err(self, path: str, reason: str) -> None:
        self.errors.append(f"{self.name}: {path}: {reason}")

    def compile(self, owner: dict[tuple[bool, str], str]) -> list[NumberEntry]:
        df, name = self.df, self.name
        for t_i, t in enumerate(df.targets):
            if t not in self.pbx:
                self.err(f"$.targets[{t_i}]", f"unknown PBX {t!r} (not in config [[pbx]])")
        if df.numbers and not df.customer:
            self.err("$.customer", "a file with numbers must name its customer")
        scope, scope_value = (Scope.CUSTOMER, df.customer) if df.customer else (Scope.GLOBAL, "")
        source = f"dialplan:{name}"
        for section, allow in (("block", False), ("allow", True)):
            rules, errs = compile_rules(getattr(df, section), allow=allow, scope=scope, scope_value=scope_value,
                                        source=source, path=f"$.{section}", seen=self.seen)
            self.rules += rules
            for e in errs:
                self.err(e.path, e.reason)
        spam = None
        if df.spam is not None:
            spam, errs = compile_spam(df.spam, path="$.spam", id=f"{df.customer or Path(name).stem}/spam")
            for e in errs:
                self.err(e.path, e.reason)
        for p, reason in validate_policy(df.stir, "$.stir"):
            self.err(p, reason)
        media = MediaSection(
            menus=df.menus,
            captcha=df.captcha,
            voicemail=df.voicemail,
            screening=df.screening,
            early_media_fallback=df.early_media_fallback,
        )
        for p, reason in validate_media(media, targets=self.pbx, prompts=self.prompts):
            self.err(p, reason)
        entries = []
        for i, ns in enumerate(df.numbers):
            entry = self._number(i, ns, owner, spam, media)
            if entry is not None:
                entries.append(entry)
        return entries

    def _number(self, i: int, ns: NumberSpec, owner: dict[tuple[bool, str], str], spam, media: MediaSection) -> NumberEntry | None:
        df = self.df
        path = f"$.numbers[{i}]"
        if bool(ns.number) == bool(ns.prefix):
            self.err(path, "exactly one of 'number' or 'prefix' is required")
            return None
        exact = bool(ns.number)
        raw = ns.number or ns.prefix
        key = _normalise_key(raw, exact)
        field = "number" if exact else "prefix"
        if key is None:
            why = "not a valid E.164 number" if exact else "a prefix is '+' followed by digits"
            self.err(f"{path}.{field}", f"{raw!r} is {why}")
            return None
        targets = ns.targets or df.targets
        if not targets:
            self.err(f"{path}.targets", "no PBX targets (set 'targets' on the entry or the file)")
            return None
        for t_i, t in enumerate(ns.targets):
            if t not in self.pbx:
                self.err(f"{path}.targets[{t_i}]", f"unknown PBX {t!r} (not in config [[pbx]])")
        prev = owner.get((exact, key))
        if prev is not None:
            self.err(f"{path}.{field}", f"{key} is already defined in {prev}")
            return None
        owner[(exact, key)] = self.name
        for section, allow in (("block", False), ("allow", True)):
            specs = getattr(ns, section)
            if not specs:
                continue
            if not exact:
                self.err(f"{path}.{section}", "per-number rules need an exact 'number', not a prefix")
                continue
            rules, errs = compile_rules(specs, allow=allow, scope=Scope.NUMBER, scope_value=key,
                                        source=f"dialplan:{self.name}", path=f"{path}.{section}", seen=self.seen)
            self.rules += rules
            for e in errs:
                self.err(e.path, e.reason)
        menu = ns.menu or next(iter(media.menus), "")
        if ns.menu and ns.menu not in media.menus:
            self.err(f"{path}.menu", f"unknown menu {ns.menu!r}")
        box = ns.voicemail or next(iter(media.voicemail), "")
        if ns.voicemail and ns.voicemail not in media.voicemail:
            self.err(f"{path}.voicemail", f"unknown voicemail box {ns.voicemail!r}")
        if ns.action not in DEFAULT_ACTIONS:
            self.err(f"{path}.action", f"default action must be one of {', '.join(a.value for a in DEFAULT_ACTIONS)}")
        needs = {Action.MENU: menu, Action.CAPTCHA: "captcha" if media.captcha else "", Action.VOICEMAIL: box}
        if ns.action in needs and not needs[ns.action]:
            self.err(f"{path}.action", f"action {ns.action.value!r} needs a [{'menus' if ns.action is Action.MENU else ns.action.value}] section in this file")
        stir = ns.stir or df.stir
        if ns.stir is not None:
            for p, reason in validate_policy(ns.stir, f"{path}.stir"):
                self.err(p, reason)
        policy, errs = compile_number_policy(
            ns.policy or df.policy,
            spam=spam,
            number=key,
            customer=df.customer or None,
            captcha="captcha" if media.captcha else "",
            menu=menu,
            voicemail=box,
            path=f"{path}.policy" if ns.policy else "$.policy",
        )
        for e in errs:
            self.err(e.path, e.reason)
        return NumberEntry(
            key, exact, df.customer, tuple(targets), self.name, df.vetted,
            action=ns.action, policy=policy, stir=stir, media=media,
            screening=ns.screening or df.screening,
        )


def load_dialplans(
    directory: str | Path,
    pbx_names: set[str],
    now: float = 0.0,
    prompts: Collection[str] | None = None,
) -> tuple[Plan, dict[str, DialplanFile]]:
    """Parse, validate and index every *.toml in `directory` (sorted by name)."""
    d = Path(directory)
    errors: list[str] = []
    if not d.is_dir():
        raise DialplanError([f"{d}: $: not a directory"])
    files = sorted(d.glob("*.toml"))
    parsed: dict[str, DialplanFile] = {}
    entries: list[NumberEntry] = []
    rules: list[BlockRule] = []
    owner: dict[tuple[bool, str], str] = {}
    seen_rules: dict[str, str] = {}
    for f in files:
        name = str(f)
        try:
            data = tomllib.loads(f.read_text("utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(f"{name}: $: cannot read: {exc}")
            continue
        except tomllib.TOMLDecodeError as exc:
            errors.append(f"{name}: $: invalid TOML: {exc}")
            continue
        try:
            df = msgspec.convert(data, DialplanFile)
        except msgspec.ValidationError as exc:
            jp, reason = _msgspec_path(exc)
            errors.append(f"{name}: {jp}: {reason}")
            continue
        parsed[name] = df
        comp = _FileCompiler(name, df, pbx_names, prompts, seen_rules)
        entries += comp.compile(owner)
        rules += comp.rules
        errors += comp.errors
    if errors:
        raise DialplanError(errors)
    return Plan(entries, tuple(str(f) for f in files), now, rules), parsed
