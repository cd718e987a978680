"""The build under test is the one asked for, and the compiled and pure-Python hot path agree.

`make test` runs the suite on the compiled build, then the parser/core tests again with SIP_EDGE_PURE=1
(edge/build.py). The first test fails if the compiled run is not compiled while a C compiler and the Python
headers are present, or if the pure run still loads an extension. The property tests feed the same
generated messages to the compiled modules and to their .py source loaded beside them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edge
from edge.build import COMPILED_MODULES, build_info, is_compiled, pure_requested
from edge.sip import framing, message
from edge.sip.errors import FramingError, SipParseError
from tests.sip.test_fuzz import SEEDS, mutated_messages

SOURCE = Path(edge.__file__).resolve().parent


def compiler_present() -> bool:
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None and os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h"))


def test_build_is_the_one_asked_for() -> None:
    info = build_info()
    if pure_requested():
        assert not info.compiled and info.compiled_modules == () and info.label == "pure-python (SIP_EDGE_PURE=1)"
        for name in COMPILED_MODULES:
            assert sys.modules[name].__file__.endswith(".py"), name
        assert type(message.parse) is types.FunctionType  # interpreted bytecode, not a compiled function
        return
    if not compiler_present():  # `make` installs one, so only a hand-made install gets here: pure, and it says so
        assert not info.compiled and info.label == "pure-python" and set(info.pure_modules) == set(COMPILED_MODULES)
        assert "not compiled" in info.describe()
        return
    assert info.compiled, f"a compiler is present but these modules run from source: {info.pure_modules}"
    assert info.label == "compiled" and info.pure_modules == ()
    assert type(message.parse) is not types.FunctionType
    for name in COMPILED_MODULES:
        # An editable install keeps the extensions in the tree: an edited source needs a rebuild (make does it).
        ext = Path(sys.modules[name].__file__)
        source = SOURCE.parent / (name.replace(".", "/") + ".py")
        assert ext.stat().st_mtime >= source.stat().st_mtime, f"{ext.name} is older than {source.name}: rebuild"


def _source_module(name: str) -> types.ModuleType:
    """The .py source of a compiled module, loaded under another name beside the extension."""
    path = SOURCE.parent / (name.replace(".", "/") + ".py")
    spec = importlib.util.spec_from_file_location(f"_pure_{name.replace('.', '_')}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


#: Compiled-vs-source comparisons: the pure pass of `make test` deselects them (`-m "not compiled_build"`);
#: an install without a compiler skips them.
_SKIP_PURE = pytest.mark.skipif(not is_compiled(message), reason="this install is pure Python: nothing to compare")


def needs_compiled(test):
    return pytest.mark.compiled_build(_SKIP_PURE(test))
PURE_MESSAGE = _source_module("edge.sip.message")
PURE_FRAMING = _source_module("edge.sip.framing")
PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _attempt(fn):  # noqa: ANN001,ANN202
    try:
        return ("ok", fn())
    except SipParseError as exc:
        return ("error", str(exc))


def _outcome(mod: types.ModuleType, data: bytes) -> list:
    """Everything the proxy reads from or does to a message, as plain values (or the 400 reason)."""
    parsed = _attempt(lambda: mod.parse(data))
    if parsed[0] == "error":
        return [parsed]
    m = parsed[1]
    out: list = [(m.method, m.uri, m.status, m.reason, m.body, [list(h) for h in m.headers], m.to_bytes())]
    out.append(_attempt(lambda: [(v.transport, v.host, v.port, v.params, v.branch, v.response_address()) for v in m.vias]))
    for field in ("call_id", "cseq_num", "cseq_method", "from_tag", "to_tag", "max_forwards", "routes", "branch"):
        out.append(_attempt(lambda: getattr(m, field)))
    for h in m.headers:
        value = h[2]
        out.append((mod.split_top(value, ","), mod.split_list(value), mod.check_name_addr(value), mod.uri_of(value),
                    mod.param(value, "tag"), mod.addr_start(value)))
    out.append(_attempt(m.bytes_without_top_via))
    edited = m.copy()
    edited.prepend("via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsame")
    out.append(edited.pop_first_value("route"))
    edited.set("max-forwards", "69")
    edited.set_uri("sip:pbx@10.0.0.1:5070") if edited.is_request else None
    out.append(edited.to_bytes())
    out.append(_attempt(lambda: mod.parse(edited.to_bytes()).branch))
    return out


@needs_compiled
@PROPERTY
@given(st.one_of(mutated_messages(), st.binary(max_size=600)))
def test_compiled_parser_agrees_with_source(data: bytes) -> None:
    assert _outcome(message, data) == _outcome(PURE_MESSAGE, data)


@needs_compiled
def test_compiled_parser_agrees_on_every_seed_and_vector() -> None:
    for data in SEEDS:
        assert _outcome(message, data) == _outcome(PURE_MESSAGE, data)


def _frames(mod: types.ModuleType, chunks: list[bytes]) -> list:
    framer = mod.StreamFramer(max_message=4096)
    out: list = []
    for chunk in chunks:
        try:
            out.append(framer.feed(chunk))
        except FramingError as exc:
            out.append(("error", str(exc)))
            break
    out.append(framer.take_pings())
    return out


@needs_compiled
@PROPERTY
@given(st.lists(st.sampled_from(SEEDS[:6]), min_size=1, max_size=4), st.integers(1, 700), st.binary(max_size=40))
def test_compiled_framer_agrees_with_source(seeds: list[bytes], chunk: int, junk: bytes) -> None:
    stream = b"\r\n\r\n".join(seeds) + junk
    chunks = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]
    assert _frames(framing, chunks) == _frames(PURE_FRAMING, chunks)


def test_check_prints_the_build(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from edge.cli.main import main

    monkeypatch.chdir(SOURCE.parent)
    assert main(["check", "--config", "config/edge.toml", "dialplans"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == build_info().describe() and lines[-2].startswith("build: ")
    assert ("build: compiled" in lines[-2]) == is_compiled(message)


def test_build_info_metric() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from edge.daemon.metrics import BuildCollector

    registry = CollectorRegistry()
    registry.register(BuildCollector(build_info()))
    text = generate_latest(registry).decode()
    expected = "true" if is_compiled(message) else "false"
    assert f'compiled="{expected}"' in text and "edge_build_info{" in text
