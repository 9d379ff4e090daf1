"""Two ports (``replay --peer-iface``) beside one port and tcpreplay, on veth pairs.

    sudo python bench/bench_dut.py            # 3 interleaved rounds
    sudo python bench/bench_dut.py --quick    # small files, one round
    sudo python bench/bench_dut.py --json

Makes two veth pairs (A and B; unique names, deleted afterwards) and a file of chat traffic
(``trafficgen generate``, tiled to size, client side 10.20.0.0/16), then measures in rounds:

1. **top speed**: packets/s of ``--topspeed`` out of one port (A), out of two (client side A,
   server side B, ``--client-net``), each on one thread and on two (``--tx-threads 2``), and
   ``tcpreplay -K --topspeed`` out of A; the peers' rx counters must grow by every frame.
2. **pacing at 20,000 packets/s**: tcpdump on the far end of each port; the two captures merged
   by time make one stream whose gaps are compared with 1/rate (|gap - 50 us|: p50, p99), and
   the report's own departure error (p99) beside it, for one port and for two.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trafficgen as tg  # noqa: E402
from tests.replay_net import PeerCapture, VethPair, net_admin_reason, read_pcap, write_pcap  # noqa: E402

TG = [sys.executable, "-m", "trafficgen", "replay"]
T0 = 1_700_000_000 * 10**9
CLIENTS = "10.20.0.0/16"
TOP_MODES = ("one port", "two ports", "one port, 2 threads", "two ports, 2 threads", "tcpreplay -K")


def chat_file(folder: Path, n: int, name: str) -> Path:
    if not (folder / "chat.pcap").exists():
        sc = tg.load_scenario("chat", {"chat.rate": "20/s"}, duration="4s", seed=3)
        tg.generate(sc, pcap=folder / "chat.pcap")
    frames = read_pcap(folder / "chat.pcap")[1]
    reps = -(-n // len(frames))
    path = folder / name
    write_pcap(path, (frames * reps)[:n], T0 + np.arange(n, dtype=np.int64) * 10_000)
    return path


def rx(dev: str) -> int:
    return int(Path(f"/sys/class/net/{dev}/statistics/rx_packets").read_text())


def run_tg(path: Path, a: VethPair, b: VethPair | None, *args: str) -> dict:
    two = ["--peer-iface", b.name, "--client-net", CLIENTS] if b else []
    done = subprocess.run([*TG, str(path), "--iface", a.name, *two, *args, "--json"],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"trafficgen replay failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def top_speed(mode: str, path: Path, n: int, a: VethPair, b: VethPair) -> dict:
    before = rx(a.peer) + rx(b.peer)
    if mode == "tcpreplay -K":
        done = subprocess.run(["tcpreplay", "-i", a.name, "-K", "-t", str(path)], capture_output=True,
                              text=True, timeout=600)
        m = re.search(r"Rated: .*?([\d.]+) pps", done.stdout + done.stderr)
        pps = float(m.group(1)) if m else None
    else:
        threads = ["--tx-threads", "2"] if "2 threads" in mode else []
        pps = run_tg(path, a, b if mode.startswith("two ports") else None, "--topspeed",
                     *threads)["packets_per_s"]
    return {"pps": pps, "all_arrived": rx(a.peer) + rx(b.peer) - before == n}


def paced(mode: str, path: Path, pps: int, a: VethPair, b: VethPair, folder: Path) -> dict:
    caps = [folder / "a.pcap", folder / "b.pcap"]
    with PeerCapture(a.peer, caps[0]), PeerCapture(b.peer, caps[1]):
        rep = run_tg(path, a, b if mode == "two ports" else None, "--pps", str(pps))
    ts = np.sort(np.concatenate([read_pcap(c)[0] for c in caps]))
    err = np.abs(np.diff(ts) - 1e9 / pps) / 1e3
    return {"arrived": int(ts.shape[0]), "gap_err_p50_us": float(np.percentile(err, 50)),
            "gap_err_p99_us": float(np.percentile(err, 99)),
            "departure_p99_us": rep["departure_error_us"]["p99"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    reason = net_admin_reason() or next((f"{t} is not installed" for t in ("tcpreplay", "tcpdump")
                                         if shutil.which(t) is None), None)
    if reason:
        print(f"bench_dut: skipped: {reason}", file=sys.stderr)
        return 1 if os.environ.get("TRAFFICGEN_REQUIRE_TOOLS") else 0
    n_top, n_gap = (50_000, 4_000) if args.quick else (500_000, 40_000)
    t = time.perf_counter()
    res: dict = {"top": {}, "pps20000": {}}
    with tempfile.TemporaryDirectory(prefix="tg-bench-dut-") as d, VethPair() as a, VethPair() as b:
        folder = Path(d)
        top, gap = chat_file(folder, n_top, "top.pcap"), chat_file(folder, n_gap, "gap.pcap")
        for _ in range(rounds):
            for mode in TOP_MODES:
                res["top"].setdefault(mode, []).append(top_speed(mode, top, n_top, a, b))
            for mode in ("one port", "two ports"):
                res["pps20000"].setdefault(mode, []).append(paced(mode, gap, 20_000, a, b, folder))
    summary = {k: {mode: {f: float(np.median([r[f] for r in runs])) for f in runs[0] if f != "all_arrived"}
                   | ({"all_arrived": all(r["all_arrived"] for r in runs)} if "all_arrived" in runs[0] else {})
                   for mode, runs in v.items()} for k, v in res.items()}
    tr = summary["top"]["tcpreplay -K"]["pps"]
    for mode in TOP_MODES[:-1]:
        summary[f"ratio {mode} / tcpreplay -K"] = summary["top"][mode]["pps"] / tr if tr else None
    meta = {"cpus": os.cpu_count(), "rounds": rounds, "packets": {"top": n_top, "pps20000": n_gap},
            "seconds": round(time.perf_counter() - t, 1)}
    if args.json:
        print(json.dumps({"meta": meta, "summary": summary, "rounds": res}, indent=2))
        return 0
    print(f"{meta}\n")
    for mode, row in summary["top"].items():
        print(f"top speed, {mode:20s}: {row['pps']:>12,.0f} packets/s (all arrived: {row.get('all_arrived')})")
    for mode, row in summary["pps20000"].items():
        print(f"20 kpps, {mode:9s}: gap error p50 {row['gap_err_p50_us']:.2f} us, p99 "
              f"{row['gap_err_p99_us']:.2f} us; departure error p99 {row['departure_p99_us']:.1f} us; "
              f"{row['arrived']:,.0f} arrived")
    print()
    for mode in TOP_MODES[:-1]:
        print(f"{mode} / tcpreplay -K: {summary[f'ratio {mode} / tcpreplay -K']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
