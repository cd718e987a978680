"""Policy (sans-IO): detectors report evidence, the number's plan decides.

Public surface: `pipeline.PolicyEngine.decide(facts, plan, now)` -> `facts.Decision`; `rules` and
`blocking` (block/allow rules and their index), `spam` (Spam Detective), `rates` (sliding windows),
`signals`, `cnam`, `schema` (dialplan policy sections, `parse_rate` with the policy's bounds).
"""
