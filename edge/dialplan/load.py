"""Load a directory of dialplan files into a Plan, or report every error as `file: $.path: reason`."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec

from edge.dialplan.plan import NumberEntry, Plan
from edge.dialplan.schema import DialplanFile
from edge.numbers import parse_number


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
    if not s.startswith("+") or not s[1:].isdigit() or len(s) < 2:
        return None
    return s


def _msgspec_path(exc: msgspec.ValidationError) -> tuple[str, str]:
    text = str(exc)
    reason, sep, path = text.rpartition(" - at `")
    return (path.rstrip("`"), reason) if sep else ("$", text)


def load_dialplans(directory: str | Path, pbx_names: set[str], now: float = 0.0) -> tuple[Plan, dict[str, DialplanFile]]:
    """Parse, validate and index every *.toml in `directory` (sorted by name)."""
    d = Path(directory)
    errors: list[str] = []
    if not d.is_dir():
        raise DialplanError([f"{d}: $: not a directory"])
    files = sorted(d.glob("*.toml"))
    parsed: dict[str, DialplanFile] = {}
    entries: list[NumberEntry] = []
    owner: dict[tuple[bool, str], str] = {}
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
        for t_i, t in enumerate(df.targets):
            if t not in pbx_names:
                errors.append(f"{name}: $.targets[{t_i}]: unknown PBX {t!r} (not in config [[pbx]])")
        if df.numbers and not df.customer:
            errors.append(f"{name}: $.customer: a file with numbers must name its customer")
        for i, ns in enumerate(df.numbers):
            path = f"$.numbers[{i}]"
            if bool(ns.number) == bool(ns.prefix):
                errors.append(f"{name}: {path}: exactly one of 'number' or 'prefix' is required")
                continue
            exact = bool(ns.number)
            raw = ns.number or ns.prefix
            key = _normalise_key(raw, exact)
            field = "number" if exact else "prefix"
            if key is None:
                why = "not a valid E.164 number" if exact else "a prefix is '+' followed by digits"
                errors.append(f"{name}: {path}.{field}: {raw!r} is {why}")
                continue
            targets = ns.targets or df.targets
            if not targets:
                errors.append(f"{name}: {path}.targets: no PBX targets (set 'targets' on the entry or the file)")
                continue
            for t_i, t in enumerate(ns.targets):
                if t not in pbx_names:
                    errors.append(f"{name}: {path}.targets[{t_i}]: unknown PBX {t!r} (not in config [[pbx]])")
            prev = owner.get((exact, key))
            if prev is not None:
                errors.append(f"{name}: {path}.{field}: {key} is already defined in {prev}")
                continue
            owner[(exact, key)] = name
            entries.append(NumberEntry(key, exact, df.customer, tuple(targets), name, df.vetted))
    if errors:
        raise DialplanError(errors)
    return Plan(entries, tuple(str(f) for f in files), now), parsed
