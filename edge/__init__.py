"""sip-edge: an asynchronous SIP/RTP edge proxy that screens unwanted calls, texts and faxes."""

__version__ = "0.1.0"
