"""Bounded memory for kv_transfer: with transfers of one fixed size, the peak resident memory
of a whole `trafficgen generate kv-transfer` run (frames built and written to /dev/null, all
three tables) does not grow with the duration. (With the fitted prompt lengths, memory follows
the largest transfer in the run, about 200 B per frame of it: see bench/RESULTS.md.)
"""
from __future__ import annotations

import sys

import pytest

from .helpers import GROWTH_LIMIT, peak_rss_of  # the chat test's limit

FIXED = ["-t", "kv_transfer.rate=0.2/s", "-t", "kv_transfer.prompt_tokens=1024",
         "-t", "kv_transfer.cache_hit_prob=0"]  # 512 uncached tokens: 36 MB per transfer


def peak_rss_mib(duration: str, folder) -> float:
    return peak_rss_of(
        [sys.executable, "-m", "trafficgen", "generate", "kv-transfer", *FIXED, "--duration",
         duration, "-q", "-o", "/dev/null", "--flows", str(folder / "f.parquet"),
         "--requests", str(folder / "r.parquet"), "--packets", str(folder / "p.parquet")])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB is Linux's")
def test_kv_peak_memory_does_not_grow_with_duration(tmp_path):
    one = peak_rss_mib("1m", tmp_path)
    ten = peak_rss_mib("10m", tmp_path)
    print(f"peak RSS: 1 min {one:.0f} MiB, 10 min {ten:.0f} MiB ({ten / one:.2f}x)")
    # measured 1.10-1.29x (1 min 340-403 MiB, 10 min 419-445 MiB) on a busy 2-core machine
    assert ten < GROWTH_LIMIT * one, f"1 min: {one:.0f} MiB, 10 min: {ten:.0f} MiB"
    assert (tmp_path / "p.parquet").stat().st_size > 10 << 20  # the long run really ran
