"""asyncio adapter for the media engine: UDP sockets from the port pool, the one shared
20 ms timer that paces every session, prompt files read from disk and voicemail WAVs
written in a worker thread. The sans-IO pieces live in edge/media/.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Callable, Sequence

import structlog

from edge.media.clock import PERIOD, PacedSessions, Pacer
from edge.media.codecs import Codec
from edge.media.dtmf import DtmfReceived, InbandSettings, parse_info_body
from edge.media.engine_config import MediaConfig
from edge.units import parse_duration
from edge.media.ports import PoolExhausted, PortPool
from edge.media.prompts import BUILTIN_PROMPT_NAMES, PROMPT_SUFFIXES, Prompt, PromptError, PromptLibrary, builtin_prompts, prompt_from_bytes
from edge.media.recorder import RecorderSettings, RecordingFinished, RecordingStopReason, VoicemailRecorder, wav_bytes
from edge.media.relay import Bridge
from edge.media.sdp import Offer, Refusal, accept_answer, make_offer, negotiate
from edge.media.session import MediaEvent, MediaSession, SessionSettings, SessionState

log = structlog.get_logger()

__all__ = ["MediaEngine", "MediaSessionProtocol", "NotAcceptable", "PoolExhausted", "load_prompt_file"]

BIND_ATTEMPTS = 8


class NotAcceptable(Exception):
    """The offer cannot be served: answer 488 Not Acceptable Here with `reason` in a Warning."""

    def __init__(self, reason: str, status: int = 488) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def prompt_files(directory: str) -> list[Path]:
    """The audio files the engine loads from a prompts directory (none when it is missing)."""
    root = Path(directory)
    return sorted(p for p in root.iterdir() if p.suffix.lower() in PROMPT_SUFFIXES) if root.is_dir() else []


def prompt_names(directory: str) -> set[str]:
    """Every prompt name playback can resolve: the built-in tones plus the directory's files."""
    return set(BUILTIN_PROMPT_NAMES) | {p.stem for p in prompt_files(directory)}


def load_prompt_file(path: Path, max_seconds: float = 600.0) -> Prompt:
    """Read and decode one prompt file (blocking: call at startup or via asyncio.to_thread)."""
    return prompt_from_bytes(path.stem, path.read_bytes(), max_seconds)


def _write_file(path: str, data: bytes) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, target)


class _RtcpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: MediaSessionProtocol) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.owner.session.receive_rtcp(data, (addr[0], addr[1]), self.owner.engine.loop.time())


class MediaSessionProtocol(asyncio.DatagramProtocol):
    """One call leg's RTP socket around a sans-IO MediaSession; the handle the call layer uses."""

    def __init__(self, engine: MediaEngine, session: MediaSession) -> None:
        self.engine = engine
        self.session = session
        self.transport: asyncio.DatagramTransport | None = None
        self.rtcp: _RtcpProtocol | None = None
        self.on_event: Callable[[MediaEvent], None] | None = None
        self.offer: Offer | None = None
        self.log = log.bind(rtp_port=session.local_port, leg=session.name)

    # -- asyncio ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        session = self.session
        packet = session.receive_rtp(data, (addr[0], addr[1]), self.engine.loop.time())
        if packet is not None and session.bridge is not None:
            out = session.bridge.forward(session, packet)  # type: ignore[attr-defined]
            if out is not None:
                target, datagram = out
                self.engine.send_for(target, datagram)
        if session.has_events:  # most packets raise none: skip the drain
            self.dispatch()

    def error_received(self, exc: Exception) -> None:
        self.log.debug("rtp_socket_error", error=str(exc))

    # -- the call layer's API --------------------------------------------------------------
    @property
    def local_port(self) -> int:
        return self.session.local_port

    def accept_answer(self, answer_sdp: str | bytes) -> None:
        """Delayed offer / B-leg: apply the answer (from ACK, PRACK or the PBX's 200)."""
        if self.offer is None:
            raise NotAcceptable("no offer outstanding on this session")
        result = accept_answer(self.offer, answer_sdp)
        if isinstance(result, Refusal):
            raise NotAcceptable(result.reason, result.status)
        self.session.set_remote(result, self.engine.loop.time())
        self.offer = None

    def play(self, items: Sequence[str | Prompt | Sequence[bytes]], interrupt: bool = True, playlist_id: str = "") -> str:
        """Queue prompts by name (or Prompt / raw payload lists); PlaybackFinished reports the id."""
        resolved = [self.engine.prompt(item) if isinstance(item, str) else item for item in items]
        playlist_id = self.session.play(resolved, self.engine.loop.time(), interrupt, playlist_id)
        self.dispatch()
        return playlist_id

    def stop_playback(self) -> None:
        self.session.stop_playback(self.engine.loop.time())
        self.dispatch()

    def send_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        self.session.send_dtmf(digit, duration_ms)

    def feed_info_dtmf(self, body: bytes | str, content_type: str) -> DtmfReceived | None:
        """A SIP INFO carrying DTMF on this call: delivered to on_event like any other digit."""
        event = parse_info_body(body, content_type, self.engine.loop.time())
        if event is not None:
            self.session.push_event(event)
            self.dispatch()
        return event

    def start_recording(
        self, path: str | None = None, max_seconds: float | None = None, silence_seconds: float | None = None
    ) -> str:
        """Record inbound audio; RecordingFinished arrives after the WAV is on disk."""
        cfg = self.engine.recorder_settings
        settings = RecorderSettings(
            max_seconds=max_seconds if max_seconds is not None else cfg.max_seconds,
            silence_rms=cfg.silence_rms,
            silence_seconds=silence_seconds if silence_seconds is not None else cfg.silence_seconds,
        )
        target = path or str(Path(self.engine.config.voicemail_dir) / f"{uuid.uuid4().hex}.wav")
        self.session.start_recording(VoicemailRecorder(target, settings, self.engine.loop.time()))
        return target

    def stop_recording(self) -> None:
        self.session.stop_recording(RecordingStopReason.STOPPED, self.engine.loop.time())
        self.dispatch()

    def bridge(self, other: MediaSessionProtocol) -> Bridge:
        """Relay RTP between this leg and `other` (anchored media) until unbridged or closed."""
        bridge = Bridge(self.session, other.session, self.engine.loop.time())
        self.dispatch()
        other.dispatch()
        return bridge

    def unbridge(self) -> None:
        bridge = self.session.bridge
        if isinstance(bridge, Bridge):
            bridge.unbridge()

    def close(self) -> None:
        if self.session.state is SessionState.CLOSED:
            return
        self.unbridge()
        bye = self.session.close(self.engine.loop.time())
        if self.rtcp is not None and self.rtcp.transport is not None and self.session.remote_rtcp is not None:
            self.rtcp.transport.sendto(bye, self.session.remote_rtcp)
        self.dispatch()
        self.engine.release(self)

    # -- events ----------------------------------------------------------------------------
    def dispatch(self) -> None:
        for event in self.session.drain_events():
            if isinstance(event, RecordingFinished):
                self.engine.spawn(self._finish_recording(event))
            else:
                self._deliver(event)

    def _deliver(self, event: MediaEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # a faulty callback must not stop the shared pacer
            self.log.exception("media_event_callback_failed", media_event=type(event).__name__)

    async def _finish_recording(self, event: RecordingFinished) -> None:
        recorder = self.session.recorder
        pcm = recorder.take_pcm() if recorder is not None else b""
        try:
            await asyncio.to_thread(_write_file, event.path, wav_bytes(pcm))
            self.log.info("voicemail_recorded", path=event.path, seconds=event.seconds, reason=event.reason.value)
        except OSError as exc:
            self.log.error("voicemail_write_failed", path=event.path, error=str(exc))
        self._deliver(event)


class MediaEngine:
    """Facade for the call layer: open sessions (SDP in, SDP out), prompts, the shared pacer."""

    def __init__(self, config: MediaConfig, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.config = config
        self.loop = loop or asyncio.get_event_loop()
        self.pool = PortPool(config.rtp_port_min, config.rtp_port_max)
        self.prompts = PromptLibrary(config.prompt_cache_frames)
        for prompt in builtin_prompts():
            self.prompts.add(prompt)
        inband = config.inband_dtmf
        self.session_settings = SessionSettings(
            media_timeout=parse_duration(config.media_timeout),
            send_silence=config.send_silence,
            inband_dtmf=inband.enabled,
            inband=InbandSettings(
                # two tones of amplitude A have mean square A^2; a full-scale sine is +3.17 dBm0
                min_energy=(32767 * 10 ** ((inband.min_level_dbm0 - 3.17) / 20)) ** 2,
                max_normal_twist_db=inband.max_normal_twist_db,
                max_reverse_twist_db=inband.max_reverse_twist_db,
                min_hits=max(1, round((parse_duration(inband.min_duration) * 1000 - 20) / 10) + 1),
            ),
            rtcp_interval=parse_duration(config.rtcp_interval),
        )
        self.recorder_settings = RecorderSettings(
            max_seconds=parse_duration(config.recording.max_length),
            silence_rms=config.recording.silence_rms,
            silence_seconds=parse_duration(config.recording.silence_timeout),
        )
        self.codecs = tuple(Codec[name.upper()] for name in config.codecs)
        self.sessions: dict[int, MediaSessionProtocol] = {}
        self.pacer: Pacer | None = None
        self.paced: PacedSessions[MediaSessionProtocol] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self._rng = random.SystemRandom()
        self.refused_total = 0
        # End of each tick's send burst vs its deadline: the lateness of the last packet sent.
        self.burst_lateness: deque[float] = deque(maxlen=config.jitter_window)

    # -- prompts ---------------------------------------------------------------------------
    async def load_prompts(self, directory: str | None = None) -> list[str]:
        """Decode every prompt file in the directory once (worker thread); returns loaded names."""
        paths = prompt_files(directory or self.config.prompts_dir)
        loaded = []
        for path in paths:
            try:
                self.prompts.add(await asyncio.to_thread(load_prompt_file, path))
                loaded.append(path.stem)
            except (PromptError, OSError) as exc:
                log.warning("prompt_load_failed", path=str(path), error=str(exc))
        return loaded

    async def ensure_prompt(self, name_or_path: str) -> Prompt:
        """A customer greeting named in the dialplan: cached, else decoded from disk once."""
        cached = self.prompts.get(name_or_path)
        if cached is not None:
            return cached
        path = Path(name_or_path)
        if not path.is_absolute():
            path = Path(self.config.prompts_dir) / path
        candidates = [path] if path.suffix else [path.with_suffix(s) for s in PROMPT_SUFFIXES]
        for candidate in candidates:
            if candidate.is_file():
                prompt = await asyncio.to_thread(load_prompt_file, candidate)
                prompt = Prompt(name_or_path, prompt.pcmu, prompt.pcma)
                self.prompts.add(prompt)
                return prompt
        raise KeyError(f"prompt not found: {name_or_path}")

    def prompt(self, name: str) -> Prompt:
        prompt = self.prompts.get(name)
        if prompt is None:
            raise KeyError(f"prompt not loaded: {name}")
        return prompt

    # -- sessions --------------------------------------------------------------------------
    async def open(self, remote_sdp: str | bytes | None, *, name: str = "") -> tuple[MediaSessionProtocol, str]:
        """Answer an offer (or, with None, make the offer for a delayed-offer INVITE).

        Raises NotAcceptable (488) for an offer we cannot serve, PoolExhausted (503) when
        no RTP port pair or session slot is free.
        """
        if remote_sdp is not None:
            # Negotiate before taking a port so refusals cost nothing.
            probe = negotiate(remote_sdp, self.config.sdp_ip, 0, codecs=self.codecs)
            if isinstance(probe, Refusal):
                self.refused_total += 1
                raise NotAcceptable(probe.reason, probe.status)
        proto = await self._bind(name)
        session_id = self._rng.getrandbits(31)
        if remote_sdp is None:
            proto.offer = make_offer(
                self.config.sdp_ip,
                proto.local_port,
                codecs=self.codecs,
                telephone_event_pt=self.config.telephone_event_pt,
                session_id=session_id,
            )
            return proto, proto.offer.sdp
        answer = negotiate(remote_sdp, self.config.sdp_ip, proto.local_port, codecs=self.codecs, session_id=session_id)
        assert not isinstance(answer, Refusal)
        proto.session.set_remote(answer.media, self.loop.time())
        return proto, answer.sdp

    async def open_offer(self, *, name: str = "b-leg") -> tuple[MediaSessionProtocol, str]:
        """Session plus SDP offer for the B-leg INVITE toward the PBX; then `accept_answer`."""
        return await self.open(None, name=name)

    async def _bind(self, name: str) -> MediaSessionProtocol:
        if len(self.sessions) >= self.config.max_sessions:
            self.pool.exhausted_total += 1
            raise PoolExhausted(f"max_sessions {self.config.max_sessions} reached")
        for _ in range(BIND_ATTEMPTS):
            port = self.pool.allocate()
            now = self.loop.time()
            session = MediaSession(
                local_port=port,
                ssrc=self._rng.getrandbits(32),
                initial_seq=self._rng.getrandbits(16),
                initial_timestamp=self._rng.getrandbits(32),
                now=now,
                settings=self.session_settings,
                name=name,
            )
            proto = MediaSessionProtocol(self, session)
            try:
                await self.loop.create_datagram_endpoint(lambda: proto, local_addr=(self.config.bind_ip, port))
            except OSError:
                self.pool.quarantine(port)
                continue
            rtcp = _RtcpProtocol(proto)
            try:
                await self.loop.create_datagram_endpoint(lambda: rtcp, local_addr=(self.config.bind_ip, port + 1))
            except OSError:
                if proto.transport is not None:
                    proto.transport.close()
                self.pool.quarantine(port)
                continue
            proto.rtcp = rtcp
            self.sessions[port] = proto
            self._ensure_pacer()
            assert self.paced is not None
            self.paced.add(session, proto)
            return proto
        self.pool.exhausted_total += 1
        raise PoolExhausted(f"could not bind an RTP port pair after {BIND_ATTEMPTS} attempts")

    def release(self, proto: MediaSessionProtocol) -> None:
        port = proto.session.local_port
        if self.sessions.pop(port, None) is None:
            return
        if self.paced is not None:
            self.paced.remove(proto.session)
        for transport in (proto.transport, proto.rtcp.transport if proto.rtcp else None):
            if transport is not None:
                transport.close()
        self.pool.release(port)

    def send_for(self, session: MediaSession, datagram: bytes) -> None:
        proto = self.sessions.get(session.local_port)
        if proto is not None and proto.transport is not None and session.remote is not None:
            proto.transport.sendto(datagram, session.remote)

    def spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        for proto in list(self.sessions.values()):
            proto.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the shared clock ------------------------------------------------------------------
    def _ensure_pacer(self) -> None:
        if self._timer is None:
            slots = self.config.pacer_slots
            self.pacer = Pacer(time.monotonic(), period=PERIOD / slots,
                               max_catchup=self.config.max_catchup_frames * slots, samples=self.config.jitter_window)
            self.paced = PacedSessions(self.pacer, slots)
            for proto in self.sessions.values():
                self.paced.add(proto.session, proto)
            self._timer = self.loop.call_at(self.pacer.next_deadline, self._on_tick)

    def _on_tick(self) -> None:
        """Send the burst the core computed for this period, then events; re-arm at the absolute deadline."""
        paced = self.paced
        assert paced is not None
        # time.monotonic, not loop.time: uvloop caches loop time per iteration at 1 ms resolution.
        deadline = paced.next_deadline
        out = paced.tick(time.monotonic(), time.time())
        for proto, datagram, addr in out.rtp:
            proto.transport.sendto(datagram, addr)  # type: ignore[union-attr]  # set before the session is paced
        if out.frames:
            self.burst_lateness.append(time.monotonic() - deadline)
        for proto, report, addr in out.rtcp:
            if proto.rtcp is not None and proto.rtcp.transport is not None:
                proto.rtcp.transport.sendto(report, addr)
        for proto in out.events:
            proto.dispatch()
        if self.sessions:
            self._timer = self.loop.call_at(paced.next_deadline, self._on_tick)
        else:
            self._timer = None
            self.pacer = None
            self.paced = None

    def stats(self) -> dict[str, float]:
        p50, p99 = self.pacer.lateness_percentiles(0.5, 0.99) if self.pacer else (0.0, 0.0)
        bursts = sorted(self.burst_lateness)
        last_p99 = bursts[int(0.99 * (len(bursts) - 1))] if bursts else 0.0
        return {
            "last_packet_lateness_p99_ms": last_p99 * 1000,
            "sessions": len(self.sessions),
            "ports_available": self.pool.available,
            "pool_exhausted_total": self.pool.exhausted_total,
            "sdp_refused_total": self.refused_total,
            "pacer_lateness_p50_ms": p50 * 1000,
            "pacer_lateness_p99_ms": p99 * 1000,
            "pacer_skipped_total": self.pacer.skipped_total if self.pacer else 0,  # wake-ups' worth (one phase each)
            "pacer_slots": self.config.pacer_slots,
        }
