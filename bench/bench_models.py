"""How fast the model library makes request tables, per built-in scenario, and a day of the
enterprise mix.

    python bench/bench_models.py               # every class for 10 min, then 24 h of enterprise-mix
    python bench/bench_models.py --quick       # 2 min each and 1 h of the mix: what CI runs
    python bench/bench_models.py --json

Each figure is ``trafficgen.generate(scenario, requests=..., flows=...)`` into a temporary
folder: no capture and no packet table, so the packets are simulated (they give the requests'
times and bytes) but never sorted, merged or written. Reported: requests, the packets behind
them, wall seconds, and simulated seconds per wall second (how many times faster than real
time). The day of the mix starts at midnight on the scenario clock, so its human classes
trace the daily cycle (about 9:1 from afternoon to small hours) while agents stay flat.
A 10 s warm-up of every scenario first loads numba's cache (or compiles it, on a fresh
install), so the figures are steady-state.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import trafficgen as tg

CLASSES = ("chat", "coding", "reasoning", "multimodal", "agentic", "rag", "kv-transfer")


def run(name: str, duration: str, folder: Path) -> dict:
    """One request-table run; returns its figures."""
    sc = tg.load_scenario(name, duration=duration, seed=1)
    t0 = time.perf_counter()
    rep = tg.generate(sc, requests=folder / f"{name}-r.parquet", flows=folder / f"{name}-f.parquet")
    wall = time.perf_counter() - t0
    return {"scenario": name, "duration_s": sc.duration_ns / 1e9, "requests": rep["requests"],
            "flows": rep["flows"], "packets": rep["packets"], "wire_bytes": rep["wire_bytes"],
            "seconds": round(wall, 2), "x_real_time": round(sc.duration_ns / 1e9 / wall, 1)}


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, "
            f"{platform.python_implementation()} {platform.python_version()}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 min per class, 1 h of the mix")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    per_class, day = ("2m", "1h") if args.quick else ("10m", "24h")
    rows = []
    with tempfile.TemporaryDirectory(prefix="tg-bench-models-") as tmp:
        folder = Path(tmp)
        for name in CLASSES:  # warm-up: numba's cache (compiled on a fresh install)
            run(name, "10s", folder)
        for name in CLASSES:
            rows.append(run(name, per_class, folder))
        rows.append(run("enterprise-mix", day, folder))
    if args.json:
        print(json.dumps({"machine": machine(), "runs": rows}, indent=2))
        return 0
    print(f"request tables (no capture), {machine()}")
    print(f"{'scenario':<16}{'duration':>10}{'requests':>11}{'packets':>13}{'seconds':>9}{'x real time':>13}")
    for r in rows:
        print(f"{r['scenario']:<16}{r['duration_s']:>9.0f}s{r['requests']:>11,}{r['packets']:>13,}"
              f"{r['seconds']:>9.2f}{r['x_real_time']:>13,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
