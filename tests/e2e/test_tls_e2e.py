"""SIP over TLS on the carrier leg (RFC 3261 §26.2): a TLS client places a call through the daemon to a
sipp PBX over UDP; client-certificate checking refuses a carrier without a certificate; SIGHUP reloads."""

from __future__ import annotations

import datetime
import signal
import socket
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.harness import free_port, uas

pytestmark = pytest.mark.e2e


def make_ca_and_leaf(tmp: Path, name: str) -> tuple[Path, Path, Path]:
    """A throw-away CA and a leaf for 127.0.0.1, as PEM files: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_p, cert_p, key_p = tmp / f"{name}-ca.pem", tmp / f"{name}.pem", tmp / f"{name}.key"
    ca_p.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_p.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_p.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    return ca_p, cert_p, key_p


def read_response(conn: ssl.SSLSocket, buf: bytearray) -> bytes:
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end])
            clen = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    clen = int(line.split(b":")[1])
            if len(buf) >= end + 4 + clen:
                msg = bytes(buf[: end + 4 + clen])
                del buf[: end + 4 + clen]
                return msg
        chunk = conn.recv(65535)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk


def test_tls_carrier_call_through_edge(edge, tmp_path):
    ca, cert, key = make_ca_and_leaf(tmp_path, "edge")
    tls_port = free_port()
    extra = (f'[[listen]]\ntransport = "tls"\naddress = "127.0.0.1:{tls_port}"\n'
             f'tls_cert = "{cert}"\ntls_key = "{key}"\n')
    d = edge.start(health_interval="", listen_extra=extra)
    pbx = uas(tmp_path, edge.pbx_a)
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
    conn = ctx.wrap_socket(raw)
    local = conn.getsockname()
    buf = bytearray()
    try:
        invite = (
            f"INVITE sip:12025550100@127.0.0.1:{tls_port};transport=tls SIP/2.0\r\n"
            f"Via: SIP/2.0/TLS 127.0.0.1:{local[1]};branch=z9hG4bK-tls-1;rport\r\n"
            "From: <sip:+13035550100@127.0.0.1>;tag=tls1\r\nTo: <sip:12025550100@127.0.0.1>\r\n"
            "Call-ID: tls-call-1@test\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:c@127.0.0.1:{local[1]};transport=tls>\r\n"
            "Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n"
        )
        conn.sendall(invite.encode())
        statuses = []
        final = b""
        while not statuses or statuses[-1] < 200:
            resp = read_response(conn, buf)
            statuses.append(int(resp.split(b" ", 2)[1]))
            final = resp
        assert statuses[-1] == 200, final
        to = [ln for ln in final.decode().split("\r\n") if ln.startswith("To:")][0]
        rr = [ln.split(":", 1)[1].strip() for ln in final.decode().split("\r\n") if ln.startswith("Record-Route:")]
        routes = "".join(f"Route: {r}\r\n" for r in reversed(", ".join(rr).split(", "))) if rr else ""
        common = (f"From: <sip:+13035550100@127.0.0.1>;tag=tls1\r\n{to}\r\nCall-ID: tls-call-1@test\r\n"
                  f"{routes}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        contact = [ln for ln in final.decode().split("\r\n") if ln.startswith("Contact:")][0].split("<")[1].split(">")[0]
        conn.sendall((f"ACK {contact} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{local[1]};branch=z9hG4bK-tls-2\r\n"
                      f"CSeq: 1 ACK\r\n{common}").encode())
        time.sleep(0.2)
        conn.sendall((f"BYE {contact} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{local[1]};branch=z9hG4bK-tls-3\r\n"
                      f"CSeq: 2 BYE\r\n{common}").encode())
        bye_resp = read_response(conn, buf)
        assert bye_resp.startswith(b"SIP/2.0 200"), bye_resp
    finally:
        conn.close()
        pbx.stop()
    msgs = pbx.messages()
    assert f"<sip:127.0.0.1:{tls_port};transport=tls;lr>" in msgs  # double Record-Route (TLS and UDP sides)
    assert "BYE sip:" in msgs
    # SIGHUP reloads the certificate without dropping the listener.
    d.signal(signal.SIGHUP)
    d.wait_event("tls_certificate_reloaded")


def test_tls_client_certificate_required_for_carriers(edge, tmp_path):
    ca, cert, key = make_ca_and_leaf(tmp_path, "edge")
    carrier_ca, carrier_cert, carrier_key = make_ca_and_leaf(tmp_path, "carrier")
    tls_port = free_port()
    edge.start(health_interval="", listen_extra=(
        f'[[listen]]\ntransport = "tls"\naddress = "127.0.0.1:{tls_port}"\n'
        f'tls_cert = "{cert}"\ntls_key = "{key}"\ntls_ca = "{carrier_ca}"\ntls_verify_client = true\n'))
    options = (f"OPTIONS sip:127.0.0.1:{tls_port} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:1;branch=z9hG4bK-o1\r\n"
               "From: <sip:ping@127.0.0.1>;tag=o1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: opt-1@test\r\n"
               "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()

    def attempt(with_cert: bool) -> bytes:
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.check_hostname = False
        if with_cert:
            ctx.load_cert_chain(str(carrier_cert), str(carrier_key))
        with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw:
            with ctx.wrap_socket(raw) as conn:
                conn.sendall(options)
                return read_response(conn, bytearray())

    assert attempt(True).startswith(b"SIP/2.0 200 OK")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        attempt(False)
