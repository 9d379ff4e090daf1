"""Parsing of values with units: durations, rates, bandwidths and byte sizes.

Each parser takes a TOML value (number or string) and returns a plain number in base units
(int nanoseconds, float per second, float bits per second, int bytes), or raises ``ValueError``
with a message saying what is allowed. Nothing here knows about files or keys: config.py adds
those to the message.
"""
from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_EVEN, Decimal

_NUM = r"([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)"

_DURATION_UNITS = {
    "ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
    "m": 60_000_000_000, "min": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000,
}
_RATE_UNITS = {"s": 1.0, "sec": 1.0, "m": 1 / 60, "min": 1 / 60, "h": 1 / 3600, "d": 1 / 86400}
_BW_UNITS = {"bps": 1.0, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9, "tbps": 1e12}
_SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
               "kib": 1024, "mib": 1024**2, "gib": 1024**3}

_DURATION_RE = re.compile(rf"^\s*{_NUM}\s*(ns|us|µs|ms|s|min|m|h|d)?\s*$")  # no unit: seconds
_RATE_RE = re.compile(rf"^\s*{_NUM}\s*/\s*(s|sec|min|m|h|d)\s*$")
_BW_RE = re.compile(rf"^\s*{_NUM}\s*([kmgt]?bps)\s*$", re.IGNORECASE)
_SIZE_RE = re.compile(rf"^\s*{_NUM}\s*([kmg]i?b|b)?\s*$", re.IGNORECASE)

DURATION_HELP = "a duration like '90s', '5m', '1h', '250ms' or a number of seconds"
RATE_HELP = "a rate like '40/s', '2000/min', '10/h' or a number per second"
BANDWIDTH_HELP = "a bandwidth like '1Gbps', '100Mbps' or a number of bits per second"
SIZE_HELP = "a size like '1500', '64KiB', '2MB' (bytes)"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(x: float, what: str) -> float:
    if not math.isfinite(x):
        raise ValueError(f"expected {what}, got a non-finite number")
    return x


def parse_duration(value) -> int:
    """Duration to int nanoseconds (>= 0). Numbers, and numbers written without a unit
    (``"60"``, as a command line gives them), are seconds."""
    if _is_number(value):
        seconds = _finite(float(value), DURATION_HELP)
        if seconds < 0:
            raise ValueError(f"expected {DURATION_HELP} (not negative), got {value!r}")
        if seconds * 1e9 >= 2**63:
            raise ValueError(f"expected {DURATION_HELP} shorter than 292 years, got {value!r}")
        return int(round(seconds * 1e9))
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:  # exact decimal arithmetic: '1.1s' is 1_100_000_000 ns, '2**62ns' stays exact
            try:
                ns = Decimal(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
            except ArithmeticError:  # an exponent beyond Decimal's range
                ns = Decimal(2**63)
            if ns >= 2**63:
                raise ValueError(f"expected {DURATION_HELP} (below 292 years), got {value!r}")
            return int(ns.to_integral_value(rounding=ROUND_HALF_EVEN))
    raise ValueError(f"expected {DURATION_HELP}, got {value!r}")


def parse_rate(value) -> float:
    """Rate to float events per second (>= 0). Numbers are per second."""
    if _is_number(value):
        rate = _finite(float(value), RATE_HELP)
        if rate < 0:
            raise ValueError(f"expected {RATE_HELP} (not negative), got {value!r}")
        return rate
    if isinstance(value, str):
        m = _RATE_RE.match(value)
        if m:
            return _finite(float(m.group(1)) * _RATE_UNITS[m.group(2)], RATE_HELP)
    raise ValueError(f"expected {RATE_HELP}, got {value!r}")


def parse_bandwidth(value) -> float:
    """Bandwidth to float bits per second (> 0)."""
    if _is_number(value):
        bw = _finite(float(value), BANDWIDTH_HELP)
    elif isinstance(value, str) and (m := _BW_RE.match(value)):
        bw = _finite(float(m.group(1)) * _BW_UNITS[m.group(2).lower()], BANDWIDTH_HELP)
    else:
        raise ValueError(f"expected {BANDWIDTH_HELP}, got {value!r}")
    if bw <= 0:
        raise ValueError(f"expected {BANDWIDTH_HELP} (above zero), got {value!r}")
    return bw


def parse_size(value) -> int:
    """Size to int bytes (>= 0)."""
    if _is_number(value):
        size = _finite(float(value), SIZE_HELP)
    elif isinstance(value, str) and (m := _SIZE_RE.match(value)):
        size = _finite(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()], SIZE_HELP)
    else:
        raise ValueError(f"expected {SIZE_HELP}, got {value!r}")
    if size < 0:
        raise ValueError(f"expected {SIZE_HELP} (not negative), got {value!r}")
    return int(round(size))


def format_duration(ns: int) -> str:
    """Inverse of :func:`parse_duration` for display: the largest unit that divides exactly
    (``30d``, ``1ms``; ``0s``)."""
    if ns == 0:
        return "0s"
    for unit in ("d", "h", "m", "s", "ms", "us"):
        if ns and ns % _DURATION_UNITS[unit] == 0:
            return f"{ns // _DURATION_UNITS[unit]}{unit}"
    return f"{ns}ns"
