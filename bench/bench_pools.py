"""Connection pools of the rag gateway, read back from the tables (issue 15): connections,
those opened beside an idle one of the same gateway to the same backend, those carrying one
request, and when in the minute new ones open (after the first 10 s). With pools and without.
For bench/RESULTS.md, not a test (tests/test_pool.py checks one case).

    python bench/bench_pools.py                      # rag, 30 s and 150 s, seed 1
    python bench/bench_pools.py --duration 10m
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import trafficgen as tg  # noqa: E402
from tests.test_pool import measure  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", action="append", help="run lengths (default 30s and 150s)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dur in args.duration or ["30s", "150s"]:
            for name, over in (("pooled", []), ("unpooled", ["rag.pool_size=0"])):
                folder = Path(tmp) / f"{dur}-{name}"
                folder.mkdir()
                sc = tg.load_scenario("rag", over, duration=dur, seed=args.seed)
                tg.generate(sc, flows=folder / "flows.parquet", requests=folder / "requests.parquet")
                m = measure(folder)
                m.pop("calls")
                t = (pq.read_table(folder / "flows.parquet").column("start_ns").to_numpy() - sc.start_ns) / 1e9
                m["opens_per_10s_of_the_minute"] = np.histogram(t[t > 10] % 60, bins=6, range=(0, 60))[0].tolist()
                out[f"{dur} {name}"] = m
                print(dur, name, m, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
