"""Media (sans-IO): RTP packets, G.711, DTMF (RFC 4733, INFO, in-band), sessions and the screening flows.

Public surface: `events` (what a session reports, the same objects the flows receive), `session.MediaSession`,
`flow` (flow effects, `AnswerGate`), the flows `menus.Menu`, `captcha.Captcha`, `voicemail.VoicemailDeposit`,
`intercept.Intercept`, `prompts` (`BUILTIN_PROMPT_NAMES`, decoding), `sdp` (offer/answer), `schema` (dialplan
media sections), `engine_config.MediaConfig`.
"""
