"""The ``[multimodal]`` keys of the voice and video sessions: their parameter types, how each
key is checked, and the defaults a table leaves out (so ``-t 'multimodal.voice={dtx=false}'``
changes one key). ``config.py`` adds :data:`SPEC` and :data:`DEFAULTS` to the section."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .dist import Dist, parse_dist
from .units import parse_duration, parse_rate


@dataclass(frozen=True)
class VoiceParams:
    """``multimodal.voice``: realtime voice sessions (models/multimodal.toml, models/media.py)."""

    rtp_share: float  # sessions on RTP/Opus over UDP; the rest WebSocket over TLS
    chunk: int  # ns of audio per input_audio_buffer.append event
    sample_rate: int  # PCM16 mono samples per second (bit rate 16 x this)
    down_chunk: int  # ns of audio per response.audio.delta event
    down_speed: float  # how much faster than real time the deltas come
    session: Dist  # ns, how long a session keeps starting exchanges
    user_spurt: Dist  # ns of user speech per exchange
    model_spurt: Dist  # ns of model audio per answer
    latency: Dist  # ns from the end of user speech to the first answer audio at the server
    pause: Dist  # ns from the end of the answer's playback to the user's next spurt
    barge_in: float  # probability the user speaks into the answer (cutting it)
    opus_bytes: Dist  # Opus payload bytes of a 20 ms speech frame
    silence_bytes: int  # Opus payload bytes of a silence (comfort noise) frame
    dtx: bool  # discontinuous transmission: one silence frame per 400 ms, not per 20 ms
    rtp_port: int  # the media server's UDP port
    jitter: int  # ns: the far side's RTP packets arrive up to this much late (uniform)
    input_tokens_per_s: float  # audio tokens per second of user speech
    output_tokens_per_s: float  # audio tokens per second of model audio


@dataclass(frozen=True)
class VideoParams:
    """``multimodal.video``: sampled video frames over a WebSocket (models/media.py)."""

    fps: float  # frames sent per second
    frame_bytes: Dist  # JPEG bytes per frame (before base64)
    session: Dist  # ns
    reply_every: Dist  # ns between the model's replies
    reply_tokens: Dist  # text tokens per reply
    latency: Dist  # ns from the frame that prompts a reply to its first delta
    tokens_per_frame: int  # prompt tokens per frame (Gemini: 258)


def _num(lo: float, hi: float, whole: bool = False) -> Callable[[Any], float]:
    def conv(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (whole and not isinstance(v, int)):
            raise ValueError(f"expected a {'whole ' if whole else ''}number from {lo:g} to {hi:g}, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"must be from {lo:g} to {hi:g}, got {v!r}")
        return int(v) if whole else float(v)
    return conv


def _dur(lo_ns: int, hi_ns: int) -> Callable[[Any], int]:
    def conv(v):
        ns = parse_duration(v)
        if not lo_ns <= ns <= hi_ns:
            raise ValueError(f"must be from {lo_ns / 1e9:g}s to {hi_ns / 1e9:g}s, got {v!r}")
        return ns
    return conv


def _bool(v) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def _rate(v) -> float:
    x = parse_rate(v)
    if not 0.0 <= x <= 1e4:
        raise ValueError(f"must be from 0/s to 10000/s, got {v!r}")
    return x


def _d(unit: str, positive: bool = True) -> Callable[[Any], Dist]:
    return lambda v: parse_dist(v, unit, positive)


VOICE_KEYS: dict[str, Callable[[Any], Any]] = {
    "rtp_share": _num(0.0, 1.0), "chunk": _dur(20 * 10**6, 200 * 10**6),
    "sample_rate": _num(8000, 48000, whole=True), "down_chunk": _dur(20 * 10**6, 1000 * 10**6),
    "down_speed": _num(0.5, 20.0), "session": _d("duration"), "user_spurt": _d("duration"),
    "model_spurt": _d("duration"), "latency": _d("duration"), "pause": _d("duration"),
    "barge_in": _num(0.0, 1.0), "opus_bytes": _d("bytes"), "silence_bytes": _num(1, 1275, whole=True),
    "dtx": _bool, "rtp_port": _num(1024, 65535, whole=True), "jitter": _dur(0, 10 * 10**6),
    "input_tokens_per_s": _num(0.0, 1000.0), "output_tokens_per_s": _num(0.0, 1000.0),
}
VOICE_DEFAULTS = {
    "rtp_share": 0.3, "chunk": "40ms", "sample_rate": 24000, "down_chunk": "100ms",
    "down_speed": 1.5, "session": {"median": "90s", "p90": "6m", "min": "5s", "max": "30m"},
    "user_spurt": {"median": "2.5s", "p90": "7s", "min": "300ms", "max": "60s"},
    "model_spurt": {"median": "5s", "p90": "14s", "min": "500ms", "max": "90s"},
    "latency": {"median": "800ms", "p90": "1.6s", "min": "300ms", "max": "10s"},
    "pause": {"median": "1s", "p90": "5s", "min": "100ms", "max": "120s"},
    "barge_in": 0.1, "opus_bytes": {"median": 80, "p90": 110, "min": 20, "max": 400},
    "silence_bytes": 3, "dtx": True, "rtp_port": 49170, "jitter": "2ms",
    "input_tokens_per_s": 10.0, "output_tokens_per_s": 20.0,
}
VIDEO_KEYS: dict[str, Callable[[Any], Any]] = {
    "fps": _num(0.05, 30.0), "frame_bytes": _d("bytes"), "session": _d("duration"),
    "reply_every": _d("duration"), "reply_tokens": _d("count"), "latency": _d("duration"),
    "tokens_per_frame": _num(0, 100_000, whole=True),
}
VIDEO_DEFAULTS = {
    "fps": 1.0, "frame_bytes": {"median": "60KB", "p90": "120KB", "min": "5KB", "max": "1MB"},
    "session": {"median": "2m", "p90": "8m", "min": "10s", "max": "30m"},
    "reply_every": {"median": "15s", "p90": "45s", "min": "2s", "max": "10m"},
    "reply_tokens": {"median": 40, "p90": 150, "min": 1, "max": 2000},
    "latency": {"median": "700ms", "p90": "1.5s", "min": "200ms", "max": "10s"},
    "tokens_per_frame": 258,
}


def _table(keys: dict, defaults: dict, ptype: type) -> Callable[[Any], Any]:
    """A sub-table of named keys; keys left out take ``defaults``. A bad value names its key."""
    def conv(v):
        if not isinstance(v, dict):
            raise ValueError(f"expected a table with keys of: {', '.join(keys)}, got {v!r}")
        for k in v:
            if k not in keys:
                raise ValueError(f"unknown key {k!r} (allowed: {', '.join(keys)})")
        out = {}
        for k, c in keys.items():
            try:
                out[k] = c(v.get(k, defaults[k]))
            except ValueError as e:
                raise ValueError(f"{k}: {e}") from None
        return ptype(**out)
    return conv


SPEC: dict[str, Callable[[Any], Any]] = {
    "voice_rate": _rate, "voice": _table(VOICE_KEYS, VOICE_DEFAULTS, VoiceParams),
    "video_rate": _rate, "video": _table(VIDEO_KEYS, VIDEO_DEFAULTS, VideoParams),
}
DEFAULTS = {"voice_rate": 0, "voice": {}, "video_rate": 0, "video": {}}
