"""What a user sees: the whole ``trafficgen generate`` process, timed from outside.

    python bench/bench_cli.py                 # 20 minutes of chat, 3 rounds (about 2.4 GB a run)
    python bench/bench_cli.py --quick         # 3 minutes, 1 round: what CI runs so this never rots
    python bench/bench_cli.py --json

Two parts, each a fresh process per run (start-up, imports and kernel loading included), into
``/dev/shm`` by default so the disk is out of the picture:

1. **modes**: ``--workers 1``, ``--workers 2`` and the default (no ``--workers``), one after
   another in each round, each round starting with the next mode (a run's system time depends
   on what ran just before it, on a VM by up to a second); wall, user and system seconds (the
   children's ``getrusage``) as medians, and each ratio the median of the rounds' own ratios.
   Every capture is the same file, removed after its run.
2. **marginal rate**: the default command for the full duration against one a fifth as long
   (same seed), in turn, each first in every other round; the difference in bytes over the
   difference in wall time is what each further minute costs, start-up excluded. Beside it, in
   the same round, a raw write of the same number of bytes (8 MiB chunks from one buffer) to the
   same folder.

The machine's load average is printed before and after each part: on a shared machine the
figures move with it, the ratios much less. The in-process figures are ``bench_parallel.py``'s
and ``bench_generate.py``'s.
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {"--workers 1": ["--workers", "1"], "--workers 2": ["--workers", "2"], "default": []}


def command(duration: str, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "trafficgen", "generate", "chat", "--duration", duration,
            "--seed", "4", "-o", str(out), "-q", *extra]


def timed(argv: list[str], cwd: Path) -> dict:
    """One whole process: wall, user and system seconds."""
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    # run from the output's folder: the trafficgen imported is the installed one (or PYTHONPATH's),
    # never a checkout that happens to be the current folder
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=cwd)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": wall, "user_s": r1.ru_utime - r0.ru_utime, "sys_s": r1.ru_stime - r0.ru_stime}


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def raw_write(path: Path, nbytes: int) -> float:
    """Seconds to write ``nbytes`` to a new file at ``path`` in 8 MiB chunks of one buffer."""
    buf = os.urandom(8 << 20)
    path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    with open(path, "wb", buffering=0) as f:
        left = nbytes
        while left > 0:
            left -= f.write(buf[:min(left, len(buf))])
    wall = time.perf_counter() - t0
    path.unlink()
    return wall


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def median(rows: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 3)


def modes_part(duration: str, rounds: int, folder: Path) -> dict:
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    before = load()
    for r in range(rounds):
        digests = set()
        # each round starts with the next mode: on a VM a run's system time depends on what ran
        # just before it, so over the rounds each mode takes each place in turn
        order = list(MODES.items())
        for m, extra in order[r % len(order):] + order[:r % len(order)]:
            out = folder / "modes.pcap"
            runs[m].append(timed(command(duration, out, extra), folder))
            digests.add(digest(out))
            out.unlink()
        assert len(digests) == 1, "the captures of the modes differ"
    res = {m: {k: median(v, k) for k in ("wall_s", "user_s", "sys_s")} for m, v in runs.items()}

    def ratio(a: str, b: str) -> float:
        return round(statistics.median(x["wall_s"] / y["wall_s"] for x, y in zip(runs[a], runs[b])), 2)

    return {"runs": res, "load_before": before, "load_after": load(),
            "speedup_2_workers": ratio("--workers 1", "--workers 2"),
            "default_vs_best": round(statistics.median(
                r["wall_s"] / min(runs["--workers 1"][i]["wall_s"], runs["--workers 2"][i]["wall_s"])
                for i, r in enumerate(runs["default"])), 2)}


def marginal_part(duration_s: int, rounds: int, folder: Path) -> dict:
    short_s = max(1, duration_s // 5)
    rows = []
    before = load()
    for r in range(rounds):
        got = {}
        runs = (("long", duration_s), ("short", short_s))
        for name, secs in runs if r % 2 == 0 else runs[::-1]:  # each first in turn
            out = folder / f"{name}.pcap"
            got[name] = timed(command(f"{secs}s", out, []), folder)
            got[name]["bytes"] = out.stat().st_size
            out.unlink()
        nbytes = got["long"]["bytes"] - got["short"]["bytes"]
        cli_s = got["long"]["wall_s"] - got["short"]["wall_s"]
        raw_s = raw_write(folder / "raw.bin", nbytes)
        rows.append({"bytes": nbytes, "cli_s": cli_s, "raw_s": raw_s,
                     "cli_mb_s": nbytes / cli_s / 1e6, "raw_mb_s": nbytes / raw_s / 1e6,
                     "raw_over_cli": cli_s / raw_s})
    return {"long": f"{duration_s}s", "short": f"{short_s}s", "load_before": before,
            "load_after": load(), **{k: median(rows, k) for k in rows[0]}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", default="20m", help="the modes' run (default 20m)")
    ap.add_argument("--marginal", default="10m", help="the marginal part's long run (default 10m)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="3 minutes and 2 minutes, 1 round")
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.marginal, args.repeat = "3m", "2m", 1
    secs = {"s": 1, "m": 60, "h": 3600}
    marginal_s = int(float(args.marginal[:-1]) * secs[args.marginal[-1]])
    folder = Path(tempfile.mkdtemp(prefix="tg-bench-cli-", dir=args.dir))
    try:
        timed(command("2s", folder / "warm.pcap", []), folder)  # the kernels' cache
        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.python_implementation()} "
                       f"{platform.python_version()}",
            "modes": {"scenario": f"chat, {args.duration}, seed 4", "rounds": args.repeat,
                      **modes_part(args.duration, args.repeat, folder)},
            "marginal": marginal_part(marginal_s, args.repeat, folder),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    m, g = result["modes"], result["marginal"]
    print(f"{m['scenario']}, whole process, median of {m['rounds']} round(s); {result['machine']}")
    print(f"  load average before {m['load_before']}, after {m['load_after']}")
    print(f"  {'command':<14} {'wall s':>8} {'user s':>8} {'sys s':>8}")
    for name, v in m["runs"].items():
        print(f"  {name:<14} {v['wall_s']:>8.2f} {v['user_s']:>8.2f} {v['sys_s']:>8.2f}")
    print(f"  --workers 2 against --workers 1: {m['speedup_2_workers']:.2f}x (target 1.5x); "
          f"default / best explicit mode: {m['default_vs_best']:.2f} (target at most 1.0)")
    print(f"marginal rate: {g['long']} against {g['short']}, {g['bytes'] / 1e6:,.0f} MB more; load "
          f"{g['load_before']} -> {g['load_after']}")
    print(f"  trafficgen {g['cli_mb_s']:,.0f} MB/s, raw write {g['raw_mb_s']:,.0f} MB/s: raw / "
          f"trafficgen {g['raw_over_cli']:.2f}x (target at most 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
