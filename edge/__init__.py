"""sip-edge: an asynchronous SIP/RTP edge proxy that screens unwanted calls, texts and faxes."""

import os

__version__ = "0.1.0"

if os.environ.get("SIP_EDGE_PURE", "") == "1":
    # Before any hot-path module is imported: run its .py source, not the compiled extension (edge/build.py).
    from edge.build import use_source

    use_source()
