"""Errors raised by the sans-IO SIP layer."""


class SipParseError(ValueError):
    """A message that cannot be parsed; the text is the reason phrase of the 400 answered (RFC 3261 §21.4.1)."""


class FramingError(ValueError):
    """A stream that cannot be framed (oversize or bad Content-Length); the connection is closed."""
