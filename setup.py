"""Compiles the hot-path modules listed in edge/build.py with Cython (pure-Python mode: the source is
ordinary typed Python). Without a C compiler or the Python headers, or with SIP_EDGE_PURE=1, the install
is pure Python and the build says so; a module that fails to compile is left pure with a warning."""

from __future__ import annotations

import ast
import os
import shutil
import sysconfig
import warnings
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def compiled_modules() -> list[str]:
    """COMPILED_MODULES from edge/build.py, read without importing the package (its dependencies are not
    installed yet)."""
    tree = ast.parse((ROOT / "edge" / "build.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "COMPILED_MODULES" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise RuntimeError("edge/build.py has no COMPILED_MODULES")


def pure_reason() -> str | None:
    if os.environ.get("SIP_EDGE_PURE", "") == "1":
        return "SIP_EDGE_PURE=1 is set"
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc}); on Debian: apt-get install gcc"
    include = sysconfig.get_paths()["include"]
    if not os.path.isfile(os.path.join(include, "Python.h")):
        return f"no Python headers in {include}; on Debian: apt-get install python3-dev"
    try:
        import Cython  # noqa: F401
    except ImportError:
        return "Cython is not installed in the build environment"
    return None


def pure_warning(reason: str) -> None:
    message = f"sip-edge: building PURE PYTHON (hot path not compiled): {reason}"
    warnings.warn(message, stacklevel=1)
    print(f"WARNING: {message}", flush=True)


class OptionalBuildExt(build_ext):
    """A module that fails to compile stays pure Python; the build warns instead of failing. Modules
    compile in parallel (one per CPU)."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def build_extension(self, ext):  # noqa: ANN001
        try:
            super().build_extension(ext)
        except Exception as exc:  # CompileError, LinkError: the .py source is still installed
            pure_warning(f"{ext.name} did not compile ({exc})")


def drop_stale_extensions() -> None:
    """An editable install imports from the source tree: a pure build must not leave an earlier build's
    extension modules there to shadow the .py source."""
    for name in compiled_modules():
        for stale in (ROOT / name.replace(".", "/")).parent.glob(name.rpartition(".")[2] + ".*.so"):
            stale.unlink()


def ext_modules() -> list:
    reason = pure_reason()
    if reason is not None:
        pure_warning(reason)
        drop_stale_extensions()
        return []
    from Cython.Build import cythonize
    from setuptools import Extension

    exts = [Extension(name, [name.replace(".", "/") + ".py"]) for name in compiled_modules()]
    return cythonize(exts, compiler_directives={"language_level": "3"}, quiet=True)


setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
