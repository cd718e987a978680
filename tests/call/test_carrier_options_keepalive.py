"""A carrier's OPTIONS naming a DID is a keep-alive, not a call (issue 13 item 7)."""

from __future__ import annotations

import pytest

from edge.sip.message import parse
from tests.call.proxy_harness import CARRIER, EDGE_URI, PBX_A, PBX_B, Harness
from tests.sip.samples import invite


@pytest.mark.parametrize(
    "uri",
    [EDGE_URI, "sip:+13035550111@127.0.0.1:5060", "sip:+14155550000@127.0.0.1"],
    ids=["exact-did", "prefix-did", "unknown-number"],
)
def test_carrier_options_to_a_number_answered_200_without_policy_or_activity(uri: str) -> None:
    h = Harness()
    h.proxy.receive(invite(uri, method="OPTIONS"), CARRIER, h.now)
    sent = [(parse(d), dest) for d, dest in h.proxy.outbox]
    assert [(m.status, dest) for m, dest in sent] == [(200, CARRIER)]
    assert "INVITE" in sent[0][0].get("allow")
    assert h.proxy.activities == []
    assert not [dest for _, dest in sent if dest in (PBX_A, PBX_B)]
    assert h.tables() == (0, 0, 0)
    assert h.proxy.stats.by_status.get(200) == 1
