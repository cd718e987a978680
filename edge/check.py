"""`sip-edge check`: every configuration problem, one `file: $.path: reason` line each."""

from __future__ import annotations

from edge.config import ConfigError, load_config
from edge.dialplan.load import DialplanError, load_dialplans


def check(config_path: str, dialplan_dir: str) -> list[str]:
    errors: list[str] = []
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        return exc.errors
    try:
        load_dialplans(dialplan_dir, {p.name for p in cfg.pbx})
    except DialplanError as exc:
        errors.extend(exc.errors)
    return errors
