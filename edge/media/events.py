"""What a media session reports, in one vocabulary for the engine, the call layer and the flows.

The session emits these as past-tense frozen Structs and the screening flows consume the very
same objects: no second set of look-alike events and no hand mapping between them. A playlist
is named by the flow that asked for it (`Play.playlist_id`), so PlaybackFinished/Progress carry
that name back unchanged.
"""

from __future__ import annotations

import enum

import msgspec

Address = tuple[str, int]


class DtmfSource(enum.Enum):
    RFC4733 = "rfc4733"
    INFO = "info"
    INBAND = "inband"


class DtmfReceived(msgspec.Struct, frozen=True):
    """A digit pressed by the remote party, reported once per key press: '0'-'9', '*', '#'
    (A-D are passed through and treated as invalid keys by the flows)."""

    digit: str
    source: DtmfSource = DtmfSource.RFC4733
    at: float = 0.0
    duration_ms: int = 0
    volume_dbm0: int = 0


class PlaybackFinished(msgspec.Struct, frozen=True):
    """The whole playlist has been played, or it was stopped (`interrupted`)."""

    playlist_id: str
    at: float = 0.0
    interrupted: bool = False


class PlaybackProgress(msgspec.Struct, frozen=True):
    """Item `item_index` of a playlist has been played out (a captcha knows its digits were spoken)."""

    playlist_id: str
    item_index: int
    at: float = 0.0


class MediaTimedOut(msgspec.Struct, frozen=True):
    """No RTP from the remote for `silent_for` seconds: hang the call up and record why."""

    at: float = 0.0
    silent_for: float = 0.0


class RemoteLatched(msgspec.Struct, frozen=True):
    """Symmetric RTP: outbound media now goes where the remote's RTP comes from."""

    address: Address
    at: float


__all__ = ["Address", "DtmfReceived", "DtmfSource", "MediaTimedOut", "PlaybackFinished", "PlaybackProgress", "RemoteLatched"]
