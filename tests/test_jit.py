"""The kernels' decorators (``trafficgen.kernels.jit``): an ``inline`` function runs without
numba's reference counts, so it may only borrow the arrays it is handed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_CACHE = "TRAFFICGEN_NO_KERNEL_CACHE"

SETUP = """
import numpy as np
from trafficgen.kernels.jit import helper, inline, kernel

@helper
def fresh(n):
    return np.zeros(n, np.int64)
"""

CASES = {
    # borrows: reads, writes and slices what it is handed; called in a loop, no count moves
    "borrows": """
@inline
def bump(a, b, i):
    v = a[i:i + 2]
    v[0] += b[i]
    return v[0]

@kernel
def run(a, b):
    t = 0
    for i in range(a.shape[0] - 1):
        t += bump(a, b, i)
    return t

a, b = np.zeros(5, np.int64), np.arange(5)
import sys
before = sys.getrefcount(a), sys.getrefcount(b)
print(run(a, b), a.tolist(), (sys.getrefcount(a), sys.getrefcount(b)) == before)
""",
    # returns an array it was handed: the caller would release a reference never taken
    "returns": """
@inline
def same(a):
    return a

@kernel
def run(a):
    return same(a)[0]

run(np.zeros(3))
""",
    # takes a new array from a call: nothing would release it
    "takes": """
@inline
def total(n):
    return fresh(n).sum()

@kernel
def run(n):
    return total(n)

run(3)
""",
    # a tuple holding an array is counted too
    "tuple": """
@inline
def pair(a):
    return (a, 1)

@kernel
def run(a):
    return pair(a)[1]

run(np.zeros(3))
""",
}


def run_case(name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SETUP + CASES[name]], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, stdin=subprocess.DEVNULL,
                          env={**os.environ, NO_CACHE: "1"})


def test_an_inline_function_borrows_what_it_is_handed():
    done = run_case("borrows")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "6 [0, 1, 2, 3, 0] True"


def test_an_inline_function_may_not_hand_out_or_take_an_array():
    for name, says in (("returns", "returns array(float64"), ("takes", "takes array(int64"),
                       ("tuple", "returns Tuple(array(float64")):
        done = run_case(name)
        assert done.returncode != 0
        assert "inline function" in done.stderr and says in done.stderr, (name, done.stderr[-2000:])


def test_editing_any_kernel_file_compiles_every_kernel_again(tmp_path):
    """A kernel holds other files' inline functions compiled into it: a cached kernel is
    stale once any file of the folder changes, not only its own (numba's check)."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "trafficgen" / "kernels", site / "trafficgen" / "kernels",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (site / "trafficgen" / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": str(site), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    env.pop(NO_CACHE, None)
    code = ("from trafficgen.kernels import rng\nrng.derive(1, 2)\ns = rng.derive.stats\n"
            "print(sum(s.cache_hits.values()), sum(s.cache_misses.values()))")

    def hits_misses() -> list[str]:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=site, env=env, timeout=300, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert hits_misses() == ["0", "1"]  # compiled, then cached
    assert hits_misses() == ["1", "0"]
    with open(site / "trafficgen" / "kernels" / "codes.py", "a") as f:  # not rng.py
        f.write("\n# edited\n")
    assert hits_misses() == ["0", "1"]
    assert hits_misses() == ["1", "0"]
