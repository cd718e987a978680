"""TOML files as operators write them: decoded with every problem reported at `file:line:col: $.path: reason`.

tomllib gives values but no positions, and msgspec stops at the first error. Operators fixing a file
at 3 a.m. want every mistake in one run and the line to jump to, as a compiler reports. So:

- `SourceMap` is a small position index over the (already tomllib-valid) source: every key, table
  header and array element -> (line, column), addressed by the same JSON path the validators use;
- `decode` converts field by field, so an unknown key or a bad value is reported and the rest of the
  file is still decoded and checked.
"""

from __future__ import annotations

import difflib
import enum
import re
import tomllib
import types
import typing
from bisect import bisect_right
from collections.abc import Iterable
from typing import Any

import msgspec

Path = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_BARE = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_END = re.compile(r"\s*\(at end of document\)$")
_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]|\['([^']*)'\]|\[\.\.\.\]")


class Problem(msgspec.Struct, frozen=True):
    """One problem in one file, printed as compilers do so editors can jump to it."""

    file: str
    line: int
    col: int
    path: str  # JSON path from the file root, e.g. '$.numbers[3].number'
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {self.reason}"


def key_path(base: str, key: str | int) -> str:
    """`$.a` + 'b' -> `$.a.b`; non-identifier keys are quoted (`$.options["1"]`), ints index."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if _PLAIN_KEY.match(key) else f'{base}["{key}"]'


def parse_path(path: str) -> Path:
    """'$.numbers[3].number' -> ('numbers', 3, 'number'); stops at the first part it cannot read."""
    out: list[str | int] = []
    i = 1 if path.startswith("$") else 0
    while i < len(path):
        m = _PATH_PART.match(path, i)
        if not m:
            break
        if m.group(1) is not None:
            out.append(m.group(1))
        elif m.group(2) is not None:
            out.append(int(m.group(2)))
        elif m.group(3) is not None:
            out.append(m.group(3).replace('\\"', '"'))
        elif m.group(4) is not None:
            out.append(m.group(4))
        else:
            break  # msgspec's `[...]` (a dict value): the dict itself is as close as it gets
        i = m.end()
    return tuple(out)


class Reported:
    """Paths already reported: a later check at one of them, inside one or around one (an ancestor) would
    only repeat the same mistake in other words. O(path depth) per question."""

    def __init__(self, paths: Iterable[str] = ()) -> None:
        self._paths: set[Path] = set()
        self._ancestors: set[Path] = set()
        for p in paths:
            self.add(p)

    def add(self, path: str) -> None:
        p = parse_path(path)
        if p:  # the file itself ('$') covers nothing: every other problem still gets its line
            self._paths.add(p)
            self._ancestors.update(p[:n] for n in range(1, len(p)))

    def covers(self, path: str) -> bool:
        p = parse_path(path)
        if not p:
            return False
        return p in self._paths or p in self._ancestors or any(p[:n] in self._paths for n in range(1, len(p)))


class SourceMap:
    """JSON path -> (line, column) of the key, header or element that defines it (1-based).

    Built by a single linear pass over source that tomllib has already accepted, so it only has to
    follow the structure (headers, keys, strings, arrays, inline tables), not re-validate it.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.positions: dict[Path, tuple[int, int]] = {}
        self._lines = [0] + [m.end() for m in re.finditer("\n", text)]
        self._i = 0
        self._aot: dict[Path, int] = {}
        try:
            self._document()
        except (IndexError, ValueError, tomllib.TOMLDecodeError):
            pass  # positions found so far stay; anything later falls back to its parent

    def locate(self, path: str | Path) -> tuple[int, int]:
        """Position of the longest known prefix of `path`; (1, 1) for the file itself."""
        p = parse_path(path) if isinstance(path, str) else path
        for n in range(len(p), 0, -1):
            pos = self.positions.get(p[:n])
            if pos is not None:
                return pos
        return (1, 1)

    # -- scanning ---------------------------------------------------------------------------

    def _pos(self, i: int) -> tuple[int, int]:
        line = bisect_right(self._lines, i)
        return line, i - self._lines[line - 1] + 1

    def _peek(self, s: str) -> bool:
        return self.text.startswith(s, self._i)

    def _skip(self, newlines: bool) -> None:
        t, n = self.text, len(self.text)
        while self._i < n:
            c = t[self._i]
            if c in " \t\r" or (newlines and c == "\n"):
                self._i += 1
            elif c == "#":
                end = t.find("\n", self._i)
                self._i = n if end < 0 else end
            else:
                return

    def _document(self) -> None:
        current: Path = ()
        n = len(self.text)
        while True:
            self._skip(newlines=True)
            if self._i >= n:
                return
            start = self._i
            if self._peek("[["):
                self._i += 2
                keys = self._key()
                self._skip(False)
                self._i += 2  # ']]'
                table = self._resolve(keys[:-1]) + (keys[-1],)
                index = self._aot.get(table, 0)
                self._aot[table] = index + 1
                current = table + (index,)
                self._mark(current, start)
            elif self._peek("["):
                self._i += 1
                keys = self._key()
                self._skip(False)
                self._i += 1  # ']'
                current = self._resolve(keys)
                self._mark(current, start)
            else:
                self._keyval(current)

    def _resolve(self, keys: list[str]) -> Path:
        """A header's keys, each array of tables replaced by its latest element."""
        out: Path = ()
        for k in keys:
            out += (k,)
            if out in self._aot:
                out += (self._aot[out] - 1,)
        return out

    def _mark(self, path: Path, at: int) -> None:
        pos = self._pos(at)
        for n in range(1, len(path)):
            self.positions.setdefault(path[:n], pos)
        self.positions[path] = pos

    def _keyval(self, table: Path) -> None:
        start = self._i
        keys = self._key()
        self._skip(False)
        if not self._peek("="):
            raise ValueError("expected '='")
        self._i += 1
        self._skip(False)
        path = table + tuple(keys)
        self._mark(path, start)
        self._value(path)

    def _key(self) -> list[str]:
        keys: list[str] = []
        t = self.text
        while True:
            self._skip(False)
            c = t[self._i]
            if c in "\"'":
                a = self._i
                self._string()
                keys.append(tomllib.loads(f"k = {t[a:self._i]}")["k"])
            else:
                m = _BARE.match(t, self._i)
                if not m:
                    raise ValueError("expected a key")
                keys.append(m.group())
                self._i = m.end()
            self._skip(False)
            if self._peek("."):
                self._i += 1
                continue
            return keys

    def _string(self) -> None:
        t = self.text
        q = t[self._i]
        if t.startswith(q * 3, self._i):
            end = self._i + 3
            while True:
                if q == '"' and t[end] == "\\":
                    end += 2
                    continue
                if t.startswith(q * 3, end):
                    end += 3
                    while end < len(t) and t[end] == q:  # up to two quotes may end the content
                        end += 1
                    self._i = end
                    return
                end += 1
        end = self._i + 1
        while t[end] != q:
            end += 2 if (q == '"' and t[end] == "\\") else 1
        self._i = end + 1

    def _value(self, path: Path) -> None:
        t = self.text
        c = t[self._i]
        if c in "\"'":
            self._string()
        elif c == "[":
            self._i += 1
            index = 0
            while True:
                self._skip(True)
                if self._peek("]"):
                    self._i += 1
                    return
                self._mark(path + (index,), self._i)
                self._value(path + (index,))
                self._skip(True)
                if self._peek(","):
                    self._i += 1
                    index += 1
        elif c == "{":
            self._i += 1
            while True:
                self._skip(True)
                if self._peek("}"):
                    self._i += 1
                    return
                self._keyval(path)
                self._skip(True)
                if self._peek(","):
                    self._i += 1
        else:
            m = re.compile(r"[^,\]}\n#]*").match(t, self._i)
            self._i = m.end() if m else self._i + 1


class TomlFile(msgspec.Struct):
    """A TOML file's decoded data and the positions of its keys."""

    name: str
    data: dict[str, Any]
    sourcemap: SourceMap

    def problem(self, path: str, reason: str) -> Problem:
        line, col = self.sourcemap.locate(path)
        return Problem(self.name, line, col, path, reason)


def read_toml(name: str, text: str) -> TomlFile | Problem:
    """Parse TOML; a syntax error comes back as a Problem at tomllib's line and column."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_POS.search(msg)
        if m:
            line, col = int(m.group(1)), int(m.group(2))
        else:  # '(at end of document)': the position just past the last character
            lines = text.split("\n")
            line, col = len(lines), len(lines[-1]) + 1
        return Problem(name, line, col, "$", f"invalid TOML: {_TOML_POS.sub('', _TOML_END.sub('', msg))}")
    return TomlFile(name, data, SourceMap(text))


_UNLOCATED = re.compile(r"^(?P<file>.+?): (?P<path>\$\S*): (?P<reason>.*)$", re.S)


def locate_lines(lines: list[str]) -> list[str]:
    """`file: $.path: reason` lines from checks that do not know positions -> `file:line:col: $.path: reason`.

    Each file is read and indexed once; a line naming no readable TOML file is left as it is.
    """
    maps: dict[str, SourceMap | None] = {}
    out = []
    for line in lines:
        m = _UNLOCATED.match(line)
        if m is None:
            out.append(line)
            continue
        name = m.group("file")
        if name not in maps:
            try:
                with open(name, encoding="utf-8") as f:
                    maps[name] = SourceMap(f.read())
            except (OSError, UnicodeDecodeError):
                maps[name] = None
        sm = maps[name]
        if sm is None:
            out.append(line)
            continue
        ln, col = sm.locate(m.group("path"))
        out.append(f"{name}:{ln}:{col}: {m.group('path')}: {m.group('reason')}")
    return out


# ------------------------------------------------------------------------------------------------
# Decoding with every error

_MISSING: Any = object()


def _type_name(value: object) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def _leaf_reason(exc: msgspec.ValidationError, data: object, typ: Any) -> str:
    """msgspec's reason, with the allowed values spelled out for enums and literals."""
    choices: list[str] = []
    if isinstance(typ, type) and issubclass(typ, enum.Enum):
        choices = [str(m.value) for m in typ]
    elif typing.get_origin(typ) is typing.Literal:
        choices = [str(v) for v in typing.get_args(typ)]
    if choices and isinstance(data, str | int) and not isinstance(data, bool):
        return f"{data!r} is not one of {', '.join(choices)}"
    return str(exc).rpartition(" - at `")[0] or str(exc)


def decode(data: object, typ: Any, path: str = "$") -> tuple[Any, list[tuple[str, str]]]:
    """Convert `data` into `typ` like msgspec.convert, collecting every (path, reason) instead of the first.

    A struct with a bad field is still built (the field keeps its default, unknown keys are dropped)
    so the rest of the file gets checked; callers should not repeat semantic errors at or around a
    path reported here (see `Reported`). A list or table with an element that could not be built at
    all is left out whole, so later paths never point at the wrong element.
    """
    errors: list[tuple[str, str]] = []
    value = _decode(data, typ, path, errors)
    return (None if value is _MISSING else value), errors


def _decode(data: object, typ: Any, path: str, errors: list[tuple[str, str]]) -> Any:
    origin = typing.get_origin(typ)
    if isinstance(typ, type) and issubclass(typ, msgspec.Struct):
        if not isinstance(data, dict):
            errors.append((path, f"expected a table, got {_type_name(data)}"))
            return _MISSING
        return _struct(data, typ, path, errors)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if len(args) == 1:
            return _decode(data, args[0], path, errors)
    elif origin is list and isinstance(data, list):
        (item,) = typing.get_args(typ)
        before = len(errors)
        items = [_decode(v, item, key_path(path, i), errors) for i, v in enumerate(data)]
        return _MISSING if any(v is _MISSING for v in items) and len(errors) > before else items
    elif origin is dict and isinstance(data, dict):
        k_t, v_t = typing.get_args(typ)
        out = {}
        for k, v in data.items():
            sub = _decode(v, v_t, key_path(path, k), errors)
            if sub is _MISSING:
                return _MISSING
            out[k] = sub
        return out
    try:
        return msgspec.convert(data, typ)
    except msgspec.ValidationError as exc:
        errors.append((path, _leaf_reason(exc, data, typ)))
        return _MISSING


def _struct(data: dict, typ: type[msgspec.Struct], path: str, errors: list[tuple[str, str]]) -> Any:
    fields = {f.encode_name: f for f in msgspec.structs.fields(typ)}
    forbid = typ.__struct_config__.forbid_unknown_fields
    kwargs: dict[str, Any] = {}
    failed = False
    for key, raw in data.items():
        f = fields.get(key)
        if f is None:
            if forbid:
                close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (expected one of: {', '.join(fields)})"
                errors.append((key_path(path, key), f"unknown key {key!r}{hint}"))
            continue
        value = _decode(raw, f.type, key_path(path, key), errors)
        if value is _MISSING:
            failed = True
        else:
            kwargs[f.name] = value
    for f in fields.values():
        if f.required and f.name not in kwargs and f.encode_name not in data:
            errors.append((path, f"missing required key {f.encode_name!r}"))
            failed = True
    if failed and any(f.required and f.name not in kwargs for f in fields.values()):
        return _MISSING
    try:
        return typ(**kwargs)
    except (TypeError, ValueError, msgspec.ValidationError) as exc:
        errors.append((path, str(exc)))
        return _MISSING
