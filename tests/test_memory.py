"""Bounded memory: the peak resident memory of a whole `trafficgen generate` run does not grow
with the duration. Each run is a fresh process (a child of a small wrapper that reports its
children's peak RSS), writing a capture and all three tables.

Measured on the development machine (bench/RESULTS.md), all outputs, one process: 1 min
356 MiB, 10 min 446 MiB, 60 min 461 MiB; with two workers, the largest process (the merge):
1 min 347 MiB, 10 min 430 MiB, 30 min 462 MiB. The 1-minute run sits lower because it is not yet in steady
state: conversations last minutes, and a short run drops the turns that fall after its end.
"""
from __future__ import annotations

import sys

import pytest

from .helpers import GROWTH_LIMIT, peak_rss_of


def peak_rss_mib(duration: str, folder, workers: int) -> float:
    return peak_rss_of(
        [sys.executable, "-m", "trafficgen", "generate", "chat", "--workers", str(workers),
         "--duration", duration, "-q", "-o", "/dev/null", "--flows", str(folder / "f.parquet"),
         "--requests", str(folder / "r.parquet"), "--packets", str(folder / "p.parquet")])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB is Linux's")
@pytest.mark.parametrize("workers", [1, 2])
def test_peak_memory_does_not_grow_with_duration(tmp_path, workers):
    """One process; or two workers, where the figure is the largest process's (the merging
    one, which holds the open partitions' tails; a worker holds one partition)."""
    one = peak_rss_mib("1m", tmp_path, workers)
    ten = peak_rss_mib("10m", tmp_path, workers)
    print(f"peak RSS, {workers} worker(s): 1 min {one:.0f} MiB, 10 min {ten:.0f} MiB ({ten / one:.2f}x)")
    # ten times the traffic (about 4 million packets) in at most 1.4 times the memory
    assert ten < GROWTH_LIMIT * one, f"1 min: {one:.0f} MiB, 10 min: {ten:.0f} MiB"
    assert (tmp_path / "p.parquet").stat().st_size > 10 << 20  # the long run really ran
