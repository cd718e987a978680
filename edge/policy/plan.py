"""The compiled policy of one called number (or number block): what the pipeline needs per contact.

The dialplan loader builds one `NumberPolicy` per number from the dialplan sections (see
edge.policy.schema.compile_number_policy) and hands it to `PolicyEngine.decide` with each contact.
"""

from __future__ import annotations

import msgspec

from edge.policy.facts import Action
from edge.policy.spam import SpamConfig


class NumberPolicy(msgspec.Struct, frozen=True):
    """Media names are empty when the number has no such thing configured; a media action that
    cannot run degrades to `media_fallback` (then to reject when that cannot run either)."""

    number: str = ""  # called number or block label, for logs and reasons
    customer: str | None = None  # used for customer-scoped rules when the facts carry none
    spam: SpamConfig | None = None  # None: Spam Detective off for this number
    dry_run: bool = False  # evaluate everything, enforce nothing (Decision.would says what)
    captcha: str = ""  # captcha profile name
    menu: str = ""  # IVR menu name
    voicemail: str = ""  # voicemail box name
    media_fallback: Action = Action.REJECT
    fax_action: Action = Action.ALLOW  # what a fax gets instead of captcha/menu/voicemail
    reject_status: int = 603  # status for rejects that carry none of their own (fallbacks, messages)

    def media_target(self, action: Action) -> str | None:
        """Name of the configured media for `action`, None when not configured ('' for non-media)."""
        if action is Action.CAPTCHA:
            return self.captcha or None
        if action is Action.MENU:
            return self.menu or None
        if action is Action.VOICEMAIL:
            return self.voicemail or None
        return ""


DEFAULT_POLICY = NumberPolicy()
