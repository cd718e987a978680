"""edge.tomlfile: key positions over TOML source and decoding that reports every problem."""

from __future__ import annotations

import msgspec
import pytest

from edge.tomlfile import Problem, Reported, SourceMap, decode, parse_path, read_toml

SOURCE = "\n".join([
    "# comment with [brackets] and = signs",
    'name = "a # not a comment"',
    'multi = """',
    "[not.a.table]",
    "x = 1",
    '"""',
    "lit = \'\'\'it's [x]\'\'\'",
    "[[numbers]]",
    'number = "+12025550100"',
    "[[numbers]]",
    'prefix = "+1303"   # trailing comment',
    "  [[numbers.block]]",
    '  cnam = "SPAM*"',
    "[numbers.policy]",
    "dry_run = true",
    '[menus."main menu".options]',
    '"1" = { forward = "pbx-a", note = "x, y" }',
    "list = [",
    '  "a",  # first',
    "  { k = [1, 2] },",
    "]",
    "dotted.key = 3",
    "",
])


@pytest.mark.parametrize(
    ("path", "pos"),
    [
        ("$.name", (2, 1)),
        ("$.multi", (3, 1)),
        ("$.numbers[0]", (8, 1)),
        ("$.numbers[0].number", (9, 1)),
        ("$.numbers[1].prefix", (11, 1)),
        ("$.numbers[1].block[0]", (12, 3)),
        ("$.numbers[1].block[0].cnam", (13, 3)),
        ("$.numbers[1].policy.dry_run", (15, 1)),
        ('$.menus["main menu"].options["1"].forward', (17, 9)),
        ('$.menus["main menu"].options["1"].note', (17, 28)),
        ('$.menus["main menu"].options.list[1].k[1]', (20, 13)),
        ('$.menus["main menu"].options.dotted.key', (22, 1)),
        ("$.numbers[1].block[0].unknown", (12, 3)),  # an unknown key falls back to its table
        ("$.nowhere", (1, 1)),
        ("$", (1, 1)),
    ],
)
def test_sourcemap_locates_keys_headers_and_elements(path: str, pos: tuple[int, int]) -> None:
    sm = SourceMap(SOURCE)
    assert sm.locate(path) == pos


def test_sourcemap_is_linear_on_a_large_file() -> None:
    text = "".join(f'[[numbers]]\nnumber = "+1202555{i:04d}"\n' for i in range(5000))
    sm = SourceMap(text)
    assert sm.locate("$.numbers[4999].number") == (10000, 1)


def test_parse_path_forms() -> None:
    assert parse_path('$.a[3].b["x y"].c') == ("a", 3, "b", "x y", "c")
    assert parse_path("$.menus[...].greeting") == ("menus",)


def test_reported_covers_the_path_its_ancestors_and_descendants() -> None:
    bad = Reported(["$.numbers[0].number", "$"])
    assert bad.covers("$.numbers[0]")
    assert bad.covers("$.numbers")
    assert bad.covers("$.numbers[0].number")
    assert bad.covers("$.numbers[0].number.x")
    assert not bad.covers("$.numbers[1].number")
    assert not bad.covers("$.customer")
    assert not bad.covers("$")


def test_read_toml_syntax_error_has_line_and_column() -> None:
    got = read_toml("f.toml", 'a = 1\nb = \n')
    assert got == Problem("f.toml", 2, 5, "$", "invalid TOML: Invalid value")
    assert str(got) == "f.toml:2:5: $: invalid TOML: Invalid value"


class Inner(msgspec.Struct, forbid_unknown_fields=True):
    n: int = 0
    mode: str = "a"


class Outer(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    items: list[Inner] = []
    table: dict[str, Inner] = {}


def test_decode_reports_every_problem_and_keeps_the_rest() -> None:
    data = {"name": "x", "items": [{"n": "one"}, {"nn": 2}], "table": {"k": {"n": 1, "extra": 1}}, "typo": 1}
    value, errors = decode(data, Outer)
    assert errors == [
        ("$.items[0].n", "Expected `int`, got `str`"),
        ("$.items[1].nn", "unknown key 'nn' (did you mean 'n'?)"),
        ("$.table.k.extra", "unknown key 'extra' (expected one of: n, mode)"),
        ("$.typo", "unknown key 'typo' (expected one of: name, items, table)"),
    ]
    assert value == Outer("x", [Inner(), Inner()], {"k": Inner(1)})


def test_decode_missing_required_key() -> None:
    value, errors = decode({"items": []}, Outer)
    assert value is None
    assert errors == [("$", "missing required key 'name'")]


def test_decode_equals_msgspec_on_valid_input() -> None:
    data = {"name": "x", "items": [{"n": 1, "mode": "b"}], "table": {}}
    assert decode(data, Outer) == (msgspec.convert(data, Outer), [])


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_TEXT = st.text(st.sampled_from(list("ab #=[]{}.,'\"\\\n\t") + ["é", "—"]), max_size=30)


def _forms(s: str) -> list[str]:
    """Every TOML string form that can carry `s`."""
    import json

    out = [json.dumps(s, ensure_ascii=False)]
    if "'" not in s and "\n" not in s:
        out.append(f"'{s}'")
    if s.startswith("\n"):
        return out  # a multi-line string drops a newline right after its opening quotes
    if "'''" not in s and not s.endswith("'"):
        out.append(f"'''{s}'''")
    out.append('"""' + s.replace("\\", "\\\\").replace('"', '\\"') + '"""')
    return out


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_TEXT, min_size=1, max_size=4), form=st.integers(0, 3))
def test_sourcemap_follows_every_string_form(values: list[str], form: int) -> None:
    import tomllib

    lines = ["[[numbers]]"]
    for i, v in enumerate(values):
        forms = _forms(v)
        lines.append(f"v{i} = {forms[form % len(forms)]}  # c")
        lines.append(f"list{i} = [{forms[(form + 1) % len(forms)]}, {{ k = {forms[0]} }}]")
    lines.append('after = "x"')
    text = "\n".join(lines) + "\n"
    data = tomllib.loads(text)
    assert data["numbers"][0]["v0"] == values[0]
    sm = SourceMap(text)
    expected_line = text[: text.index('\nafter = "x"')].count("\n") + 2
    assert sm.locate("$.numbers[0].after") == (expected_line, 1)
    last = len(values) - 1
    line_of_list = text[: text.index(f"\nlist{last} = ")].count("\n") + 2
    assert sm.locate(f"$.numbers[0].list{last}[1].k")[0] >= line_of_list
