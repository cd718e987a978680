"""The slice of `make fuzz` that runs with every `make test`: a fixed seed and a few thousand messages."""

from __future__ import annotations

from tests.sip.fuzz_campaign import Campaign, corpus, scenario_messages


def test_fuzz_campaign_corpus_holds_vectors_and_e2e_scenario_messages() -> None:
    msgs = scenario_messages()
    assert any(m.startswith(b"INVITE sip:+12025550100@127.0.0.1:5060 SIP/2.0\r\n") for m in msgs)
    assert any(m.startswith(b"SIP/2.0 486 Busy Here\r\n") for m in msgs)
    assert all(b"[" + b"len]" not in m and b"{caller}" not in m for m in msgs)
    assert len(corpus()) > len(msgs) + 40


def test_fuzz_campaign_slice_only_refusals_answers_and_forwards() -> None:
    c = Campaign(count=3000, seconds=600, seed=13)
    c.run()  # raises Failure on any exception, a non-4xx/5xx/6xx answer to a request, or undrained tables
    report = c.report()
    assert report["messages"] == 3000 and report["generated"] > 0 and report["mutated"] > 0
    assert report["parse_ok"] > 0 and report["parse_refused"] > 0
    assert report["answered_4xx"] > 0 and report["forwarded"] > 0
