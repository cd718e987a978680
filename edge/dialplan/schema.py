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
action = "menu"              # what a clean call gets: allow (forward) | menu | captcha | voicemail
menu = "main"
fax_target = "fax-gw"        # a G.711 fax heard (CNG tone) while screening goes here
```

Policy sections (`[[block]]`, `[[allow]]`, `[spam]`, `[policy]`, `[stir]`) and media sections
(`[menus.*]`, `[captcha]`, `[voicemail.*]`, `screening`) apply to every number of the file;
a number entry may carry its own `[[numbers.block]]` / `[[numbers.allow]]` (scope: that number),
`policy`, `stir`, `menu`, `voicemail` overrides.
"""

from __future__ import annotations

import msgspec

from edge.media.schema import CaptchaSpec, MenuSpec, ScreeningMode, VoicemailBoxSpec
from edge.messaging.schema import BrandSpec, CampaignSpec, MessagesSpec
from edge.policy.facts import Action
from edge.policy.schema import BlockRuleSpec, NumberPolicySpec, SpamSpec
from edge.stir.schema import StirPolicy


class NumberSpec(msgspec.Struct, forbid_unknown_fields=True):
    number: str = ""  # exact E.164
    prefix: str = ""  # E.164 prefix
    targets: list[str] = []  # PBX names; default: the file's targets
    description: str = ""
    action: Action = Action.ALLOW  # default treatment of clean contacts
    menu: str = ""  # menu used for 'menu' decisions; default: the file's first menu
    voicemail: str = ""  # box used for 'voicemail' decisions and fallbacks; default: the file's first box
    block: list[BlockRuleSpec] = []
    allow: list[BlockRuleSpec] = []
    policy: NumberPolicySpec | None = None
    stir: StirPolicy | None = None
    screening: ScreeningMode | None = None
    fax_target: str = ""  # PBX name for faxes heard (CNG tone) while screening; default: the file's


class DialplanFile(msgspec.Struct, forbid_unknown_fields=True):
    customer: str = ""
    vetted: bool = False
    targets: list[str] = []
    fax_target: str = ""  # PBX name a screened call goes to when its fax calling tone (CNG) is heard
    numbers: list[NumberSpec] = []
    description: str = ""
    # policy (issue: block rules and Spam Detective)
    block: list[BlockRuleSpec] = []
    allow: list[BlockRuleSpec] = []
    spam: SpamSpec | None = None
    policy: NumberPolicySpec = NumberPolicySpec()
    stir: StirPolicy = StirPolicy()
    # media screening
    screening: ScreeningMode = ScreeningMode.ANSWER
    early_media_fallback: str = "3s"
    menus: dict[str, MenuSpec] = {}
    captcha: CaptchaSpec | None = None
    voicemail: dict[str, VoicemailBoxSpec] = {}
    # messages: A2P 10DLC brand and campaigns (outbound), content screening (inbound)
    brand: BrandSpec | None = None
    campaigns: list[CampaignSpec] = []
    messages: MessagesSpec | None = None
