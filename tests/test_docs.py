"""docs/DESIGN.md names code as `file:function` steps; each must still exist, so the document cannot
silently drift from the code it describes."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "docs" / "DESIGN.md"
REF = re.compile(r"`(edge/[\w/]+\.py):([\w.]+)`")


def test_design_references_exist() -> None:
    refs = REF.findall(DESIGN.read_text())
    assert len(refs) >= 12
    missing = []
    for path, dotted in refs:
        source = (ROOT / path).read_text() if (ROOT / path).is_file() else ""
        for name in dotted.split("."):
            if not re.search(rf"^\s*(?:async\s+def|def|class)\s+{name}\b|^{name}\s*[:=]", source, re.MULTILINE):
                missing.append(f"{path}:{dotted} ({name})")
                break
    assert missing == []


def test_design_invite_path_at_most_twelve_steps() -> None:
    text = DESIGN.read_text()
    section = text.split("## The path of an INVITE", 1)[1].split("\n## ", 1)[0]
    steps = re.findall(r"^(\d+)\. ", section, re.MULTILINE)
    assert steps == [str(i) for i in range(1, len(steps) + 1)] and 0 < len(steps) <= 12


def test_docs_name_no_machine_paths() -> None:
    for p in [DESIGN, ROOT / "benchmarks" / "README.md", ROOT / "benchmarks" / "run.py"]:
        text = p.read_text()
        assert not re.search(r"(?<![\w.])/(?:work|tmp|root|home)/", text), p
