"""The sans-IO rule (DESIGN §3.1): core packages never import I/O libraries or read the clock.

Only edge/io/, edge/daemon/ and edge/store/ (and operator CLI modules) touch sockets, files, clocks,
sqlite or redis; everything else takes `now` as an argument. Checked on the AST, so a lazy import
inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "edge"
CORE_PACKAGES = ("sip", "policy", "dialplan", "call", "stir", "media", "lifecycle", "messaging")

#: Modules inside core packages that are adapters by design, not core.
EXEMPT = {
    "stir/commands.py": "operator CLI: talks to the admin API and reads files",
    "lifecycle/commands.py": "operator CLI: talks to the admin API",
    "call/commands.py": "operator CLI (explain): reads config files, the clock and the admin API",
}

FORBIDDEN_MODULES = frozenset({"asyncio", "socket", "sqlite3", "redis", "aiohttp", "uvloop", "selectors"})
CLOCK_FUNCTIONS = frozenset({"time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "perf_counter_ns"})


def core_modules() -> list[Path]:
    out = []
    for pkg in CORE_PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            if p.relative_to(ROOT).as_posix() not in EXEMPT:
                out.append(p)
    return out


def violations(source: str) -> list[str]:
    """Forbidden imports and clock reads in one module's source, as 'line: what' strings."""
    found: list[str] = []
    time_aliases: set[str] = set()  # names bound to the time module
    clock_names: set[str] = set()  # names bound to time.time & co by `from time import ...`
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                if top in FORBIDDEN_MODULES:
                    found.append(f"{node.lineno}: import {a.name}")
                if a.name == "time":
                    time_aliases.add(a.asname or "time")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top = node.module.split(".")[0]
            if top in FORBIDDEN_MODULES:
                found.append(f"{node.lineno}: from {node.module} import ...")
            if node.module == "time":
                for a in node.names:
                    if a.name in CLOCK_FUNCTIONS:
                        clock_names.add(a.asname or a.name)
                        found.append(f"{node.lineno}: from time import {a.name}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in CLOCK_FUNCTIONS and isinstance(f.value, ast.Name) and f.value.id in time_aliases:
            found.append(f"{node.lineno}: {f.value.id}.{f.attr}()")
        elif isinstance(f, ast.Name) and f.id in clock_names:
            found.append(f"{node.lineno}: {f.id}()")
    return found


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_layering_core_module_is_sans_io(path: Path) -> None:
    assert violations(path.read_text()) == []


def test_layering_every_core_package_is_checked() -> None:
    checked = {p.relative_to(ROOT).parts[0] for p in core_modules()}
    assert checked == set(CORE_PACKAGES)


def test_layering_exemptions_exist() -> None:
    for rel in EXEMPT:
        assert (ROOT / rel).is_file(), rel


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import asyncio\n", ["1: import asyncio"]),
        ("import redis.asyncio as r\n", ["1: import redis.asyncio"]),
        ("from aiohttp import web\n", ["1: from aiohttp import ..."]),
        ("def f():\n    import socket\n", ["2: import socket"]),
        ("import time\nx = time.monotonic()\n", ["2: time.monotonic()"]),
        ("import time as t\nx = t.time()\n", ["2: t.time()"]),
        ("from time import monotonic as m\nx = m()\n", ["1: from time import monotonic", "2: m()"]),
        ("import time\nx = time.strftime('%Y')\n", []),
        ("from edge.sip import message\nimport msgspec\n", []),
        ("from .asyncio import x\n", []),
    ],
    ids=["asyncio", "redis_submodule", "aiohttp_from", "lazy_socket", "time_monotonic", "time_alias",
         "from_time_import", "time_formatting_allowed", "clean", "relative_not_stdlib"],
)
def test_layering_detector(source: str, expected: list[str]) -> None:
    assert violations(source) == expected
