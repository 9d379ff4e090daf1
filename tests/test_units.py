"""Values with units: exact results for what is allowed, a clear refusal for everything else."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trafficgen.config.units import format_duration, parse_bandwidth, parse_duration, parse_rate, parse_size


@pytest.mark.parametrize("text,ns", [
    ("90s", 90 * 10**9), ("5m", 300 * 10**9), ("5min", 300 * 10**9), ("1h", 3600 * 10**9),
    ("1.5s", 1_500_000_000), ("1.1s", 1_100_000_000), ("250ms", 250_000_000), ("10us", 10_000),
    ("10µs", 10_000), ("1ns", 1), (".5s", 500_000_000), ("2d", 172_800 * 10**9),
    (" 3 s ", 3 * 10**9), ("1e3ms", 10**9), (30, 30 * 10**9), (0.25, 250_000_000),
    ("4611686018427387904ns", 2**62),
    ("60", 60 * 10**9), (" 1.5 ", 1_500_000_000), ("0", 0),  # a number without a unit: seconds
])
def test_durations(text, ns):
    got = parse_duration(text)
    assert got == ns and isinstance(got, int)


@pytest.mark.parametrize("bad", ["", "-5", "5 parsecs", "-1s", "s", "1..2s", "inf s", "nan",
                                 True, None, [1], "1e400000000s", "300y", -3, float("inf")])
def test_bad_durations_are_refused_with_the_value(bad):
    with pytest.raises(ValueError) as e:
        parse_duration(bad)
    assert "duration" in str(e.value)
    if isinstance(bad, str) and bad:
        assert repr(bad) in str(e.value)


@pytest.mark.parametrize("text,per_s", [("40/s", 40.0), ("2000/min", 2000 / 60), ("3/h", 3 / 3600),
                                        ("1.5 / sec", 1.5), (12, 12.0), ("0/s", 0.0)])
def test_rates(text, per_s):
    assert parse_rate(text) == pytest.approx(per_s, rel=1e-15)


@pytest.mark.parametrize("bad", ["40", "40/fortnight", "-1/s", "/s", "x/s", None, False])
def test_bad_rates(bad):
    with pytest.raises(ValueError, match="rate"):
        parse_rate(bad)


@pytest.mark.parametrize("text,bps", [("1Gbps", 1e9), ("100Mbps", 1e8), ("2.5gbps", 2.5e9),
                                      ("64kbps", 64e3), (1e6, 1e6)])
def test_bandwidths(text, bps):
    assert parse_bandwidth(text) == bps


@pytest.mark.parametrize("bad", ["0bps", "1 GB", "fast", -5, 0])
def test_bad_bandwidths(bad):
    with pytest.raises(ValueError, match="bandwidth"):
        parse_bandwidth(bad)


@pytest.mark.parametrize("text,n", [(1500, 1500), ("1500", 1500), ("4KiB", 4096), ("1MB", 10**6),
                                    ("2 MiB", 2 << 20), ("1.5kb", 1500)])
def test_sizes(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("bad", ["-1", "1 furlong", "KiB", None])
def test_bad_sizes(bad):
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)


@given(st.integers(0, 2**62))
def test_integer_nanoseconds_are_exact(n):
    assert parse_duration(f"{n}ns") == n
    assert parse_duration(format_duration(n)) == n


@given(st.integers(0, 10**12), st.sampled_from(["ns", "us", "ms", "s", "m", "h"]))
def test_every_unit_scales_exactly(n, unit):
    scale = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}[unit]
    if n * scale < 2**63:
        assert parse_duration(f"{n}{unit}") == n * scale
    else:
        with pytest.raises(ValueError, match="below 292 years"):
            parse_duration(f"{n}{unit}")


@given(st.integers(0, 10**6), st.integers(0, 999))
def test_decimal_seconds_are_exact(whole, millis):
    assert parse_duration(f"{whole}.{millis:03d}s") == whole * 10**9 + millis * 10**6


@given(st.text(max_size=12))
def test_arbitrary_text_is_a_value_or_a_value_error(text):
    for parse in (parse_duration, parse_rate, parse_bandwidth, parse_size):
        try:
            value = parse(text)
        except ValueError:
            continue
        assert value >= 0
