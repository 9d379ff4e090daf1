"""The ``[multimodal]`` keys of the voice and video sessions: each declared once (its check,
its default, its help), their parameter types made from them, and :data:`MEDIA_KEYS`, the four
keys the section adds to chat's. A table leaves out any key it likes (so
``-t 'multimodal.voice={dtx=false}'`` changes one key)."""
from __future__ import annotations

from typing import Any, Callable

from .keys import Key, allows, boolean, dist, params_class, subtable
from .units import parse_duration, parse_rate


def _num(lo: float, hi: float, whole: bool = False) -> Callable[[Any], float]:
    @allows(f"{lo:g} to {hi:g}", returns="int" if whole else "float")
    def conv(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (whole and not isinstance(v, int)):
            raise ValueError(f"expected a {'whole ' if whole else ''}number from {lo:g} to {hi:g}, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"must be from {lo:g} to {hi:g}, got {v!r}")
        return int(v) if whole else float(v)
    return conv


def _dur(lo_ns: int, hi_ns: int) -> Callable[[Any], int]:
    @allows(f"{lo_ns / 1e9:g}s to {hi_ns / 1e9:g}s")
    def conv(v) -> int:
        ns = parse_duration(v)
        if not lo_ns <= ns <= hi_ns:
            raise ValueError(f"must be from {lo_ns / 1e9:g}s to {hi_ns / 1e9:g}s, got {v!r}")
        return ns
    return conv



@allows("0/s to 10000/s")
def _rate(v) -> float:
    x = parse_rate(v)
    if not 0.0 <= x <= 1e4:
        raise ValueError(f"must be from 0/s to 10000/s, got {v!r}")
    return x


def _d(median: str | int, p90: str | int, lo: str | int, hi: str | int) -> dict:
    return {"median": median, "p90": p90, "min": lo, "max": hi}


VOICE_KEYS = (
    Key("rtp_share", _num(0.0, 1.0), 0.3, "share of sessions on RTP/Opus over UDP; the rest "
        "WebSocket over TLS"),
    Key("chunk", _dur(20 * 10**6, 200 * 10**6), "40ms", "audio per input_audio_buffer.append event"),
    Key("sample_rate", _num(8000, 48000, whole=True), 24000,
        "PCM16 mono samples per second (bit rate 16 x this)"),
    Key("down_chunk", _dur(20 * 10**6, 1000 * 10**6), "100ms", "audio per response.audio.delta event"),
    Key("down_speed", _num(0.5, 20.0), 1.5, "how much faster than real time the deltas come"),
    Key("session", dist("duration"), _d("90s", "6m", "5s", "30m"),
        "how long a session keeps starting exchanges"),
    Key("user_spurt", dist("duration"), _d("2.5s", "7s", "300ms", "60s"), "user speech per exchange"),
    Key("model_spurt", dist("duration"), _d("5s", "14s", "500ms", "90s"), "model audio per answer"),
    Key("latency", dist("duration"), _d("800ms", "1.6s", "300ms", "10s"),
        "from the end of user speech to the first answer audio at the server"),
    Key("pause", dist("duration"), _d("1s", "5s", "100ms", "120s"),
        "from the end of the answer's playback to the user's next spurt"),
    Key("barge_in", _num(0.0, 1.0), 0.1, "probability the user speaks into the answer (cutting it)"),
    Key("opus_bytes", dist("bytes"), _d(80, 110, 20, 400), "Opus payload bytes of a 20 ms speech frame"),
    Key("silence_bytes", _num(1, 1275, whole=True), 3,
        "Opus payload bytes of a silence (comfort noise) frame"),
    Key("dtx", boolean, True, "discontinuous transmission: one silence frame per 400 ms, not per 20 ms"),
    Key("rtp_port", _num(1024, 65535, whole=True), 49170, "the media server's UDP port"),
    Key("jitter", _dur(0, 10 * 10**6), "2ms",
        "the far side's RTP packets arrive up to this much late (uniform)"),
    Key("input_tokens_per_s", _num(0.0, 1000.0), 10.0, "audio tokens per second of user speech"),
    Key("output_tokens_per_s", _num(0.0, 1000.0), 20.0, "audio tokens per second of model audio"),
)
VIDEO_KEYS = (
    Key("fps", _num(0.05, 30.0), 1.0, "frames sent per second"),
    Key("frame_bytes", dist("bytes"), _d("60KB", "120KB", "5KB", "1MB"),
        "JPEG bytes per frame (before base64)"),
    Key("session", dist("duration"), _d("2m", "8m", "10s", "30m"), "how long a session lasts"),
    Key("reply_every", dist("duration"), _d("15s", "45s", "2s", "10m"), "between the model's replies"),
    Key("reply_tokens", dist("count"), _d(40, 150, 1, 2000), "text tokens per reply"),
    Key("latency", dist("duration"), _d("700ms", "1.5s", "200ms", "10s"),
        "from the frame that prompts a reply to its first delta"),
    Key("tokens_per_frame", _num(0, 100_000, whole=True), 258, "prompt tokens per frame (Gemini: 258)"),
)

VoiceParams = params_class("VoiceParams", VOICE_KEYS, "``multimodal.voice``: realtime voice "
                           "sessions (models/multimodal.toml, classes/media.py).", __name__)
VideoParams = params_class("VideoParams", VIDEO_KEYS, "``multimodal.video``: sampled video "
                           "frames over a WebSocket (classes/media.py).", __name__)

MEDIA_KEYS = (
    Key("voice_rate", _rate, 0, "voice sessions per second (Poisson; 0: none)"),
    Key("voice", subtable(VOICE_KEYS, VoiceParams), {}, "the voice sessions (keys: multimodal.voice)"),
    Key("video_rate", _rate, 0, "video sessions per second (Poisson; 0: none)"),
    Key("video", subtable(VIDEO_KEYS, VideoParams), {}, "the video sessions (keys: multimodal.video)"),
)
