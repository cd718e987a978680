"""Which build of the hot path runs: Cython-compiled extension modules or the pure-Python source.

setup.py compiles the modules in `COMPILED_MODULES` (plain typed Python, compiled by Cython) when a C
compiler and the Python headers are present and `SIP_EDGE_PURE=1` is not set; otherwise the install is
pure Python. The `.py` source always ships next to the extension, so `SIP_EDGE_PURE=1` at run time
makes imports skip the extensions and run the source: the tests run the parser/core suite both ways.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

import msgspec

#: Compiled by setup.py (read there with `ast` and by the Makefile with sed: keep it a literal tuple, one
#: name a line). edge/call/proxy.py compiles unchanged too, but measured no faster untyped (benchmarks/README.md).
COMPILED_MODULES = (
    "edge.sip.errors",
    "edge.sip.message",
    "edge.sip.framing",
    "edge.sip.uri",
    "edge.sip.timers",
    "edge.sip.transaction",
    "edge.sip.dialog",
    "edge.sip.response",
    "edge.sip.affinity",
)

#: The switch, read at build time by setup.py and at import time by `edge/__init__.py`.
PURE_ENV = "SIP_EDGE_PURE"


class BuildInfo(msgspec.Struct, frozen=True):
    """What `sip-edge check`, the startup log and `edge_build_info` report."""

    compiled: bool  # every module in COMPILED_MODULES runs as a compiled extension
    compiled_modules: tuple[str, ...]
    pure_modules: tuple[str, ...]  # modules that run from .py source (none when compiled)
    forced_pure: bool  # SIP_EDGE_PURE=1 at run time

    @property
    def label(self) -> str:
        if self.compiled:
            return "compiled"
        return "pure-python (SIP_EDGE_PURE=1)" if self.forced_pure else "pure-python"

    def describe(self) -> str:
        """The `sip-edge check` line."""
        total = len(self.compiled_modules) + len(self.pure_modules)
        if self.compiled:
            return f"build: compiled ({total} hot-path modules, Cython)"
        if self.forced_pure:
            return "build: pure-python (SIP_EDGE_PURE=1)"
        return f"build: pure-python ({len(self.pure_modules)} of {total} hot-path modules not compiled: no C compiler at install?)"


def pure_requested() -> bool:
    return os.environ.get(PURE_ENV, "") == "1"


def is_compiled(module: ModuleType) -> bool:
    """A module loaded from an extension (.so), not from its .py source."""
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


def build_info() -> BuildInfo:
    """Imports the hot-path modules (they are imported by the daemon anyway) and says how each loaded."""
    compiled: list[str] = []
    pure: list[str] = []
    for name in COMPILED_MODULES:
        __import__(name)
        (compiled if is_compiled(sys.modules[name]) else pure).append(name)
    return BuildInfo(not pure, tuple(compiled), tuple(pure), pure_requested())


class _SourceFirst:
    """Meta-path finder that loads the hot-path modules from their .py source, never the extension."""

    @staticmethod
    def find_spec(name: str, path=None, target=None):  # noqa: ANN001,ANN205 - the importlib protocol
        if name not in COMPILED_MODULES or not path:
            return None
        leaf = name.rpartition(".")[2]
        for entry in path:
            source = os.path.join(entry, leaf + ".py")
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(
                    name, source, loader=importlib.machinery.SourceFileLoader(name, source)
                )
        return None


def use_source() -> None:
    """Make later imports of COMPILED_MODULES run the pure-Python source (idempotent)."""
    if not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst())
