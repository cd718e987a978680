"""The lean parser checked against an independent full SIP grammar (sipmessage, by aiortc's author):
on every valid torture vector both agree on the routing envelope. The vectors sipmessage refuses are
the tolerances RFC 4475 asks of a robust element (bare LF line ends, leading CRLFs, odd whitespace):
the edge accepts them and the test pins exactly which ones."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest
import sipmessage

from edge.sip.message import Via, parse, split_list

VALID = sorted((Path(__file__).parents[1] / "vectors" / "valid").glob("*.sip"))
BEYOND_SIPMESSAGE = {"bare_lf.sip", "leading_crlf.sip", "wsinv.sip"}


@pytest.mark.parametrize("path", VALID, ids=[p.name for p in VALID])
def test_oracle_envelope_matches_sipmessage(path: Path) -> None:
    data = path.read_bytes()
    ours = parse(data)
    if path.name in BEYOND_SIPMESSAGE:
        with pytest.raises(ValueError):
            sipmessage.Message.parse(data)
        return
    theirs = sipmessage.Message.parse(data)
    assert ours.call_id == theirs.headers.get("Call-ID")
    assert f"{ours.cseq_num} {ours.cseq_method}" == " ".join(theirs.headers.get("CSeq").split())
    their_vias = [v for value in theirs.headers.getlist("Via") for v in split_list(value)]
    assert [v.raw for v in ours.vias] == their_vias
    assert ours.top_via.branch == Via(their_vias[0]).branch
    if isinstance(theirs, sipmessage.Request):
        # sipmessage unescapes the Request-URI; a proxy forwards it as received (compare unescaped).
        assert (ours.method, unquote(ours.uri)) == (theirs.method, str(theirs.uri))
    else:
        assert ours.status == theirs.code
    # Bytes past Content-Length are not the body (RFC 3261 §18.3); sipmessage keeps them.
    clen = ours.get("content-length")
    assert ours.body == (theirs.body[: int(clen)] if clen is not None else theirs.body)


def test_oracle_every_valid_vector_is_checked() -> None:
    assert len(VALID) >= 15 and BEYOND_SIPMESSAGE <= {p.name for p in VALID}
