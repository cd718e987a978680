"""The operator's `sip-edge` command: run the daemon, check configuration, and operate it.

Public surface: `main(argv)` (the console script) and `build_parser()`. One module per command
group: `check` (config and dialplans), `activities` (activities log, flags, blocks, voicemail),
`numbers` (number lifecycle), `stir` (verify/sign Identity headers), `messages` (held texts, opt-outs),
`users` (console users), and `admin_client` (the admin HTTP API client they share). CLI code lives
only here, so domain packages stay sans-IO.
"""

from edge.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
