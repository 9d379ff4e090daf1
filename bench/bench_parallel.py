"""Scale-out: generation on 1 and 2 worker processes, one merged capture or shards.

    python bench/bench_parallel.py                 # 20 minutes of chat (about 9 M packets)
    python bench/bench_parallel.py --quick         # 3 minutes: what CI runs so this never rots
    python bench/bench_parallel.py --json

Each round runs every mode once, in this order, into the same folder (``/dev/shm`` by
default, so the disk is out of the picture), and checks that every merged capture is the same
file:

- ``1 worker``: this process alone, one generation thread: the unit of the scaling figures;
- ``2 workers``: two worker processes simulate, this one merges, frames and writes;
- ``threads``: the library's default, this process with two generation threads;
- ``shards, 1`` and ``shards, 2``: one file per partition, built and written by the workers,
  nothing merged.

Figures are medians over ``--repeat`` rounds, and each ratio the median of the rounds' own
ratios. The speed-up the project targets: 2 workers at least 1.7x 1 worker on 2 cores. The
merge's cost is shown two ways: the time this process spends merging the workers' rows (the
report's ``merge_s``), and the merged run against the sharded one on the same workers.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trafficgen as tg

MODES = {  # name: generate() keyword arguments
    "1 worker": dict(workers=1),
    "2 workers": dict(workers=2),
    "threads": dict(),
    "shards, 1": dict(workers=1, shards=True),
    "shards, 2": dict(workers=2, shards=True),
}


def cpu() -> tuple[float, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def run_once(sc, folder: Path, kw: dict) -> dict:
    out = folder / "out.pcap"
    if out.is_dir():
        shutil.rmtree(out)
    else:
        out.unlink(missing_ok=True)
    c0, t0 = cpu(), time.perf_counter()
    report = tg.generate(sc, pcap=out, **kw)
    wall = time.perf_counter() - t0
    c1 = cpu()
    digest = None
    if not kw.get("shards"):
        h = hashlib.sha256()
        with open(out, "rb") as f:
            while chunk := f.read(8 << 20):
                h.update(chunk)
        digest = h.hexdigest()
    return {"wall_s": wall, "cpu_main_s": c1[0] - c0[0], "cpu_workers_s": c1[1] - c0[1],
            "merge_s": report.get("merge_s"), "packets": report["packets"],
            "bytes": report["wire_bytes"], "digest": digest}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", default="20m")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="3 minutes, 1 round")
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.repeat = "3m", 1
    sc = tg.load_scenario("chat", duration=args.duration, seed=7)
    folder = Path(tempfile.mkdtemp(prefix="tg-bench-par-", dir=args.dir))
    try:
        warm = tg.load_scenario("chat", duration="90s", seed=7)
        for kw in MODES.values():  # numba's caches load in this process and the workers
            run_once(warm, folder, kw)
        rounds = []
        for _r in range(args.repeat):
            rounds.append({m: run_once(sc, folder, kw) for m, kw in MODES.items()})
            digests = {v["digest"] for v in rounds[-1].values() if v["digest"]}
            assert len(digests) == 1, "the merged captures differ"
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def med(mode, key):
        return statistics.median(r[mode][key] for r in rounds)

    def ratio(a, b):
        return statistics.median(r[a]["wall_s"] / r[b]["wall_s"] for r in rounds)

    first = rounds[0]["1 worker"]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "scenario": f"chat, {args.duration}, seed 7", "packets": first["packets"],
        "pcap_mb": round(first["bytes"] / 1e6, 1), "rounds": args.repeat,
        "modes": {m: {k: round(med(m, k), 3) for k in ("wall_s", "cpu_main_s", "cpu_workers_s")}
                  | ({"merge_s": round(med(m, "merge_s"), 3)} if rounds[0][m]["merge_s"] is not None else {})
                  for m in MODES},
        "speedup_2_workers": round(ratio("1 worker", "2 workers"), 2),
        "speedup_2_workers_shards": round(ratio("shards, 1", "shards, 2"), 2),
        "threads_vs_2_workers": round(ratio("threads", "2 workers"), 2),
        "merged_vs_shards_2_workers": round(ratio("2 workers", "shards, 2"), 2),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['scenario']}: {result['packets']:,} packets, {result['pcap_mb']:,} MB; "
          f"{result['machine']}; median of {args.repeat} round(s)")
    print(f"{'mode':<12} {'wall s':>8} {'Mpps':>7} {'cpu here':>9} {'cpu workers':>12} {'merge s':>8}")
    for m, v in result["modes"].items():
        print(f"{m:<12} {v['wall_s']:>8.2f} {result['packets'] / v['wall_s'] / 1e6:>7.2f} "
              f"{v['cpu_main_s']:>9.2f} {v['cpu_workers_s']:>12.2f} {v.get('merge_s', float('nan')):>8.2f}")
    print(f"speed-up, 2 workers / 1: {result['speedup_2_workers']:.2f}x merged capture, "
          f"{result['speedup_2_workers_shards']:.2f}x shards (target 1.7x); threads / 2 workers: "
          f"{result['threads_vs_2_workers']:.2f}x; merged / sharded on 2 workers: "
          f"{result['merged_vs_shards_2_workers']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
