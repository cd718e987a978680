"""Dialplan files (dialplans/*.toml) as telecom engineers write them: one customer or number block per file.

```toml
customer = "acme"            # owner of the numbers below
vetted = true                # business profile vetted (outbound attestation A)
targets = ["pbx-a", "pbx-b"] # PBX names from config/edge.toml, failover order

[[numbers]]
number = "+12025550100"      # exact E.164 ...
[[numbers]]
prefix = "+1202555"          # ... or a prefix; the longest match wins
targets = ["pbx-b"]          # per-entry override
```
"""

from __future__ import annotations

import msgspec


class NumberSpec(msgspec.Struct, forbid_unknown_fields=True):
    number: str = ""  # exact E.164
    prefix: str = ""  # E.164 prefix
    targets: list[str] = []  # PBX names; default: the file's targets
    description: str = ""


class DialplanFile(msgspec.Struct, forbid_unknown_fields=True):
    customer: str = ""
    vetted: bool = False
    targets: list[str] = []
    numbers: list[NumberSpec] = []
    description: str = ""
