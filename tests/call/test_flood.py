"""FloodGuard: pike two-bucket density, bans on a fake clock, scanner table, exemptions, memory caps."""

from __future__ import annotations

import random

import msgspec
import pytest

from edge.call.flood import FloodConfig, FloodGuard, SourceBanned, Verdict, validate_flood

OPTIONS = b"OPTIONS sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n"


def msg(headers: str, method: str = "OPTIONS", body: str = "") -> bytes:
    return (f"{method} sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1\r\n"
            f"{headers}Content-Length: {len(body)}\r\n\r\n{body}").encode()


def guard(**kw) -> FloodGuard:
    return FloodGuard(FloodConfig(**kw), lambda ip, port: ip == "192.0.2.10" or (ip, port) == ("192.0.2.20", 5060))


def test_flood_burst_over_rate_bans_source():
    g = guard(rate="10/1s", ban="60s")
    verdicts = [g.admit(OPTIONS, "198.51.100.7", 5060, 100.0 + i * 0.01) for i in range(12)]
    assert verdicts[:10] == [Verdict.ADMIT] * 10
    assert verdicts[10] is Verdict.DROP_FLOOD
    assert verdicts[11] is Verdict.DROP_BANNED
    assert g.is_banned("198.51.100.7", 101.0)
    assert g.stats.bans == 1 and g.stats.dropped_flood == 1 and g.stats.dropped_banned == 1
    (event,) = g.take_events()
    assert event.ip == "198.51.100.7" and event.reason == "flood" and event.until == pytest.approx(160.1)
    assert g.take_events() == []


def test_flood_steady_rate_below_limit_never_banned():
    g = guard(rate="10/1s")
    # 8 per second for 60 s: the two-bucket estimate stays within one message of 8.
    for i in range(8 * 60):
        assert g.admit(OPTIONS, "198.51.100.7", 5060, 1000.0 + i / 8) is Verdict.ADMIT
    assert g.stats.bans == 0


def test_flood_steady_rate_above_limit_banned_across_window_edge():
    g = guard(rate="10/1s")
    # 8 messages at the end of one window and 8 at the start of the next: each window alone is under
    # 10, but the sliding estimate (previous weighted by what is left of it) goes over.
    t = 1000.0
    for i in range(8):
        assert g.admit(OPTIONS, "198.51.100.7", 5060, t + 0.9 + i * 0.01) is Verdict.ADMIT
    verdicts = [g.admit(OPTIONS, "198.51.100.7", 5060, t + 1.0 + i * 0.01) for i in range(8)]
    assert Verdict.DROP_FLOOD in verdicts


def test_flood_previous_window_forgotten_after_two_windows():
    g = guard(rate="10/1s")
    for i in range(10):
        g.admit(OPTIONS, "198.51.100.7", 5060, 50.0 + i * 0.01)
    # Two windows later the earlier burst no longer counts: another full burst is admitted.
    assert all(g.admit(OPTIONS, "198.51.100.7", 5060, 52.5 + i * 0.01) is Verdict.ADMIT for i in range(10))


def test_flood_ban_expires_after_ban_duration():
    g = guard(rate="2/1s", ban="30s")
    for i in range(3):
        g.admit(OPTIONS, "198.51.100.7", 5060, 10.0 + i * 0.01)
    assert g.admit(OPTIONS, "198.51.100.7", 5060, 39.9) is Verdict.DROP_BANNED
    assert g.admit(OPTIONS, "198.51.100.7", 5060, 40.1) is Verdict.ADMIT
    assert g.banned(40.1) == []


def test_flood_ban_is_per_ip_not_per_port():
    g = guard(rate="2/1s")
    for i in range(3):
        g.admit(OPTIONS, "198.51.100.7", 5060 + i, 10.0)
    assert g.admit(OPTIONS, "198.51.100.7", 40000, 10.5) is Verdict.DROP_BANNED
    assert g.admit(OPTIONS, "198.51.100.8", 5060, 10.5) is Verdict.ADMIT


@pytest.mark.parametrize(
    ("ip", "port"),
    [("192.0.2.10", 5060), ("192.0.2.10", 33333), ("192.0.2.20", 5060), ("203.0.113.44", 5060), ("2001:db8::5", 5060)],
    ids=["carrier-ip", "carrier-any-port", "pbx-exact-port", "exempt-cidr", "exempt-v6-cidr"],
)
def test_flood_exempt_sources_never_counted_banned_or_scanned(ip, port):
    g = guard(rate="2/1s", exempt_sources=["203.0.113.0/24", "2001:db8::/32"])
    scanner = msg("User-Agent: friendly-scanner\r\n")
    assert all(g.admit(scanner, ip, port, 5.0 + i * 0.001) is Verdict.ADMIT for i in range(100))
    assert g.stats.exempt == 100 and g.stats.bans == 0 and g.sources == 0


def test_flood_exempt_exact_port_only_covers_that_port():
    g = guard(rate="2/1s")
    verdicts = [g.admit(OPTIONS, "192.0.2.20", 5070, 5.0) for _ in range(3)]
    assert verdicts[-1] is Verdict.DROP_FLOOD


SCANNERS = [
    ("sipvicious-ua", "User-Agent: friendly-scanner\r\n", "friendly-scanner"),
    ("sipvicious-from-name", 'From: "sipvicious"<sip:100@1.1.1.1>;tag=1\r\n', "sipvicious"),
    ("compact-from", 'f: "sipvicious"<sip:100@1.1.1.1>;tag=1\r\n', "sipvicious"),
    ("case-insensitive-header", "user-agent: Friendly-Scanner\r\n", "friendly-scanner"),
    ("ua-after-product", "User-Agent: Mozilla sipcli/v1.8\r\n", "sipcli"),
    ("sip-scan", "User-Agent: sip-scan\r\n", "sip-scan"),
    ("sipscan", "User-Agent: SIPScan 1.0\r\n", "sipscan"),
    ("iwar", "User-Agent: iWar\r\n", "iwar"),
    ("sundayddr", "User-Agent: sundayddr\r\n", "sundayddr"),
    ("vax", "User-Agent: VaxSIPUserAgent/3.1\r\n", "vaxsipuseragent"),
    ("pplsip", "User-Agent: pplsip\r\n", "pplsip"),
    ("sivus", "User-Agent: SiVuS\r\n", "sivus"),
    ("space-before-colon", "User-Agent  : friendly-scanner\r\n", "friendly-scanner"),
]


@pytest.mark.parametrize(("headers", "name"), [(h, n) for _, h, n in SCANNERS], ids=[i for i, _, _ in SCANNERS])
def test_flood_scanner_dropped_and_banned(headers, name):
    g = guard()
    assert g.admit(msg(headers), "198.51.100.7", 5060, 1.0) is Verdict.DROP_SCANNER
    assert g.admit(OPTIONS, "198.51.100.7", 5061, 2.0) is Verdict.DROP_BANNED
    (event,) = g.take_events()
    assert (event.reason, event.detail) == ("scanner", name)


REAL_GEAR = [
    ("asterisk", "User-Agent: Asterisk PBX 20.5.0\r\n"),
    ("freeswitch", "User-Agent: FreeSWITCH-mod_sofia/1.10.10\r\n"),
    ("cisco", "User-Agent: Cisco-SIPGateway/IOS-15.x\r\n"),
    ("polycom", "User-Agent: PolycomVVX-VVX_411-UA/6.4.3\r\n"),
    ("sipp", "User-Agent: sipp\r\n"),
    ("sipsak", "User-Agent: sipsak 0.9.8\r\n"),
    ("name-in-to-header", "To: <sip:friendly-scanner@192.0.2.1>\r\n"),
    ("name-in-subject", "Subject: sipvicious report\r\n"),
    ("name-in-body-only", "Content-Type: text/plain\r\n"),
    ("ua-header-name-in-value", "X-Note: User-Agent: friendly-scanner\r\n"),
]


@pytest.mark.parametrize("headers", [h for _, h in REAL_GEAR], ids=[i for i, _ in REAL_GEAR])
def test_flood_real_user_agents_admitted(headers):
    g = guard()
    body = "friendly-scanner sipvicious" if "body" in headers or "text/plain" in headers else ""
    assert g.admit(msg(headers, body=body), "198.51.100.7", 5060, 1.0) is Verdict.ADMIT
    assert g.stats.bans == 0


def test_flood_extra_scanner_names_extend_defaults():
    g = guard(extra_scanner_user_agents=["evil-dialer"])
    assert g.admit(msg("User-Agent: Evil-Dialer 2\r\n"), "198.51.100.7", 5060, 1.0) is Verdict.DROP_SCANNER
    assert g.admit(msg("User-Agent: friendly-scanner\r\n"), "198.51.100.8", 5060, 1.0) is Verdict.DROP_SCANNER


def test_flood_scanner_without_ban_drops_only_that_message():
    g = guard(ban_scanners=False)
    assert g.admit(msg("User-Agent: friendly-scanner\r\n"), "198.51.100.7", 5060, 1.0) is Verdict.DROP_SCANNER
    assert g.admit(OPTIONS, "198.51.100.7", 5060, 1.1) is Verdict.ADMIT
    assert g.stats.bans == 0


@pytest.mark.parametrize(
    ("data", "verdict"),
    [
        (msg("", method="REGISTER"), Verdict.DROP_METHOD),
        (msg("", method="SUBSCRIBE"), Verdict.DROP_METHOD),
        (msg("", method="REGISTERX"), Verdict.ADMIT),
        (OPTIONS, Verdict.ADMIT),
        (b"SIP/2.0 200 OK\r\nCSeq: 1 REGISTER\r\n\r\n", Verdict.ADMIT),
        (b"\x00\x01garbage", Verdict.ADMIT),
    ],
    ids=["register", "subscribe", "longer-token", "options", "response", "garbage-left-to-parser"],
)
def test_flood_drop_methods_table(data, verdict):
    g = guard(drop_methods=["REGISTER", "SUBSCRIBE"])
    assert g.admit(data, "198.51.100.7", 5060, 1.0) is verdict


def test_flood_dropped_methods_still_count_toward_density():
    g = guard(rate="5/1s", drop_methods=["REGISTER"])
    verdicts = [g.admit(msg("", method="REGISTER"), "198.51.100.7", 5060, 1.0) for _ in range(6)]
    assert verdicts[-1] is Verdict.DROP_FLOOD


def test_flood_disabled_admits_everything():
    g = guard(enabled=False, rate="1/1s")
    assert all(g.admit(msg("User-Agent: friendly-scanner\r\n"), "198.51.100.7", 5060, 1.0) is Verdict.ADMIT
               for _ in range(10))


def test_flood_million_random_sources_stay_under_cap():
    g = guard(max_sources=5000, max_bans=1000, rate="3/10s", ban="1h")
    rnd = random.Random(8)
    for i in range(1_000_000):
        n = rnd.getrandbits(32)
        ip = f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
        g.admit(OPTIONS, ip, 5060, 1.0 + i * 1e-5)
        if i % 7 == 0:  # some of them flood and get banned
            for _ in range(3):
                g.admit(OPTIONS, ip, 5060, 1.0 + i * 1e-5)
    assert g.sources <= 5000
    assert g.active_bans <= 1000
    assert g.stats.sources_evicted > 800_000  # the rest were banned (their state dropped)
    assert g.stats.bans_evicted > 100_000
    assert len(g.events) <= g.max_events


def test_flood_active_source_survives_lru_eviction():
    g = guard(max_sources=100, rate="200/10s", strangers_rate="100000/1s")  # per-source LRU only
    for i in range(10_000):
        g.admit(OPTIONS, f"10.0.{i // 256 % 256}.{i % 256}", 5060, 1.0)
        if i % 50 == 0:
            g.admit(OPTIONS, "198.51.100.7", 5060, 1.0)  # seen often: never the least recent
    assert g.admit(OPTIONS, "198.51.100.7", 5060, 1.0) is Verdict.DROP_FLOOD


def test_flood_ban_table_evicts_oldest_ban():
    g = guard(max_bans=2, rate="1/1s")
    for n, ip in enumerate(["198.51.100.1", "198.51.100.2", "198.51.100.3"]):
        g.admit(OPTIONS, ip, 5060, 10.0 + n)
        g.admit(OPTIONS, ip, 5060, 10.0 + n)
    assert [b.ip for b in g.banned(13.0)] == ["198.51.100.2", "198.51.100.3"]
    assert g.stats.bans_evicted == 1


def test_flood_event_queue_bounded():
    g = FloodGuard(FloodConfig(), max_events=3)
    for i in range(5):
        g.admit(msg("User-Agent: friendly-scanner\r\n"), f"198.51.100.{i}", 5060, 1.0)
    assert len(g.events) == 3 and g.stats.events_dropped == 2
    assert all(isinstance(e, SourceBanned) for e in g.events)


def test_flood_unban_and_configure_keep_tables():
    g = guard(rate="1/1s")
    g.admit(OPTIONS, "198.51.100.7", 5060, 1.0)
    g.admit(OPTIONS, "198.51.100.7", 5060, 1.0)
    g.admit(OPTIONS, "198.51.100.8", 5060, 1.0)
    g.configure(FloodConfig(rate="100/1s", extra_scanner_user_agents=["evil-dialer"]))
    assert g.is_banned("198.51.100.7", 2.0)  # a reload keeps bans
    assert g.unban("198.51.100.7") and not g.unban("198.51.100.7")
    assert g.admit(OPTIONS, "198.51.100.7", 5060, 2.0) is Verdict.ADMIT
    assert g.admit(msg("User-Agent: evil-dialer\r\n"), "198.51.100.9", 5060, 2.0) is Verdict.DROP_SCANNER


def test_flood_config_from_toml_defaults():
    cfg = msgspec.toml.decode(b'rate = "100/1s"\nexempt_sources = ["10.0.0.0/8"]\n', type=FloodConfig)
    assert cfg.enabled and cfg.ban == "300s" and "friendly-scanner" in cfg.scanner_user_agents
    assert validate_flood(cfg) == []
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.toml.decode(b'rates = "1/1s"\n', type=FloodConfig)


@pytest.mark.parametrize(
    ("kw", "path", "reason"),
    [
        ({"rate": "fast"}, "$.flood.rate", "invalid rate 'fast': expected COUNT/WINDOW (e.g. '5/60s')"),
        ({"rate": "0/1s"}, "$.flood.rate", "count must be at least 1"),
        ({"rate": "5/0s"}, "$.flood.rate", "invalid rate '5/0s': window must be positive"),
        ({"ban": "forever"}, "$.flood.ban",
         "invalid duration 'forever': expected a number with ms, s, m, h or d (e.g. '30s')"),
        ({"ban": "0s"}, "$.flood.ban", "must be greater than 0s"),
        ({"max_sources": 0}, "$.flood.max_sources", "must be at least 1"),
        ({"max_bans": 0}, "$.flood.max_bans", "must be at least 1"),
        ({"scanner_user_agents": [" "]}, "$.flood.scanner_user_agents[0]", "must not be empty"),
        ({"extra_scanner_user_agents": ["sip"]}, "$.flood.extra_scanner_user_agents[0]",
         "'sip' is too short: it would match real User-Agents"),
        ({"extra_scanner_user_agents": ["sc\u00e4nner"]}, "$.flood.extra_scanner_user_agents[0]",
         "'sc\u00e4nner' is not ASCII (SIP header values are matched as bytes)"),
        ({"drop_methods": ["register"]}, "$.flood.drop_methods[0]", "'register' is not a SIP method name (upper-case letters)"),
        ({"drop_methods": ["INVITE"]}, "$.flood.drop_methods[0]", "INVITE carries calls and cannot be dropped"),
        ({"exempt_sources": ["10.0.0.0/33"]}, "$.flood.exempt_sources[0]",
         "invalid network '10.0.0.0/33': "),  # the rest of the text is the ipaddress module's
    ],
    ids=["rate-form", "rate-zero", "rate-window", "ban-form", "ban-zero", "max-sources", "max-bans", "empty-ua",
         "short-ua", "non-ascii-ua", "lower-method", "invite-method", "bad-cidr"],
)
def test_flood_validate_errors(kw, path, reason):
    errors = validate_flood(FloodConfig(**kw))
    assert [(p, r[: len(reason)]) for p, r in errors] == [(path, reason)]
    with pytest.raises(ValueError, match="flood"):
        FloodGuard(FloodConfig(**kw))


# -- aggregate stranger load (issue 13 item 4) ------------------------------------------------------

def test_flood_spread_out_sources_over_shared_budget_dropped_unparsed_and_banned():
    """500 sources each under the per-source rate, together over `strangers_rate`: past the budget no
    message is admitted, and every source is banned at `busy_rate` after a few messages."""
    g = guard(rate="30/2s", strangers_rate="100/1s", busy_rate="4/2s", ban="60s")
    verdicts = []
    for n in range(5000):  # 10 rounds over 500 sources in 1 s: 10 per source, 5,000/s together
        verdicts.append(g.admit(OPTIONS, f"198.51.{100 + n % 500 // 250}.{n % 250}", 5060, 10.0 + n * 0.0002))
    admitted = verdicts.count(Verdict.ADMIT)
    assert admitted == 100  # the budget, then nothing more reaches the parser
    assert g.stats.dropped_load > 0 and g.stats.bans == 500
    assert set(verdicts[2500:]) <= {Verdict.DROP_BANNED}
    (first,) = [e for e in g.take_events()][:1]
    assert first.reason == "flood" and "under load" in first.detail


def test_flood_busy_edge_drops_strangers_but_not_exempt_peers():
    g = guard(rate="30/2s", busy_rate="4/2s")
    assert g.admit(OPTIONS, "198.51.100.7", 5060, 1.0, busy=True) is Verdict.DROP_LOAD
    assert g.admit(OPTIONS, "192.0.2.10", 5060, 1.0, busy=True) is Verdict.ADMIT  # a carrier
    assert g.admit(OPTIONS, "198.51.100.7", 5060, 1.1) is Verdict.ADMIT  # not busy any more
    for i in range(3):
        g.admit(OPTIONS, "198.51.100.7", 5060, 1.2 + i * 0.01, busy=True)
    assert g.is_banned("198.51.100.7", 1.5)


def test_flood_budget_recovers_after_the_flood():
    g = guard(strangers_rate="50/1s", rate="1000/1s")
    for i in range(200):
        g.admit(OPTIONS, f"198.51.100.{i % 200}", 5060, 1.0 + i * 0.001)
    assert g.strangers_over_budget(1.3)
    assert not g.strangers_over_budget(3.5)
    assert g.admit(OPTIONS, "203.0.113.9", 5060, 3.5) is Verdict.ADMIT


def test_flood_busy_rate_never_above_rate():
    g = guard(rate="2/2s", busy_rate="100/1s")
    for i in range(2):
        assert g.admit(OPTIONS, "198.51.100.7", 5060, 1.0 + i * 0.01, busy=True) is Verdict.DROP_LOAD
    assert g.admit(OPTIONS, "198.51.100.7", 5060, 1.1, busy=True) is Verdict.DROP_FLOOD


@pytest.mark.parametrize("field,value,reason", [
    ("strangers_rate", "0/1s", "count must be at least 1"),
    ("busy_rate", "fast", "invalid rate"),
])
def test_flood_validate_stranger_settings(field, value, reason):
    errors = validate_flood(FloodConfig(**{field: value}))
    assert errors and errors[0][0] == f"$.flood.{field}" and reason in errors[0][1]
