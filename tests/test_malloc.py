"""glibc's heap as the CLI and the local workers set it (``engine.malloc``): arrays freed
together (a window's, a partition's) stay on the heap for the next ones instead of going back
to the kernel and coming back, zeroed, through a page fault per page; and the heap keeps no
more than ``TRIM_THRESHOLD`` of them. Each case is a fresh process (this one's heap is left
alone), counting its own minor page faults over rounds of allocating and freeing."""
from __future__ import annotations

import subprocess
import sys

import pytest

from trafficgen.engine.malloc import TRIM_THRESHOLD

CHILD = r"""
import ctypes, resource, sys
import numpy as np
from trafficgen.engine.malloc import M_MMAP_THRESHOLD, MMAP_THRESHOLD, tune_malloc

how, mib = sys.argv[1], int(sys.argv[2])
if how == "threshold only":  # what tune_malloc did before it set the trim threshold
    ok = ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
else:
    ok = tune_malloc(worker=how == "worker")
if not ok:
    print("skip")  # not glibc
    raise SystemExit
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arrays = [np.ones(1 << 19) for _ in range(mib // 4)]  # 4 MiB each: from the heap
    del arrays
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""


def rounds(how: str, mib: int) -> list[int]:
    out = subprocess.run([sys.executable, "-c", CHILD, how, str(mib)], check=True,
                         capture_output=True, text=True).stdout.split()
    if out == ["skip"]:
        pytest.skip("not glibc")
    return [int(x) for x in out]


PAGES_128_MIB = (128 << 20) // 4096

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")


@pytest.mark.parametrize("how", ["cli", "worker"])
def test_freed_arrays_are_used_again_without_page_faults(how):
    first, *again = rounds(how, 128)
    assert first > PAGES_128_MIB // 4  # the arrays were really touched (huge pages or not)
    assert max(again) < PAGES_128_MIB // 64, f"128 MiB of arrays, round after round: {again} faults"


def test_the_mmap_threshold_alone_gave_them_back():
    """The control (the code before): fixing the mmap threshold leaves glibc's trim threshold
    at 128 KiB, and each round's arrays are faulted in afresh."""
    first, *again = rounds("threshold only", 128)
    assert min(again) > first // 2, f"{first} then {again} faults"


def test_no_more_than_the_threshold_is_kept():
    mib = (TRIM_THRESHOLD >> 20) + 128
    first, *again = rounds("cli", mib)
    assert min(again) > first // 4, f"{mib} MiB of arrays: {first} then {again} faults"
