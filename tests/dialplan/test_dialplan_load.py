"""edge.dialplan.load: every problem of every file in one run, at file:line:col, numbers checked with phonenumbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.dialplan.load import DialplanError, load_dialplans
from edge.policy.facts import Action

ROOT = Path(__file__).resolve().parents[2]
PBX = {"pbx-a", "pbx-b"}


def write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text)
    return p


def errors(d: Path) -> list[str]:
    with pytest.raises(DialplanError) as exc:
        load_dialplans(d, PBX)
    return exc.value.errors


def test_three_independent_mistakes_all_reported_with_lines(tmp_path: Path) -> None:
    write(tmp_path, "acme.toml", """\
customer = "acme"
targets = ["pbx-a"]

[[numbers]]
number = "+12025550100"
actoin = "menu"

[[numbers]]
number = "+1555"

[[numbers]]
number = "+12025550101"
targets = ["pbx-z"]
""")
    assert errors(tmp_path) == [
        f"{tmp_path}/acme.toml:6:1: $.numbers[0].actoin: unknown key 'actoin' (did you mean 'action'?)",
        f"{tmp_path}/acme.toml:9:1: $.numbers[1].number: '+1555' is not a valid E.164 number (too short for country code +1)",
        f"{tmp_path}/acme.toml:13:12: $.numbers[2].targets[0]: unknown PBX 'pbx-z' (not in config [[pbx]])",
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('number = "12345"', "'12345' is not a valid E.164 number (write '+', the country code and the number, e.g. '+12025550100')"),
        ('number = "+1555"', "'+1555' is not a valid E.164 number (too short for country code +1)"),
        ('number = "+120255501001234"', "'+120255501001234' is not a valid E.164 number (too long for country code +1)"),
        ('number = "+35455555555"', "'+35455555555' is not a valid E.164 number (wrong length for country code +354)"),
        ('number = "+12021234567"', "'+12021234567' is not a valid E.164 number (not in an allocated range of country code +1)"),
        ('number = "+0123456789"', "'+0123456789' is not a valid E.164 number (write '+', the country code and the number, e.g. '+12025550100')"),
        ('prefix = "1202"', "'1202' is not an E.164 prefix (write '+' followed by the country code and leading digits, e.g. '+1202')"),
        ('prefix = "+"', "'+' is not an E.164 prefix (write '+' followed by the country code and leading digits, e.g. '+1202')"),
        ('prefix = "+0"', "'+0' is not an E.164 prefix (no country calling code starts +0)"),
    ],
    ids=["national", "short", "long", "length", "unallocated", "leading-zero", "prefix-no-plus", "prefix-empty", "prefix-no-country"],
)
def test_numbers_and_prefixes_checked_with_phonenumbers(tmp_path: Path, line: str, reason: str) -> None:
    write(tmp_path, "a.toml", f'customer = "a"\ntargets = ["pbx-a"]\n[[numbers]]\n{line}\n')
    field = line.split(" ")[0]
    assert errors(tmp_path) == [f"{tmp_path}/a.toml:4:1: $.numbers[0].{field}: {reason}"]


def test_block_rule_numbers_checked_like_entries(tmp_path: Path) -> None:
    write(tmp_path, "g.toml", '[[block]]\nnumber = "2025550100"\n[[block]]\nprefix = "900"\n')
    assert errors(tmp_path) == [
        f"{tmp_path}/g.toml:2:1: $.block[0].number: '2025550100' is not a valid E.164 number (write '+', the country code and the number, e.g. '+12025550100')",
        f"{tmp_path}/g.toml:4:1: $.block[1].prefix: '900' is not an E.164 prefix (write '+' followed by the country code and leading digits, e.g. '+1202')",
    ]


def test_separators_allowed_and_normalised(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", 'customer = "a"\ntargets = ["pbx-a"]\n[[numbers]]\nnumber = "+1 (202) 555-0100"\n[[numbers]]\nprefix = "+1 202"\n')
    plan, _ = load_dialplans(tmp_path, PBX)
    assert plan.lookup("+12025550100").key == "+12025550100"
    assert plan.lookup("+12029999999").key == "+1202"


def test_duplicate_rule_id_names_both_files(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", '[[block]]\ncnam = "X"\nid = "shared"\n')
    write(tmp_path, "b.toml", '\n[[block]]\nanonymous = true\nid = "shared"\n')
    assert errors(tmp_path) == [
        f"{tmp_path}/b.toml:4:1: $.block[0].id: duplicate rule id 'shared' (first defined at {tmp_path}/a.toml:1:1 $.block[0])",
    ]


def test_duplicate_number_names_both_files(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", 'customer = "a"\ntargets = ["pbx-a"]\n[[numbers]]\nnumber = "+12025550100"\n')
    write(tmp_path, "b.toml", 'customer = "b"\ntargets = ["pbx-b"]\n[[numbers]]\nnumber = "+12025550100"\n')
    assert errors(tmp_path) == [
        f"{tmp_path}/b.toml:4:1: $.numbers[0].number: +12025550100 is already defined at {tmp_path}/a.toml:4:1 $.numbers[0].number",
    ]


def test_errors_across_files_in_one_run_sorted_by_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "b.toml", 'customer = "b"\ntargets = ["pbx-q"]\n')
    write(tmp_path, "a.toml", 'customer = "a"\n[spam]\ncool_off = "soon"\n[[spam.rate]]\nkey = "nobody"\nrate = "5/60s"\n')
    assert errors(tmp_path) == [
        f"{tmp_path}/a.toml:3:1: $.spam.cool_off: invalid duration 'soon': expected a number with ms, s, m, h or d (e.g. '30s')",
        f"{tmp_path}/a.toml:5:1: $.spam.rate[0].key: 'nobody' is not one of caller, source, pair, called, cnam",
        f"{tmp_path}/b.toml:2:12: $.targets[0]: unknown PBX 'pbx-q' (not in config [[pbx]])",
    ]


def test_toml_syntax_error_has_position_and_other_files_still_checked(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", 'customer = "a"\ntargets = ["pbx-a"\n')
    write(tmp_path, "b.toml", 'customer = 7\n')
    got = errors(tmp_path)
    assert got[0].startswith(f"{tmp_path}/a.toml:3:1: $: invalid TOML: ")
    assert got[1] == f"{tmp_path}/b.toml:1:1: $.customer: Expected `str`, got `int`"


def test_bad_value_is_not_reported_twice(tmp_path: Path) -> None:
    # A bad enum falls back to the default while the rest is checked, but no second message about it.
    write(tmp_path, "a.toml", 'customer = "a"\ntargets = ["pbx-a"]\n[[numbers]]\nnumber = "+12025550100"\naction = "menuu"\n')
    assert errors(tmp_path) == [
        f"{tmp_path}/a.toml:5:1: $.numbers[0].action: 'menuu' is not one of allow, reject, captcha, menu, voicemail, intercept",
    ]


def test_entry_remembers_where_it_is_defined(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", 'customer = "a"\ntargets = ["pbx-a"]\n\n[[numbers]]\n  number = "+12025550100"\n  action = "allow"\n')
    plan, _ = load_dialplans(tmp_path, PBX)
    e = plan.lookup("+12025550100")
    assert (e.file, e.line, e.col, e.path, e.action) == (f"{tmp_path}/a.toml", 5, 3, "$.numbers[0].number", Action.ALLOW)


def test_not_a_directory(tmp_path: Path) -> None:
    assert errors(tmp_path / "missing") == [f"{tmp_path}/missing:1:1: $: not a directory"]


@pytest.mark.parametrize("path", sorted((ROOT / "dialplans").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_dialplan_validates(path: Path, tmp_path: Path) -> None:
    (tmp_path / path.name).write_text(path.read_text())
    plan, files = load_dialplans(tmp_path, PBX, prompts=None)
    assert len(plan) > 0 or plan.rules


def test_fax_target_per_file_and_number_checked(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", 'customer = "a"\ntargets = ["pbx-a"]\nfax_target = "pbx-b"\n[[numbers]]\nnumber = "+12025550100"\n'
                              '[[numbers]]\nnumber = "+12025550101"\nfax_target = "pbx-a"\n')
    plan, _ = load_dialplans(tmp_path, PBX)
    assert (plan.lookup("+12025550100").fax_target, plan.lookup("+12025550101").fax_target) == ("pbx-b", "pbx-a")
    write(tmp_path, "a.toml", 'customer = "a"\ntargets = ["pbx-a"]\nfax_target = "fax"\n[[numbers]]\nnumber = "+12025550100"\nfax_target = "gw"\n')
    assert errors(tmp_path) == [
        f"{tmp_path}/a.toml:3:1: $.fax_target: unknown PBX 'fax' (not in config [[pbx]])",
        f"{tmp_path}/a.toml:6:1: $.numbers[0].fax_target: unknown PBX 'gw' (not in config [[pbx]])",
    ]
