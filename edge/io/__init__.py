"""asyncio adapters around the sans-IO core: `sip_transport.SipHub` (UDP/TCP/TLS, the outbox flush and
the core's one loop timer), `rtp_udp.MediaEngine` (RTP sessions, prompts), `screening.MediaDriver` (the
B2BUA's media effects), `cert_fetch` (STIR certificate fetches), `tls` (contexts, listener check),
`hep.HepExporter` (HEPv3 capture).
"""
