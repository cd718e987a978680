"""The sans-IO rule (docs/DESIGN.md, "Sans-IO core"): core packages never reach an I/O library or the clock.

Only edge/io/, edge/daemon/, edge/store/ and edge/cli/ touch sockets, files, clocks, sqlite or redis;
everything else takes `now` as an argument. Checked on the AST, so a lazy import inside a function
counts too, and transitively: a core module may not reach a forbidden module or a clock read through
any chain of edge imports (core -> edge.config -> edge.io.hep -> socket fails). The edge import
graph has no cycle.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "edge"
CORE_PACKAGES = ("sip", "policy", "dialplan", "call", "stir", "media", "lifecycle", "messaging")


FORBIDDEN_MODULES = frozenset({"asyncio", "socket", "sqlite3", "redis", "aiohttp", "uvloop", "selectors", "ssl"})
CLOCK_FUNCTIONS = frozenset({"time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "perf_counter_ns"})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def core_modules() -> list[Path]:
    out = []
    for pkg in CORE_PACKAGES:
        out.extend(sorted((ROOT / pkg).rglob("*.py")))
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes under `if TYPE_CHECKING:` (never executed, so no edge of the import graph)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            for child in node.body:
                skip.update(id(n) for n in ast.walk(child))
    return skip


@cache
def edge_imports(name: str) -> frozenset[str]:
    """The edge modules `name` imports, lazy ones included (and their parent packages: importing
    edge.io.hep runs edge/io/__init__.py)."""
    tree = ast.parse(MODULES[name].read_text())
    skip = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if MODULES[name].name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            parts = t.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                # A module's own enclosing packages are already initialised when it runs.
                if prefix in MODULES and prefix != name and not name.startswith(prefix + "."):
                    found.add(prefix)
    return frozenset(found)


#: Edge modules a core module may not import (at any depth): adapters, the CLI, and the config loader
#: (the core gets its slice of the settings handed in).
NOT_CORE = ("edge.io", "edge.daemon", "edge.store", "edge.cli", "edge.config")


def transitive_violations(name: str) -> list[str]:
    """Forbidden imports and clock reads anywhere in the chain of edge modules `name` imports, and
    imports of a non-core edge module, each as 'chain: line: what' or 'chain: imports module'."""
    seen = {name: [name]}
    queue = [name]
    out: list[str] = []
    while queue:
        current = queue.pop(0)
        for v in violations(MODULES[current].read_text()):
            out.append(f"{' -> '.join(seen[current])}: {v}")
        for dep in sorted(edge_imports(current)):
            if dep not in seen:
                seen[dep] = seen[current] + [dep]
                if name.split(".")[1] in CORE_PACKAGES and any(dep == m or dep.startswith(m + ".") for m in NOT_CORE):
                    out.append(f"{' -> '.join(seen[dep])}: imports a non-core module")
                    continue
                queue.append(dep)
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


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_layering_core_module_reaches_no_io_through_imports(path: Path) -> None:
    assert transitive_violations(module_name(path)) == []


def test_layering_no_import_cycle() -> None:
    """Imports among edge modules, lazy ones included, form no cycle: a lazy import that closes a
    cycle only hides it (edge.config once imported edge.io.tls, which imports edge.config)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    cycles: list[str] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for dep in sorted(edge_imports(m)):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[m] = 2

    for m in MODULES:
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_layering_transitive_detector_follows_chains() -> None:
    """The chain the issue found: edge.config imported edge.io.hep (asyncio, socket); this check would
    have failed for every core module importing edge.config."""
    assert any(v.startswith("edge.io.hep: ") and "import socket" in v for v in transitive_violations("edge.io.hep"))
    chain = transitive_violations("edge.daemon.sdnotify")
    assert chain and all(v.startswith("edge.daemon.sdnotify") for v in chain[:1])


def test_layering_every_core_package_is_checked() -> None:
    checked = {p.relative_to(ROOT).parts[0] for p in core_modules()}
    assert checked == set(CORE_PACKAGES)


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


def test_layering_no_private_proxy_access_outside_call() -> None:
    """The proxy's public seam (edge/call/ua.py and its public methods) is all that adapters, the
    daemon, benchmarks and tests use: no `proxy._x` outside edge/call."""
    import re

    pattern = re.compile(r"\bproxy\._[A-Za-z]")
    repo = ROOT.parent
    offenders = []
    for folder in ("edge", "tests", "benchmarks"):
        for p in sorted((repo / folder).rglob("*.py")):
            if p.is_relative_to(ROOT / "call") or p == Path(__file__).resolve():
                continue
            for n, line in enumerate(p.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{p.relative_to(repo)}:{n}: {line.strip()}")
    assert offenders == []
