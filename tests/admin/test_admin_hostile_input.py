"""Admin API input that used to crash (500) or silently mean something else (issue 13 items 1 and 6)."""

from __future__ import annotations

import pytest
from admin_harness import AUTH, T0

from edge.policy.rules import RuleKind


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"limit": "\u00b2"}, "invalid limit '²': expected 1-1000"),
        ({"limit": "\u0665"}, "invalid limit '٥': expected 1-1000"),
        ({"limit": "9" * 5000}, f"invalid limit '{'9' * 32}': expected 1-1000"),
        ({"since": "nan"}, "invalid since 'nan': expected unix seconds, ISO 8601 or a duration like '1h'"),
        ({"since": "1" * 400 + "s"}, f"invalid since '{'1' * 32}': expected unix seconds, ISO 8601 or a duration like '1h'"),
        ({"until": "\uff11\uff12"}, "invalid until '１２': expected unix seconds, ISO 8601 or a duration like '1h'"),
        ({"calling": "+\uff11\uff12\uff10\uff12\uff15\uff15\uff15\uff10\uff11\uff10\uff10"},
         "invalid calling number '+１２０２５５５０１００': not a valid telephone number"),
    ],
    ids=["limit-superscript", "limit-arabic-indic", "limit-5000-digits", "since-nan", "since-400-digits",
         "until-fullwidth", "calling-fullwidth"],
)
async def test_admin_query_params_in_odd_digits_are_422_with_reason(admin, params, error):
    _, client = admin
    resp = await client.get("/activities", params=params, headers=AUTH)
    assert resp.status == 422
    assert await resp.json() == {"error": error}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"kind": "number", "value": "+\uff11\uff12\uff10\uff12\uff15\uff15\uff15\uff10\uff11\uff10\uff10"},
         "invalid number '+１２０２５５５０１００': not a valid telephone number"),
        ({"kind": "prefix", "value": "+\uff11\uff12\uff10\uff12"},
         "invalid prefix '+１２０２': expected '+' and 1-15 digits"),
        ({"kind": "number", "value": "+12025550100", "expires_in": "9" * 400 + "d"},
         f"invalid expires_in: invalid duration '{'9' * 32}': too large"),
        ({"kind": "number", "value": "+12025550100", "expires_in": "99999d"},
         "invalid expires_in '99999d': at most 3650d; omit it for a permanent rule"),
        ({"kind": "number", "value": "+12025550100", "expires_in": "\u0661d"},
         "invalid expires_in: invalid duration '١d': expected a number with ms, s, m, h or d (e.g. '30s')"),
        ({"kind": "number", "value": "+12025550100", "expires_at": 1e300},
         "invalid expires_at: at most 3650 days ahead; omit it for a permanent rule"),
        ({"kind": "cnam", "value": "*a*a*a*a*a*a*a*a*a*b"},
         "invalid caller-name pattern '*a*a*a*a*a*a*a*a*a*b': more than 8 '*' wildcards"),
    ],
    ids=["number-fullwidth", "prefix-fullwidth", "expires-overflow", "expires-too-far", "expires-arabic-indic",
         "expires-at-far", "cnam-too-many-wildcards"],
)
async def test_admin_block_with_odd_digits_or_overflow_is_422(admin, body, error):
    h, client = admin
    resp = await client.post("/blocks", json=body, headers=AUTH)
    assert resp.status == 422
    assert await resp.json() == {"error": error}
    assert await h.store.list_blocks() == [] and h.changes == []


async def test_admin_flag_by_cnam_treats_star_in_the_callers_name_as_a_literal(admin):
    """A caller named '*a*a*a*a*a*b' must not get to write a wildcard rule through an operator's flag."""
    h, client = admin
    await h.seed(id="a1", cnam="*A*a*a*a*a*B")
    resp = await client.post("/activities/a1/flag", json={"by": "cnam"}, headers=AUTH)
    assert resp.status == 201
    [rule] = await h.store.list_blocks()
    assert (rule.kind, rule.value) == (RuleKind.CNAM, "aaaaab")
    assert (await resp.json())["rule"]["value"] == "aaaaab"


async def test_admin_flag_by_cnam_of_only_punctuation_is_422(admin):
    h, client = admin
    await h.seed(id="a1", cnam="***")
    resp = await client.post("/activities/a1/flag", json={"by": "cnam"}, headers=AUTH)
    assert resp.status == 422
    assert (await resp.json())["error"] == "activity a1 has no letters or digits in its caller name to block"
    assert await h.store.list_blocks() == []


async def test_admin_block_expires_in_still_accepts_ordinary_durations(admin):
    h, client = admin
    resp = await client.post("/blocks", json={"kind": "number", "value": "+12025550100", "expires_in": "3650d"}, headers=AUTH)
    assert resp.status == 201
    assert (await resp.json())["expires_at"] == T0 + 3650 * 86400
