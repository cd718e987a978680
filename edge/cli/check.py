"""`sip-edge check`: every configuration problem, one `file:line:col: $.path: reason` line each.

Beyond the schemas: STIR trust anchors and signing key readable, prompts named by the dialplans
present, and no dialplan number that the lifecycle store says is released (quarantined).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge.config import ConfigError, EdgeConfig, load_config, read_config_file
from edge.tomlfile import locate_lines
from edge.dialplan.load import DialplanError, load_dialplans
from edge.dialplan.plan import Plan
from edge.stir.schema import StirConfig

def prompt_names(cfg: EdgeConfig) -> set[str]:
    """Prompt names a dialplan may use: the engine's own list (built-in tones + prompt files)."""
    from edge.io.rtp_udp import prompt_names as engine_prompt_names

    return engine_prompt_names(cfg.media.prompts_dir)


def check(config_path: str, dialplan_dir: str) -> list[str]:
    from edge.io.cert_fetch import validate_stir
    from edge.io.tls import listener_errors

    try:
        cfg = load_config(config_path, [listener_errors])
    except ConfigError as exc:
        return exc.errors
    tf = read_config_file(config_path)
    errors = [str(tf.problem(p, reason)) for p, reason in validate_stir(cfg.stir)]
    if not Path(cfg.media.prompts_dir).is_dir():
        errors.append(str(tf.problem("$.media.prompts_dir", f"not a directory: {cfg.media.prompts_dir}")))
    try:
        plan, files = load_dialplans(dialplan_dir, {p.name for p in cfg.pbx}, prompts=prompt_names(cfg))
    except DialplanError as exc:
        return errors + exc.errors
    from edge.messaging.schema import compile_messaging

    errors += locate_lines(compile_messaging(files, cfg.messaging)[1])
    errors += asyncio.run(_lifecycle_conflicts(cfg, plan, dialplan_dir))
    return errors


def trust_report(config_path: str) -> list[str]:
    """`sip-edge check`'s account of the STIR trust directory (see trust_lines); nothing if the config fails."""
    try:
        cfg = load_config(config_path)
    except ConfigError:
        return []
    return trust_lines(cfg.stir)


def trust_lines(stir: StirConfig) -> list[str]:
    """What each certificate of the trust directory is: an anchor (self-signed CA) or chain material (used to
    build paths to an anchor, never trusted on its own). One `file: role: subject` line each."""
    from edge.io.cert_fetch import trust_files
    from edge.stir.certs import TrustStore

    if not stir.enabled or not stir.trust_dir or not Path(stir.trust_dir).is_dir():
        return []
    lines = []
    for path, data in trust_files(stir.trust_dir):
        try:
            entries = TrustStore.entries(data)
        except ValueError:
            continue  # reported as an error by check()
        for e in entries:
            role = "anchor (self-signed CA)" if e.role == "anchor" else f"chain material (issued by {e.issuer})"
            lines.append(f"{path}: {role}: {e.subject}")
    return lines


async def _lifecycle_conflicts(cfg: EdgeConfig, plan: Plan, dialplan_dir: str) -> list[str]:
    """A number both in a dialplan and released (in quarantine) is a conflict."""
    from edge.lifecycle.manager import conflicts
    from edge.lifecycle.record import NumberState
    from edge.store.factory import open_store

    if cfg.store.backend != "sqlite" or not Path(cfg.store.path).exists():
        return []
    store = await open_store(cfg.store)
    try:
        records = await store.list_numbers()
    finally:
        await store.close()
    released = [r.number for r in records if r.state is NumberState.RELEASED]
    entries = {e.key: e for e in plan.numbers() if e.exact}
    return [
        f"{e.file}:{e.line}:{e.col}: {e.path}: {c} is routed by a dialplan but released (in quarantine); remove it or reassign it with sip-edge numbers assign"
        for c in conflicts(released, list(entries))
        for e in (entries[c],)
    ]
