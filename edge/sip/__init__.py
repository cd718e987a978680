"""SIP layer (RFC 3261): sans-IO message parsing, framing and transactions."""
