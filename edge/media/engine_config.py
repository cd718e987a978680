"""The `[media]` section of edge.toml: RTP ports, timers, prompt and voicemail locations.

Durations are strings with units (`"30s"`, `"500ms"`, `"2m"`) so the unit is visible
where an operator edits it; `validate` returns (json-path, reason) pairs for `sip-edge check`.
"""

from __future__ import annotations

import ipaddress

import msgspec

from edge.units import parse_duration



class InbandDtmfConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    enabled: bool = True
    min_level_dbm0: float = -36.0  # per-tone floor
    max_normal_twist_db: float = 8.0
    max_reverse_twist_db: float = 4.0
    min_duration: str = "30ms"


class RecordingConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    max_length: str = "120s"
    silence_rms: float = 400.0
    silence_timeout: str = "5s"


class MediaConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    bind_ip: str = "127.0.0.1"
    advertise_ip: str = ""  # address written into SDP c=; empty = bind_ip
    rtp_port_min: int = 20000
    rtp_port_max: int = 29999
    max_sessions: int = 2000
    codecs: list[str] = msgspec.field(default_factory=lambda: ["PCMU", "PCMA"])
    telephone_event_pt: int = 101
    media_timeout: str = "30s"
    early_media_rtp_wait: str = "3s"  # no caller RTP within this in early-media mode -> answer instead
    rtcp_interval: str = "5s"
    send_silence: bool = True
    max_catchup_frames: int = 5  # pacer stalls longer than this many 20 ms periods are skipped
    pacer_slots: int = 4  # phases of the 20 ms period: with k, a wake-up every 20/k ms sends 1/k of the sessions
    # (4: a burst of 1,000 sessions' packets takes ~10 ms to send; a quarter of it keeps receivers' jitter low)
    jitter_window: int = 4096  # pacer lateness samples kept for p50/p99
    prompts_dir: str = "config/prompts"
    voicemail_dir: str = "var/voicemail"
    prompt_cache_frames: int = 500_000  # ~2.8 h of audio in both laws (~160 MB max)
    inband_dtmf: InbandDtmfConfig = InbandDtmfConfig()
    recording: RecordingConfig = RecordingConfig()

    @property
    def sdp_ip(self) -> str:
        return self.advertise_ip or self.bind_ip


def validate(config: MediaConfig, path: str = "$.media") -> list[tuple[str, str]]:
    """Every problem as (json-path, reason); empty when the section is usable."""
    errors: list[tuple[str, str]] = []
    for key in ("bind_ip", "advertise_ip"):
        value = getattr(config, key)
        if value or key == "bind_ip":
            try:
                ipaddress.ip_address(value)
            except ValueError:
                errors.append((f"{path}.{key}", f"not an IP address: {value!r}"))
    if not 1024 <= config.rtp_port_min < config.rtp_port_max <= 65535:
        errors.append((f"{path}.rtp_port_min", "need 1024 <= rtp_port_min < rtp_port_max <= 65535"))
    elif (config.rtp_port_max - config.rtp_port_min) < 3:
        errors.append((f"{path}.rtp_port_max", "range holds fewer than two RTP/RTCP pairs"))
    if config.max_sessions < 1:
        errors.append((f"{path}.max_sessions", "must be >= 1"))
    if not config.codecs:
        errors.append((f"{path}.codecs", "list at least one of PCMU, PCMA"))
    for i, name in enumerate(config.codecs):
        if name.upper() not in ("PCMU", "PCMA"):
            errors.append((f"{path}.codecs[{i}]", f"unsupported codec {name!r} (PCMU, PCMA)"))
    if not 96 <= config.telephone_event_pt <= 127:
        errors.append((f"{path}.telephone_event_pt", "dynamic payload type must be 96..127"))
    limits = {"media_timeout": (1.0, 3600.0), "early_media_rtp_wait": (0.1, 60.0), "rtcp_interval": (1.0, 60.0)}
    for key, (low, high) in limits.items():
        _check_duration(errors, f"{path}.{key}", getattr(config, key), low, high)
    _check_duration(errors, f"{path}.inband_dtmf.min_duration", config.inband_dtmf.min_duration, 0.02, 0.2)
    _check_duration(errors, f"{path}.recording.max_length", config.recording.max_length, 1.0, 3600.0)
    _check_duration(errors, f"{path}.recording.silence_timeout", config.recording.silence_timeout, 0.5, 600.0)
    if not 0 < config.recording.silence_rms < 32768:
        errors.append((f"{path}.recording.silence_rms", "must be between 0 and 32767"))
    if not 1 <= config.max_catchup_frames <= 50:
        errors.append((f"{path}.max_catchup_frames", "must be 1..50"))
    if not 1 <= config.pacer_slots <= 20:
        errors.append((f"{path}.pacer_slots", "must be 1..20 (a wake-up every 20 ms down to every 1 ms)"))
    if not 64 <= config.jitter_window <= 1_000_000:
        errors.append((f"{path}.jitter_window", "must be 64..1000000"))
    if config.prompt_cache_frames < 1000:
        errors.append((f"{path}.prompt_cache_frames", "must be >= 1000"))
    for key in ("prompts_dir", "voicemail_dir"):
        if not getattr(config, key):
            errors.append((f"{path}.{key}", "must not be empty"))
    return errors


def _check_duration(errors: list[tuple[str, str]], path: str, text: str, low: float, high: float) -> None:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        errors.append((path, str(exc)))
        return
    if not low <= value <= high:
        errors.append((path, f"must be between {low:g}s and {high:g}s"))
