"""HEPv3 export: packets decoded by an independent strict parser (every chunk id and length checked
against the HEP3 specification), config validation, and a loopback UDP collector receiving captures."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct

import msgspec
import pytest

from edge.io.hep import MAX_PACKET, HepConfig, HepEncoder, HepExporter, validate_hep

INVITE = (
    b"INVITE sip:+12025550100@192.0.2.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com \r\n"
    b"CSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\nv=0\n"
)

#: HEP3 generic chunks: id -> (name, fixed value length or None for variable, struct format for numbers)
SPEC = {
    0x0001: ("family", 1, "!B"),
    0x0002: ("proto_id", 1, "!B"),
    0x0003: ("src_ip4", 4, None),
    0x0004: ("dst_ip4", 4, None),
    0x0005: ("src_ip6", 16, None),
    0x0006: ("dst_ip6", 16, None),
    0x0007: ("src_port", 2, "!H"),
    0x0008: ("dst_port", 2, "!H"),
    0x0009: ("ts_sec", 4, "!I"),
    0x000A: ("ts_usec", 4, "!I"),
    0x000B: ("proto_type", 1, "!B"),
    0x000C: ("agent_id", 4, "!I"),
    0x000D: ("keep_alive", 2, "!H"),
    0x000E: ("auth_key", None, None),
    0x000F: ("payload", None, None),
    0x0010: ("compressed_payload", None, None),
    0x0011: ("correlation_id", None, None),
}


def decode_hep3(packet: bytes) -> dict[str, object]:
    """Strict HEP3 reader: raises AssertionError on anything the specification does not allow."""
    assert packet[:4] == b"HEP3", packet[:4]
    (total,) = struct.unpack("!H", packet[4:6])
    assert total == len(packet), (total, len(packet))
    out: dict[str, object] = {}
    pos = 6
    while pos < total:
        assert total - pos >= 6, "truncated chunk header"
        vendor, kind, length = struct.unpack("!HHH", packet[pos:pos + 6])
        assert vendor == 0, f"vendor {vendor}"
        assert kind in SPEC, f"unknown chunk 0x{kind:04x}"
        name, fixed, fmt = SPEC[kind]
        assert length >= 6 and pos + length <= total, (name, length)
        value = packet[pos + 6:pos + length]
        if fixed is not None:
            assert len(value) == fixed, (name, len(value))
        assert name not in out, f"duplicate {name}"
        out[name] = struct.unpack(fmt, value)[0] if fmt else value
        pos += length
    assert pos == total
    family = out["family"]
    if family == 2:
        assert "src_ip4" in out and "dst_ip4" in out and "src_ip6" not in out
        out["src_ip"] = str(ipaddress.IPv4Address(out["src_ip4"]))
        out["dst_ip"] = str(ipaddress.IPv4Address(out["dst_ip4"]))
    else:
        assert family == 10 and "src_ip6" in out and "dst_ip6" in out and "src_ip4" not in out
        out["src_ip"] = str(ipaddress.IPv6Address(out["src_ip6"]))
        out["dst_ip"] = str(ipaddress.IPv6Address(out["dst_ip6"]))
    for required in ("proto_id", "src_port", "dst_port", "ts_sec", "ts_usec", "proto_type", "agent_id", "payload"):
        assert required in out, f"missing {required}"
    assert out["ts_usec"] < 1_000_000
    return out


@pytest.mark.parametrize(
    ("src", "dst", "proto", "family", "proto_id"),
    [
        (("198.51.100.7", 5060), ("192.0.2.1", 5062), "udp", 2, 17),
        (("198.51.100.7", 40123), ("192.0.2.1", 5060), "tcp", 2, 6),
        (("198.51.100.7", 40123), ("192.0.2.1", 5061), "tls", 2, 6),
        (("2001:db8::7", 5060), ("2001:db8::1", 5060), "udp", 10, 17),
        (("[2001:db8::7]", 5060), ("::ffff:192.0.2.1", 5060), "udp", 10, 17),
    ],
    ids=["udp-v4", "tcp-v4", "tls-v4", "udp-v6", "bracketed-v6"],
)
def test_hep_encode_decodes_every_chunk(src, dst, proto, family, proto_id):
    enc = HepEncoder(agent_id=2001)
    now = 1_700_000_000.25
    if dst[0].startswith("::ffff:"):
        # An IPv4-mapped peer with an IPv6 source is a mixed-family pair: not representable.
        assert enc.encode(INVITE, src, dst, proto, now) is None
        return
    hep = decode_hep3(enc.encode(INVITE, src, dst, proto, now))
    assert hep["family"] == family and hep["proto_id"] == proto_id
    assert (hep["src_ip"], hep["src_port"]) == (src[0].strip("[]"), src[1])
    assert (hep["dst_ip"], hep["dst_port"]) == (dst[0], dst[1])
    assert (hep["ts_sec"], hep["ts_usec"]) == (1_700_000_000, 250_000)
    assert hep["proto_type"] == 1 and hep["agent_id"] == 2001
    assert hep["correlation_id"] == b"a84b4c76e66710@pc33.example.com"
    assert hep["payload"] == INVITE
    assert "auth_key" not in hep


def test_hep_auth_key_and_no_correlation():
    enc = HepEncoder(agent_id=7, password="s3cret", correlate=False)
    hep = decode_hep3(enc.encode(INVITE, ("192.0.2.9", 5060), ("192.0.2.1", 5060), "udp", 10.0))
    assert hep["auth_key"] == b"s3cret" and "correlation_id" not in hep and hep["agent_id"] == 7


@pytest.mark.parametrize(
    ("data", "call_id"),
    [
        (b"SIP/2.0 200 OK\r\ni: compact-id@x\r\nCSeq: 1 BYE\r\n\r\n", b"compact-id@x"),
        (b"OPTIONS sip:x SIP/2.0\r\ncall-id:\tlower@x\r\n\r\n", b"lower@x"),
        (b"OPTIONS sip:x SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\nCall-ID: in-body", None),
        (b"OPTIONS sip:x SIP/2.0\r\nCall-ID:\r\n\r\n", None),
        (b"\x00\xffgarbage", None),
    ],
    ids=["compact-response", "lower-case-tab", "only-in-body", "empty", "garbage"],
)
def test_hep_correlation_id_from_call_id_header(data, call_id):
    hep = decode_hep3(HepEncoder(1).encode(data, ("192.0.2.9", 1), ("192.0.2.1", 2), "udp", 1.0))
    assert hep.get("correlation_id") == call_id
    assert hep["payload"] == data


def test_hep_oversize_capture_not_encoded():
    enc = HepEncoder(1)
    assert enc.encode(b"x" * MAX_PACKET, ("192.0.2.9", 1), ("192.0.2.1", 2), "tcp", 1.0) is None
    big = enc.encode(b"x" * (MAX_PACKET - 200), ("192.0.2.9", 1), ("192.0.2.1", 2), "tcp", 1.0)
    assert big is not None and decode_hep3(big)["payload"] == b"x" * (MAX_PACKET - 200)


def test_hep_address_memo_bounded():
    enc = HepEncoder(1, address_cache=16)
    for i in range(200):
        enc.encode(INVITE, (f"10.0.{i // 256}.{i % 256}", 5060), ("192.0.2.1", 5060), "udp", 1.0)
    assert len(enc._addrs) <= 16


def test_hep_config_defaults_off_and_unknown_keys_refused():
    cfg = msgspec.toml.decode(b'address = "10.1.2.3:9060"\n', type=HepConfig)
    assert cfg.enabled is False and validate_hep(cfg) == []
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.toml.decode(b'collector = "10.1.2.3:9060"\n', type=HepConfig)


@pytest.mark.parametrize(
    ("kw", "path", "reason"),
    [
        ({"address": "homer.example.com:9060"}, "$.hep.address", "does not appear to be an IPv4 or IPv6 address"),
        ({"address": "10.1.2.3"}, "$.hep.address", "invalid address '10.1.2.3': expected ip:port (e.g. '127.0.0.1:9060')"),
        ({"address": "10.1.2.3:0"}, "$.hep.address", "invalid address '10.1.2.3:0': expected ip:port"),
        ({"agent_id": -1}, "$.hep.agent_id", "must fit in 32 bits (0..4294967295)"),
        ({"agent_id": 2**32}, "$.hep.agent_id", "must fit in 32 bits (0..4294967295)"),
        ({"password": "p" * 1025}, "$.hep.password", "at most 1024 bytes"),
        ({"max_buffer": 1000}, "$.hep.max_buffer", "must be at least 65507 (one datagram)"),
    ],
    ids=["hostname", "no-port", "port-zero", "agent-negative", "agent-too-big", "password-long", "buffer-small"],
)
def test_hep_validate_errors(kw, path, reason):
    errors = validate_hep(HepConfig(**kw))
    assert len(errors) == 1 and errors[0][0] == path and reason in errors[0][1]


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.packets.put_nowait(data)


async def test_hep_exporter_loopback_capture_arrives():
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(Collector, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    exporter = HepExporter(HepConfig(enabled=True, address=f"127.0.0.1:{port}", agent_id=42, password="k"))
    try:
        exporter.capture(INVITE, ("198.51.100.7", 5060), ("127.0.0.1", 5062), "udp", 5.0)  # not started: dropped
        await exporter.start()
        exporter.capture(INVITE, ("198.51.100.7", 5060), ("127.0.0.1", 5062), "udp", 1_700_000_000.5)
        exporter.capture(b"SIP/2.0 100 Trying\r\nCall-ID: x\r\n\r\n", ("127.0.0.1", 5062), ("198.51.100.7", 5060), "udp", 1_700_000_000.6)
        first = decode_hep3(await asyncio.wait_for(collector.packets.get(), 2))
        second = decode_hep3(await asyncio.wait_for(collector.packets.get(), 2))
    finally:
        exporter.close()
        transport.close()
    assert first["payload"] == INVITE and first["agent_id"] == 42 and first["auth_key"] == b"k"
    assert (first["src_ip"], first["dst_port"]) == ("198.51.100.7", 5062)
    assert second["correlation_id"] == b"x" and second["src_port"] == 5062
    assert exporter.stats() == {"hep_sent_total": 2, "hep_dropped_total": 1, "hep_errors_total": 0}


async def test_hep_exporter_never_raises_on_bad_input_or_dead_collector():
    # A port nobody listens on: ICMP errors come back as error_received, never into capture().
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    exporter = HepExporter(HepConfig(enabled=True, address=f"127.0.0.1:{port}"))
    await exporter.start()
    try:
        for _ in range(5):
            exporter.capture(INVITE, ("198.51.100.7", 5060), ("127.0.0.1", 5062), "udp", 1.0)
            await asyncio.sleep(0.01)
        exporter.capture(INVITE, ("not-an-ip", 5060), ("127.0.0.1", 5062), "udp", 1.0)
        exporter.capture(INVITE, ("198.51.100.7", 70000), ("127.0.0.1", 5062), "udp", 1.0)
    finally:
        exporter.close()
    assert exporter.errors >= 3  # the two bad captures plus at least one ICMP port unreachable
    exporter.capture(INVITE, ("198.51.100.7", 5060), ("127.0.0.1", 5062), "udp", 1.0)  # closed: dropped
    assert exporter.dropped == 1
