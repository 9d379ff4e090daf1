"""replay's AF_XDP path (``--xdp``) beside its AF_PACKET path and ``tcpreplay -K``, on a veth pair.

    sudo python bench/bench_afxdp.py [--frames 500000] [--rounds 3] [--pps 20000] [--json]

Top speed: the same file (a chat capture repeated to ``--frames`` frames) sent by
``trafficgen replay --topspeed --xdp`` (AF_XDP sockets, TX only, copy mode on a veth: it
has no zero-copy), ``trafficgen replay --topspeed`` (AF_PACKET, sendmmsg) and ``tcpreplay
-K --topspeed`` (preloaded), interleaved round by round; the peer's rx counter must grow by
every frame. Paced: ``--pps`` on both trafficgen paths, the report's departure error and the
gap error of a tcpdump on the peer (|gap - 1/pps|).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trafficgen as tg  # noqa: E402
from tests.replay_net import PeerCapture, VethPair, net_admin_reason, read_pcap, write_pcap  # noqa: E402

TG = [sys.executable, "-m", "trafficgen", "replay"]
MODES = ("replay --xdp (af_xdp)", "replay (af_packet)", "tcpreplay -K")
T0 = 1_700_000_000 * 10**9


def rx(dev: str) -> int:
    return int(Path(f"/sys/class/net/{dev}/statistics/rx_packets").read_text())


def run_tg(path: Path, veth: VethPair, *args: str) -> dict:
    done = subprocess.run([*TG, str(path), "--iface", veth.name, *args, "--json"],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"trafficgen replay failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def top(mode: str, path: Path, n: int, veth: VethPair) -> dict:
    before = rx(veth.peer)
    path_used = None
    if mode == "tcpreplay -K":
        done = subprocess.run(["tcpreplay", "-i", veth.name, "-K", "-t", str(path)],
                              capture_output=True, text=True, timeout=600)
        m = re.search(r"Rated: .*?([\d.]+) pps", done.stdout + done.stderr)
        pps = float(m.group(1)) if m else None
    else:
        rep = run_tg(path, veth, "--topspeed", *(["--xdp"] if "xdp" in mode else []))
        pps, path_used = rep["packets_per_s"], rep["path"]
    return {"pps": pps, "arrived": rx(veth.peer) - before, "all_arrived": rx(veth.peer) - before == n,
            "path": path_used}


def paced(mode: str, path: Path, pps: int, veth: VethPair, folder: Path) -> dict:
    cap = folder / "peer.pcap"
    with PeerCapture(veth.peer, cap):
        rep = run_tg(path, veth, "--pps", str(pps), *(["--xdp"] if "xdp" in mode else []))
    ts = read_pcap(cap)[0]
    err = np.abs(np.diff(ts) - 1e9 / pps) / 1e3
    return {"arrived": int(ts.shape[0]), "gap_err_p50_us": float(np.percentile(err, 50)),
            "gap_err_p99_us": float(np.percentile(err, 99)),
            "departure_p99_us": rep["departure_error_us"]["p99"], "path": rep["path"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pps", type=int, default=20_000)
    ap.add_argument("--paced-frames", type=int, default=40_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    reason = net_admin_reason() or next((f"{t} is not installed" for t in ("tcpreplay", "tcpdump")
                                         if subprocess.run(["which", t], capture_output=True).returncode), None)
    if reason:
        print(f"bench_afxdp: skipped: {reason}", file=sys.stderr)
        return 1 if os.environ.get("TRAFFICGEN_REQUIRE_TOOLS") else 0
    res: dict = {"top": {m: [] for m in MODES}, "paced": {m: [] for m in MODES[:2]}}
    with tempfile.TemporaryDirectory(prefix="tg-bench-xdp-") as d, VethPair() as veth:
        folder = Path(d)
        sc = tg.load_scenario("chat", {"chat.rate": "20/s"}, duration="4s", seed=3)
        tg.generate(sc, pcap=folder / "chat.pcap")
        frames = read_pcap(folder / "chat.pcap")[1]
        files = {}
        for name, n, gap in (("top.pcap", args.frames, 1000), ("paced.pcap", args.paced_frames, 1000)):
            files[name] = folder / name
            write_pcap(files[name], (frames * -(-n // len(frames)))[:n], T0 + np.arange(n, dtype=np.int64) * gap)
        for _ in range(args.rounds):
            for mode in MODES:
                res["top"][mode].append(top(mode, files["top.pcap"], args.frames, veth))
            for mode in MODES[:2]:
                res["paced"][mode].append(paced(mode, files["paced.pcap"], args.pps, veth, folder))
    summary = {"top": {m: {"pps_median": float(np.median([r["pps"] for r in v])),
                           "all_arrived": all(r["all_arrived"] for r in v),
                           "paths": sorted({str(r["path"]) for r in v})} for m, v in res["top"].items()},
               "paced": {m: {k: float(np.median([r[k] for r in v])) for k in
                             ("gap_err_p50_us", "gap_err_p99_us", "departure_p99_us")}
                         for m, v in res["paced"].items()}}
    tr = summary["top"]["tcpreplay -K"]["pps_median"]
    for m in MODES[:2]:
        summary["top"][m]["x_tcpreplay"] = summary["top"][m]["pps_median"] / tr if tr else None
    if args.json:
        print(json.dumps({"summary": summary, "rounds": res}, indent=2))
        return 0
    print(f"top speed, {args.frames:,} frames, {args.rounds} rounds interleaved (medians):")
    for m, v in summary["top"].items():
        x = f", {v['x_tcpreplay']:.2f}x tcpreplay -K" if "x_tcpreplay" in v else ""
        print(f"  {m:24s} {v['pps_median']:>12,.0f} packets/s{x}; all arrived: {v['all_arrived']}; "
              f"path: {'/'.join(v['paths'])}")
    print(f"paced at {args.pps:,} packets/s, {args.paced_frames:,} frames (medians):")
    for m, v in summary["paced"].items():
        print(f"  {m:24s} gap error p50 {v['gap_err_p50_us']:.2f} us, p99 {v['gap_err_p99_us']:.2f} us; "
              f"departure p99 {v['departure_p99_us']:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
