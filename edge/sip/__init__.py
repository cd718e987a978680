"""SIP layer (RFC 3261, sans-IO): `message.parse` and `SipMessage`, `framing` (stream framing),
`transaction` (client/server transactions, `TransactionUser`), `timers.TimerWheel`, `dialog.Dialog`
(a UA's dialog state and in-dialog requests), `response.make_response`, `uri`, `errors.SipParseError`.
"""
