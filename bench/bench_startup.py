"""Start-up and first-run cost: the CLI's quick commands, and a run with no kernels cached.

    python bench/bench_startup.py                 # all three parts below
    python bench/bench_startup.py --part cold     # only the cold/warm pairs (3 rounds)
    python bench/bench_startup.py --part all      # only every built-in, cold, in turn
    python bench/bench_startup.py --part quick    # only --help, --version, models
    python bench/bench_startup.py --json          # figures as JSON

Every figure is a whole process (``python -m trafficgen ...``, the worktree's package first on
the path), its wall time and its CPU time (user + system, from ``wait4``), taken while the
machine does whatever else it does: ``uptime``'s load is printed beside them.

1. **quick**: ``--help``, ``--version`` and ``models``, ``--repeat`` runs each, medians.
2. **cold**: ``generate chat --duration 60s`` with a new, empty ``NUMBA_CACHE_DIR`` (numba
   compiles every kernel the run needs), then the same command again with that cache (warm);
   ``--rounds`` pairs, medians, and the median of the pairs' own cold/warm ratios.
3. **all**: every built-in scenario at its own duration, one after another, all with one new
   cache (as a user trying each in turn would): each run's time and the total.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILTINS = ("chat", "coding", "reasoning", "multimodal", "agentic", "rag", "kv-transfer",
            "enterprise-mix")


def run(args: list[str], env: dict) -> dict:
    """One whole process: wall seconds, CPU seconds (user + system) and its exit status."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "trafficgen", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"error: trafficgen {' '.join(args)} exited {proc.returncode}:\n{err}")
    return {"wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "user_s": round(usage.ru_utime, 3)}


def environment(cache: str | None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = cache
    return env


def load() -> str:
    """The load average (1, 5, 15 minutes): how busy the machine was."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def median_of(rows: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 3)


def quick(repeat: int) -> dict:
    env = environment(None)
    out = {}
    for args in (["--help"], ["--version"], ["models"]):
        rows = [run(args, env) for _ in range(repeat)]
        out[" ".join(args)] = {"wall_s": median_of(rows, "wall_s"), "cpu_s": median_of(rows, "cpu_s"),
                               "runs": repeat}
    return out


def cold_warm(rounds: int, outdir: Path) -> dict:
    args = ["generate", "chat", "--duration", "60s", "--seed", "7", "-o", str(outdir / "c.pcap"), "-q"]
    pairs = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="tg-numba-") as cache:
            env = environment(cache)
            cold = run(args, env)
            warm = run(args, env)
        pairs.append({"cold": cold, "warm": warm, "ratio": round(cold["wall_s"] / warm["wall_s"], 2),
                      "load": load()})
    return {"command": "trafficgen " + " ".join(args), "pairs": pairs,
            "cold_wall_s": median_of([p["cold"] for p in pairs], "wall_s"),
            "cold_cpu_s": median_of([p["cold"] for p in pairs], "cpu_s"),
            "warm_wall_s": median_of([p["warm"] for p in pairs], "wall_s"),
            "warm_cpu_s": median_of([p["warm"] for p in pairs], "cpu_s"),
            "ratio": round(statistics.median(p["ratio"] for p in pairs), 2)}


def all_builtins(outdir: Path) -> dict:
    runs = {}
    with tempfile.TemporaryDirectory(prefix="tg-numba-") as cache:
        env = environment(cache)
        for name in BUILTINS:
            runs[name] = run(["generate", name, "-o", str(outdir / f"{name}.pcap"), "-q"], env)
            runs[name]["load"] = load()
    return {"runs": runs, "total_wall_s": round(sum(r["wall_s"] for r in runs.values()), 3),
            "total_cpu_s": round(sum(r["cpu_s"] for r in runs.values()), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("quick", "cold", "all"), action="append",
                    help="which part to run (repeatable; default all three)")
    ap.add_argument("--rounds", type=int, default=3, help="cold/warm pairs (default 3)")
    ap.add_argument("--repeat", type=int, default=5, help="runs of each quick command (default 5)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    parts = a.part or ["quick", "cold", "all"]
    result = {"load_before": load()}
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="tg-startup-", dir=base) as tmp:
        if "quick" in parts:
            result["quick"] = quick(a.repeat)
        if "cold" in parts:
            result["cold"] = cold_warm(a.rounds, Path(tmp))
        if "all" in parts:
            result["all"] = all_builtins(Path(tmp))
    result["load_after"] = load()
    if a.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"load average before: {result['load_before']}")
    for cmd, r in result.get("quick", {}).items():
        print(f"trafficgen {cmd:<10} wall {r['wall_s']:.3f} s  cpu {r['cpu_s']:.3f} s  "
              f"(median of {r['runs']})")
    if "cold" in result:
        c = result["cold"]
        print(c["command"])
        for p in c["pairs"]:
            print(f"  cold wall {p['cold']['wall_s']:7.2f} s cpu {p['cold']['cpu_s']:7.2f} s | "
                  f"warm wall {p['warm']['wall_s']:5.2f} s cpu {p['warm']['cpu_s']:5.2f} s | "
                  f"{p['ratio']:5.2f}x  load {p['load']}")
        print(f"  medians: cold {c['cold_wall_s']:.2f} s ({c['cold_cpu_s']:.2f} s cpu), warm "
              f"{c['warm_wall_s']:.2f} s ({c['warm_cpu_s']:.2f} s cpu); cold/warm {c['ratio']:.2f}x")
    if "all" in result:
        r = result["all"]
        for name, x in r["runs"].items():
            print(f"  {name:<15} wall {x['wall_s']:7.2f} s  cpu {x['cpu_s']:7.2f} s  load {x['load']}")
        print(f"  every built-in, cold, in turn: {r['total_wall_s']:.1f} s wall, "
              f"{r['total_cpu_s']:.1f} s cpu")
    print(f"load average after: {result['load_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
