"""Load a directory of dialplan files into a Plan, or report every problem as `file:line:col: $.path: reason`.

Every file is checked to the end: a typo'd key or a bad value is reported and the rest of the file
is still decoded and validated, so one run shows every mistake (edge.tomlfile).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from edge.dialplan.plan import NumberEntry, Plan
from edge.dialplan.schema import DialplanFile, NumberSpec
from edge.media.schema import MediaSection, validate_media
from edge.numbers import parse_number
from edge.policy.facts import Action
from edge.policy.rules import BlockRule, Scope
from edge.policy.schema import compile_number_policy, compile_rules, compile_spam, number_problem, prefix_problem
from edge.stir.schema import validate_policy
from edge.tomlfile import Problem, Reported, TomlFile, decode, read_toml

DEFAULT_ACTIONS = (Action.ALLOW, Action.MENU, Action.CAPTCHA, Action.VOICEMAIL)


class DialplanError(Exception):
    """Every problem found, as Problems and as the printed lines (`errors`)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        self.errors = [str(p) for p in problems]
        super().__init__("\n".join(self.errors))


def _normalise_key(text: str, exact: bool) -> str:
    """Canonical key: E.164 for numbers, '+' and digits for prefixes (separators dropped)."""
    return parse_number(text).e164 if exact else text.translate(str.maketrans("", "", " -.()"))


class _FileCompiler:
    """Compiles one decoded file; problems accumulate with their line and column.

    `skip` holds paths the decoder already reported: a semantic check at, inside or around one of
    them would only repeat the same mistake in other words.
    """

    def __init__(self, tf: TomlFile, df: DialplanFile, pbx_names: set[str], prompts: Collection[str] | None,
                 seen_rules: dict[str, str], skip: Reported) -> None:
        self.tf = tf
        self.name = tf.name
        self.df = df
        self.pbx = pbx_names
        self.prompts = prompts
        self.seen = seen_rules
        self.skip = skip
        self.errors: list[Problem] = []
        self._seen: set[Problem] = set()
        self.rules: list[BlockRule] = []

    def err(self, path: str, reason: str) -> None:
        problem = self.tf.problem(path, reason)
        if not self.skip.covers(path) and problem not in self._seen:  # file-wide sections recur per number
            self._seen.add(problem)
            self.errors.append(problem)

    def where(self, path: str) -> str:
        """'file:line:col $.path', how a duplicate names the first definition."""
        p = self.tf.problem(path, "")
        return f"{p.file}:{p.line}:{p.col} {path}"

    def compile(self, owner: dict[tuple[bool, str], str]) -> list[NumberEntry]:
        df, name = self.df, self.name
        for t_i, t in enumerate(df.targets):
            if t not in self.pbx:
                self.err(f"$.targets[{t_i}]", f"unknown PBX {t!r} (not in config [[pbx]])")
        if df.fax_target and df.fax_target not in self.pbx:
            self.err("$.fax_target", f"unknown PBX {df.fax_target!r} (not in config [[pbx]])")
        if df.numbers and not df.customer:
            self.err("$.customer", "a file with numbers must name its customer")
        scope, scope_value = (Scope.CUSTOMER, df.customer) if df.customer else (Scope.GLOBAL, "")
        source = f"dialplan:{name}"
        for section, allow in (("block", False), ("allow", True)):
            rules, errs = compile_rules(getattr(df, section), allow=allow, scope=scope, scope_value=scope_value,
                                        source=source, path=f"$.{section}", seen=self.seen, where=self.where)
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
        field = "number" if exact else "prefix"
        # Every check below runs even when an earlier one failed, so one run shows every mistake.
        problem = number_problem(raw) if exact else prefix_problem(raw)
        if problem:
            self.err(f"{path}.{field}", problem)
        key = "" if problem else _normalise_key(raw, exact)
        targets = ns.targets or df.targets
        if not targets:
            self.err(f"{path}.targets", "no PBX targets (set 'targets' on the entry or the file)")
        for t_i, t in enumerate(ns.targets):
            if t not in self.pbx:
                self.err(f"{path}.targets[{t_i}]", f"unknown PBX {t!r} (not in config [[pbx]])")
        if ns.fax_target and ns.fax_target not in self.pbx:
            self.err(f"{path}.fax_target", f"unknown PBX {ns.fax_target!r} (not in config [[pbx]])")
        prev = owner.get((exact, key)) if key else None
        if prev is not None:
            self.err(f"{path}.{field}", f"{key} is already defined at {prev}")
        elif key:
            owner[(exact, key)] = self.where(f"{path}.{field}")
        ok = bool(key) and bool(targets) and prev is None
        for section, allow in (("block", False), ("allow", True)):
            specs = getattr(ns, section)
            if not specs:
                continue
            if not exact:
                self.err(f"{path}.{section}", "per-number rules need an exact 'number', not a prefix")
                continue
            if not key:
                continue
            rules, errs = compile_rules(specs, allow=allow, scope=Scope.NUMBER, scope_value=key,
                                        source=f"dialplan:{self.name}", path=f"{path}.{section}", seen=self.seen,
                                        where=self.where)
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
        loc = self.tf.problem(f"{path}.{field}", "")
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
        if not ok:
            return None
        return NumberEntry(
            key, exact, df.customer, tuple(targets), self.name, df.vetted,
            action=ns.action, policy=policy, stir=stir, media=media,
            screening=ns.screening or df.screening,
            fax_target=ns.fax_target or df.fax_target,
            path=f"{path}.{field}", line=loc.line, col=loc.col,
        )


def load_dialplans(
    directory: str | Path,
    pbx_names: set[str],
    now: float = 0.0,
    prompts: Collection[str] | None = None,
) -> tuple[Plan, dict[str, DialplanFile]]:
    """Parse, validate and index every *.toml in `directory` (sorted by name); DialplanError lists every problem."""
    d = Path(directory)
    if not d.is_dir():
        raise DialplanError([Problem(str(d), 1, 1, "$", "not a directory")])
    files = sorted(d.glob("*.toml"))
    problems: list[Problem] = []
    parsed: dict[str, DialplanFile] = {}
    entries: list[NumberEntry] = []
    rules: list[BlockRule] = []
    owner: dict[tuple[bool, str], str] = {}
    seen_rules: dict[str, str] = {}
    for f in files:
        name = str(f)
        try:
            text = f.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(name, 1, 1, "$", f"cannot read: {exc}"))
            continue
        tf = read_toml(name, text)
        if isinstance(tf, Problem):
            problems.append(tf)
            continue
        df, decode_errors = decode(tf.data, DialplanFile)
        problems += [tf.problem(p, reason) for p, reason in decode_errors]
        if df is None:
            continue
        parsed[name] = df
        comp = _FileCompiler(tf, df, pbx_names, prompts, seen_rules, Reported(p for p, _ in decode_errors))
        entries += comp.compile(owner)
        rules += comp.rules
        problems += comp.errors
    if problems:
        order = {name: i for i, name in enumerate(str(f) for f in files)}
        raise DialplanError(sorted(problems, key=lambda p: (order.get(p.file, -1), p.line, p.col)))
    return Plan(entries, tuple(str(f) for f in files), now, rules), parsed
