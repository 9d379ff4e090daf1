"""Replay speed: one ``Rate`` value for the mutually exclusive modes, and the ``Pacer`` that
turns it into absolute send deadlines (int64 CLOCK_MONOTONIC ns).

Every deadline is computed from the start time and a count (packets, bits or the file's own
timestamp offset), never by adding gaps to the previous deadline, so rounding cannot
accumulate: packet one billion is due exactly when it should be.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trafficgen.errors import Arg, ArgumentError

MODES = ("original", "multiplier", "pps", "mbps", "topspeed")
SLOWEST = {"pps": (1 / 86400, "one packet a day"), "mbps": (1e-5, "10 bit/s"),
           "multiplier": (1e-6, "a second of the file in 11.6 days")}
_LATEST_NS = 2**62  # deadlines saturate here (146 years) rather than wrap
UNITS = {"multiplier": "times the file's speed", "pps": "packets per second",
         "mbps": "megabits per second"}


def _joined(items: list, sep: str) -> list:
    out = []
    for k, item in enumerate(items):
        out += [sep, item] if k else [item]
    return out


@dataclass(frozen=True)
class Rate:
    """How fast to send.

    Parameters
    ----------
    mode : str
        ``"original"`` (the file's timing, the default), ``"multiplier"`` (its timing sped up
        ``value`` times), ``"pps"`` (``value`` packets/s), ``"mbps"`` (``value`` megabits/s of
        frame bytes) or ``"topspeed"`` (as fast as the interface takes them).
    value : float, optional
        The number ``multiplier``, ``pps`` and ``mbps`` need; none for the other two.

    Raises
    ------
    ArgumentError
        An unknown mode, or a value missing, out of range or given where none is taken; the
        message names the mode (``pps: expected a number above zero ...``).
    """

    mode: str = "original"
    value: float | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ArgumentError(Arg("mode"), f": expected one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode in ("original", "topspeed"):
            if self.value is not None:
                raise ArgumentError(Arg(self.mode), f": takes no value, got {self.value!r}")
            return
        v = self.value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ArgumentError(Arg(self.mode), f": expected a number above zero ({UNITS[self.mode]}), "
                                f"got {v!r}")
        if self.mode == "pps" and v > 1e9 or self.mode == "mbps" and v > 1e7:
            raise ArgumentError(Arg(self.mode), f": {v:g} is beyond any interface")
        if v < SLOWEST[self.mode][0]:  # the deadlines must stay within int64 nanoseconds
            raise ArgumentError(Arg(self.mode), f": {v:g} is slower than the slowest allowed, "
                                f"{SLOWEST[self.mode][0]:g} ({SLOWEST[self.mode][1]})")

    @classmethod
    def choose(cls, *, pps=None, mbps=None, multiplier=None, topspeed=False) -> "Rate":
        """The one rate given (at most one of them), or the file's own timing.

        Raises
        ------
        ArgumentError
            More than one given, or a value that is not a number above zero.
        """
        given = [(m, v) for m, v in (("pps", pps), ("mbps", mbps), ("multiplier", multiplier))
                 if v is not None] + ([("topspeed", None)] if topspeed else [])
        if len(given) > 1:
            names = [Arg(m) for m, _ in given]
            raise ArgumentError(*_joined(names, " and "), ": give at most one rate (",
                                Arg("pps"), ", ", Arg("mbps"), ", ", Arg("multiplier"), " or ",
                                Arg("topspeed"), ")")
        return cls(*given[0]) if given else cls()

    @property
    def timed(self) -> bool:
        """Whether packets have deadlines (everything but top speed)."""
        return self.mode != "topspeed"

    def describe(self) -> str:
        if self.mode == "original":
            return "the file's own timing"
        if self.mode == "topspeed":
            return "top speed"
        return {"multiplier": f"{self.value:g}x the file's timing",
                "pps": f"{self.value:,.0f} packets/s", "mbps": f"{self.value:g} Mbit/s"}[self.mode]

    def to_dict(self) -> dict:
        return {"mode": self.mode, "value": self.value}


class Pacer:
    """Deadlines for a stream of frames, chunk by chunk, from ``t0_ns`` on.

    ``loop_gap_ns`` separates one pass over a file from the next in the timed-by-file modes
    (call ``next_loop()`` between passes)."""

    def __init__(self, rate: Rate, t0_ns: int, loop_gap_ns: int = 0):
        self.rate, self.t0 = rate, int(t0_ns)
        self.index = 0  # packets scheduled so far
        self.bits = 0  # frame bits scheduled so far
        self.loop_base = 0  # ns offset of the current pass (file-timed modes)
        self.ts0: int | None = None  # the current pass's first timestamp
        self.rel = 0  # the latest offset scheduled in this pass (ns, unscaled)
        self.loop_gap = int(loop_gap_ns)
        self.last = self.t0  # the last deadline handed out

    def next_loop(self) -> None:
        if self.rate.mode in ("original", "multiplier"):
            self.loop_base += int(self._scaled(self.rel + self.loop_gap))
            self.ts0, self.rel = None, 0

    def _scaled(self, rel):
        if self.rate.mode == "multiplier":
            return np.minimum(np.floor(np.asarray(rel, np.float64) / self.rate.value),
                              _LATEST_NS).astype(np.int64)
        return np.asarray(rel, np.int64)

    def deadlines(self, ts: np.ndarray, length: np.ndarray) -> np.ndarray:
        """int64 deadlines of the next ``len(ts)`` frames (timestamps ns, lengths bytes)."""
        n = ts.shape[0]
        mode = self.rate.mode
        if mode == "topspeed":
            out = np.zeros(n, np.int64)
        elif mode == "pps":
            idx = np.arange(self.index, self.index + n, dtype=np.float64)
            out = self.t0 + np.floor(idx * (1e9 / self.rate.value)).astype(np.int64)
        elif mode == "mbps":
            bits = self.bits + np.concatenate(([0], np.cumsum(length[:-1], dtype=np.int64) * 8))
            out = self.t0 + np.floor(bits.astype(np.float64) * (1e3 / self.rate.value)).astype(np.int64)
            self.bits += int(length.sum()) * 8
        else:
            out = self._by_file(ts)
        self.index += n
        if n and mode != "topspeed":
            self.last = int(out[-1])
        return out

    def _by_file(self, ts: np.ndarray) -> np.ndarray:
        """Offsets from the pass's first timestamp; a timestamp that goes back (or is
        missing, -1) is sent right after the one before it."""
        if ts.shape[0] == 0:
            return np.empty(0, np.int64)
        if self.ts0 is None:
            first = ts[ts >= 0]
            self.ts0 = int(first[0]) if first.shape[0] else 0
        rel = np.maximum.accumulate(np.maximum(ts - self.ts0, self.rel))
        self.rel = int(rel[-1])
        return self.t0 + self.loop_base + self._scaled(rel)
