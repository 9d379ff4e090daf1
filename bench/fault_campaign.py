"""Issue 17's fault campaign of mutated inputs, at any scale: captures, traces, Parquet tables,
scenario files and ``-t`` overrides, each mutated (``tests/fuzzing.py``) and run through its
reader (``tests/fuzzcli.py``: inspect, plot, replay's reading, fit, compare, generate --trace,
generate -t, scenario loading), checking the promise: exit 0, or exit 2 with one ``error:``
line; never a traceback, "unexpected", exit 1, a hang or a memory blow-up.

    python bench/fault_campaign.py --cases 100000 --jobs 2        # a summary at the end
    python bench/fault_campaign.py --seed 1 --case 4711            # one case again, verbosely

Case ``i`` of seed ``S`` is a pure function of ``(S, i)`` (its reader: ``i`` modulo the
readers), so a failure's reproducer is its seed and number. Workers run niced, under an
address-space limit (``--mem-gib``); a case that stops answering for ``--hang`` seconds is a
hang (its worker is killed and another takes the next cases). ``--real K``: every K-th
``generate`` case that gets past its checks runs for real (1 s of traffic) instead of stopping
there.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def seed_tables(folder: Path) -> dict:
    """A small real run's flow, request and packet tables: the Parquet seeds."""
    import trafficgen as tg
    tables = {k: folder / f"{k}.parquet" for k in ("flows", "requests", "packets")}
    tg.generate(tg.load_scenario("chat", {"chat.rate": "3/s"}, duration="1s", seed=2), **tables)
    return tables


def worker(args) -> None:
    """Run cases ``start, start + step, ...`` below ``stop``; one JSON line per case."""
    resource.setrlimit(resource.RLIMIT_AS, (args.mem_gib << 30, args.mem_gib << 30))
    os.nice(10)
    from tests import fuzzcli as fc
    base = Path(tempfile.mkdtemp(prefix="fault-campaign-"))
    try:
        tables, keys = seed_tables(base), fc.section_keys()
        for i in range(args.start, args.stop, args.step):
            reader = fc.READERS[i % len(fc.READERS)]
            folder = base / f"case{i}"
            folder.mkdir()
            real = (bool(args.real) and reader in ("trace", "override", "scenario")
                    and (i // len(fc.READERS)) % args.real == 0)
            t0 = time.perf_counter()
            try:
                argv, o, bad = fc.run_case(reader, fc.seeded(args.seed, i), folder, tables, keys, real=real)
                row = {"i": i, "reader": reader, "status": o.status, "bad": bad, "err": o.err[-400:],
                       "argv": argv}
            except Exception as e:  # noqa: BLE001 - the campaign's own fault, counted apart
                row = {"i": i, "reader": reader, "status": "fuzzer", "bad": f"fuzzer: {type(e).__name__}: {e}",
                       "err": "", "argv": []}
            row["s"] = round(time.perf_counter() - t0, 3)
            print(json.dumps(row), flush=True)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def spawn(args, start: int) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--worker", "--seed", str(args.seed), "--start", str(start),
           "--stop", str(args.cases), "--step", str(args.jobs), "--mem-gib", str(args.mem_gib),
           "--real", str(args.real)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
                            bufsize=1)


def campaign(args) -> int:
    t0 = time.time()
    counts: dict = collections.defaultdict(collections.Counter)
    failures: list = []
    procs = {j: spawn(args, j) for j in range(args.jobs)}
    last = {j: j - args.jobs for j in procs}  # the last case each worker reported
    seen = {j: time.time() + 120 for j in procs}  # the first case waits for the kernels to load
    done = 0
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        done = _loop(args, procs, last, seen, counts, failures, t0)
    except KeyboardInterrupt:  # stopped early: the summary of the cases run so far
        for p in procs.values():
            p.kill()
            p.wait()
        done = sum(sum(c.values()) for c in counts.values())
        print("stopped early")
    return _summary(args, counts, failures, done, t0)


def _loop(args, procs, last, seen, counts, failures, t0) -> int:
    done = 0
    while procs:
        ready, _, _ = select.select([p.stdout for p in procs.values()], [], [], 5)
        for j, p in list(procs.items()):
            if p.stdout in ready:
                line = p.stdout.readline()
                if not line:  # the worker ended: finished, or died (a memory limit, a crash)
                    rc = p.wait()
                    nxt = last[j] + args.jobs
                    del procs[j]
                    if nxt < args.cases:
                        failures.append({"i": nxt, "reader": "?", "bad": f"worker died (status {rc})"})
                        counts["?"]["died"] += 1
                        if nxt + args.jobs < args.cases:
                            procs[j], last[j], seen[j] = spawn(args, nxt + args.jobs), nxt, time.time() + 120
                    continue
                row = json.loads(line)
                last[j], seen[j], done = row["i"], time.time() + args.hang, done + 1
                counts[row["reader"]]["broken" if row["bad"] else row["status"]] += 1
                if row["bad"]:
                    failures.append(row)
                    if len(failures) <= args.show:
                        print(f"broken: case {row['i']} {row['reader']}: {row['bad']} | "
                              f"{row['err'].strip()[-200:]}", flush=True)
                if done % 5000 == 0:
                    print(f"{done:,} cases, {len(failures)} broken, {time.time() - t0:.0f} s", flush=True)
            elif time.time() > seen[j]:  # no answer: a hang
                p.kill()
                p.wait()
                nxt = last[j] + args.jobs
                failures.append({"i": nxt, "reader": "?", "bad": f"hang (no answer in {args.hang} s)"})
                counts["?"]["hang"] += 1
                del procs[j]
                if nxt + args.jobs < args.cases:
                    procs[j], last[j], seen[j] = spawn(args, nxt + args.jobs), nxt, time.time() + 120
    return done


def _summary(args, counts, failures, done, t0) -> int:
    print(f"\n{done:,} cases in {time.time() - t0:.0f} s (seed {args.seed}, {args.jobs} workers, "
          f"address space <= {args.mem_gib} GiB each)")
    for reader, c in sorted(counts.items()):
        print(f"  {reader:<9} " + ", ".join(f"{k}: {v:,}" for k, v in sorted(c.items(), key=str)))
    print(f"{len(failures)} broken")
    kinds = collections.defaultdict(list)
    for f in failures:
        kinds[(f["reader"], f["bad"][:60], (f.get("err") or "").strip()[:80])].append(f["i"])
    for (reader, bad, err), cases in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(cases):>6} x {reader}: {bad} | {err}\n"
              f"         reproduce: python bench/fault_campaign.py --seed {args.seed} --case {cases[0]}")
    if args.out:
        Path(args.out).write_text(json.dumps({"counts": counts, "failures": failures}, indent=1))
    return 1 if failures else 0


def one(args) -> int:
    from tests import fuzzcli as fc
    folder = Path(tempfile.mkdtemp(prefix=f"fault-case{args.case}-"))
    (folder / "seeds").mkdir()
    tables = seed_tables(folder / "seeds")
    reader = fc.READERS[args.case % len(fc.READERS)]
    argv, o, bad = fc.run_case(reader, fc.seeded(args.seed, args.case), folder, tables, fc.section_keys())
    print(f"reader {reader}; inputs kept in {folder}\ntrafficgen {' '.join(argv)}\nexit {o.status}\n"
          f"stderr:\n{o.err}broken: {bad}")
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--case", type=int, help="run this one case, verbosely")
    p.add_argument("--mem-gib", type=int, default=4, help="address-space limit per worker")
    p.add_argument("--hang", type=float, default=60.0, help="seconds without an answer that make a hang")
    p.add_argument("--real", type=int, default=0, help="every K-th generate case runs for real")
    p.add_argument("--show", type=int, default=200, help="print the first N failures as they come")
    p.add_argument("--out", help="write the counts and failures as JSON")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--step", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return 0
    return one(args) if args.case is not None else campaign(args)


if __name__ == "__main__":
    sys.exit(main())
