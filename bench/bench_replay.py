"""Replay onto a veth pair: trafficgen beside tcpreplay, same pair, same files, same run.

    sudo python bench/bench_replay.py              # the figures of bench/RESULTS.md
    sudo python bench/bench_replay.py --quick      # a few seconds: what CI runs so this never rots
    sudo python bench/bench_replay.py --json       # figures as JSON

It makes its own veth pair (unique names, deleted afterwards) and its files (chat traffic
from ``trafficgen generate``, tiled to size) in a temporary folder, then measures, in
interleaved rounds (each tool in turn, so a slow spell of the shared machine hits both):

1. **top speed**: ``--topspeed`` packets/s as each tool reports it (tcpreplay with its file
   preloaded, ``-K``, its best, and without); the peer's rx counter must grow by every
   frame sent.
2. **gap error at a fixed rate** (20,000 and 100,000 packets/s): tcpdump on the peer end
   stamps every frame as it arrives; the gap error is |gap - 1/rate| per consecutive pair,
   p50, p99 and p99.9, and the share of gaps more than 2 us off (p99 alone sits near one gap
   in both tools: 1% of gaps are a catch-up after a frame that left late, and a catch-up gap
   is the back-to-back time); and each frame's lateness against the ideal schedule (first frame + k/rate,
   shifted so the earliest is 0), p50 and p99, which shows drift that gaps hide.
3. **original timing**: a file whose frames are 12 us apart, sent at its own timing; how late
   the last frame arrives, as a share of the file's span.
4. **a rate out of reach** (100 M packets/s asked): whether the tool says so.

Variants: trafficgen as it runs by default (its sending thread SCHED_FIFO where permitted)
and with ``--no-realtime``; tcpreplay as is and under ``chrt -f 10`` (the same priority).
Speed is measured and quoted as ratios, never asserted: this script fails only if it cannot
run (``TRAFFICGEN_REQUIRE_TOOLS=1`` makes a missing tool or privilege a failure, as in CI).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
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


def chat_frames(folder: Path) -> list[bytes]:
    """The frames of a few seconds of generated chat traffic (TCP/TLS, mixed sizes)."""
    sc = tg.load_scenario("chat", {"chat.rate": "20/s"}, duration="4s", seed=3)
    tg.generate(sc, pcap=folder / "chat.pcap")
    return read_pcap(folder / "chat.pcap")[1]


def tiled(frames: list[bytes], n: int, path: Path, gap_ns: int) -> Path:
    reps = -(-n // len(frames))
    write_pcap(path, (frames * reps)[:n], T0 + np.arange(n, dtype=np.int64) * gap_ns)
    return path


def rx_packets(dev: str) -> int:
    return int(Path(f"/sys/class/net/{dev}/statistics/rx_packets").read_text())


# --- one run of each tool -------------------------------------------------------------------

def run_tg(path: Path, iface: str, *args: str) -> dict:
    done = subprocess.run([*TG, str(path), "--iface", iface, *args, "--json"], capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"trafficgen replay failed: {done.stderr.strip()}")
    rep = json.loads(done.stdout)
    return {"pps": rep["packets_per_s"], "packets": rep["packets"], "seconds": rep["elapsed_s"],
            "warned": bool(rep["warnings"]) and "warning:" in done.stderr}


def run_tcpreplay(path: Path, iface: str, *args: str, rt: bool = False) -> dict:
    cmd = (["chrt", "-f", "10"] if rt else []) + ["tcpreplay", "-i", iface, *args, str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"tcpreplay failed: {done.stderr.strip() or done.stdout.strip()}")
    out = done.stdout + done.stderr
    m = re.search(r"Actual: (\d+) packets .* sent in ([\d.]+) seconds", out)
    pps = re.search(r"Rated: .*?([\d.]+) pps", out)
    return {"pps": float(pps.group(1)) if pps else None, "packets": int(m.group(1)) if m else None,
            "seconds": float(m.group(2)) if m else None,
            "warned": bool(re.search(r"warn|unable|cannot|can't", out, re.I))}


TOOLS = {
    "trafficgen": lambda f, i, *a: run_tg(f, i, *a),
    "trafficgen --no-realtime": lambda f, i, *a: run_tg(f, i, *a, "--no-realtime"),
    "tcpreplay": lambda f, i, *a: run_tcpreplay(f, i, *_tcpreplay_args(a)),
    "tcpreplay (chrt -f 10)": lambda f, i, *a: run_tcpreplay(f, i, *_tcpreplay_args(a), rt=True),
}


def _tcpreplay_args(args) -> list[str]:
    """trafficgen's spelling of a speed -> tcpreplay's (they are the same options)."""
    return ["-K" if a == "--topspeed" else a for a in args] + (["-t"] if "--topspeed" in args else [])


# --- the measurements -----------------------------------------------------------------------

def top_speed(tool: str, veth: VethPair, path: Path, n: int) -> dict:
    before = rx_packets(veth.peer)
    r = TOOLS[tool](path, veth.name, "--topspeed")
    r["arrived"] = rx_packets(veth.peer) - before
    r["all_arrived"] = r["arrived"] == n
    if tool.startswith("tcpreplay"):  # also as most people run it: read while sending
        r["pps_not_preloaded"] = run_tcpreplay(path, veth.name, "-t", rt="chrt" in tool)["pps"]
    return r


def gaps_at(tool: str, veth: VethPair, path: Path, pps: int, folder: Path) -> dict:
    cap = folder / "peer.pcap"
    with PeerCapture(veth.peer, cap):
        r = TOOLS[tool](path, veth.name, "--pps", str(pps))
    ts, _ = read_pcap(cap)
    err = np.abs(np.diff(ts) - 1e9 / pps) / 1e3
    late = ts - ts[0] - np.arange(ts.shape[0]) * 1e9 / pps  # against the ideal schedule
    late = (late - late.min()) / 1e3
    r.update(arrived=int(ts.shape[0]), gap_err_p50_us=float(np.percentile(err, 50)),
             gap_err_p99_us=float(np.percentile(err, 99)),
             gap_err_p999_us=float(np.percentile(err, 99.9)),
             gaps_off_2us_pct=float(100 * np.mean(err > 2)),
             late_p50_us=float(np.percentile(late, 50)), late_p99_us=float(np.percentile(late, 99)),
             achieved_pps=(ts.shape[0] - 1) / ((ts[-1] - ts[0]) / 1e9))
    return r


def original_timing(tool: str, veth: VethPair, path: Path, span_ns: int, folder: Path) -> dict:
    cap = folder / "peer.pcap"
    with PeerCapture(veth.peer, cap):
        r = TOOLS[tool](path, veth.name)
    ts, _ = read_pcap(cap)
    r.update(arrived=int(ts.shape[0]), late_pct=100 * ((ts[-1] - ts[0]) / span_ns - 1))
    return r


def out_of_reach(tool: str, veth: VethPair, path: Path) -> dict:
    return TOOLS[tool](path, veth.name, "--pps", "100000000")


def measure(args, folder: Path) -> dict:
    n_top = 50_000 if args.quick else 500_000
    n_gap = {20_000: 4_000 if args.quick else 40_000, 100_000: 20_000 if args.quick else 200_000}
    n_orig = 20_000 if args.quick else 100_000
    frames = chat_frames(folder)
    top = tiled(frames, n_top, folder / "top.pcap", 10_000)
    gap = {pps: tiled(frames, n, folder / f"gap{pps}.pcap", 10_000) for pps, n in n_gap.items()}
    orig = tiled(frames, n_orig, folder / "orig.pcap", 12_000)
    reach = tiled(frames, 200_000 if not args.quick else 50_000, folder / "reach.pcap", 10_000)
    tools = list(TOOLS) if not args.quick else ["trafficgen", "tcpreplay"]
    rounds: list[dict] = []
    with VethPair() as veth:
        for _ in range(args.rounds):
            rnd: dict = {}
            for tool in tools:
                rnd[tool] = {"top": top_speed(tool, veth, top, n_top),
                             **{f"pps{p}": gaps_at(tool, veth, gap[p], p, folder) for p in gap},
                             "original": original_timing(tool, veth, orig, (n_orig - 1) * 12_000, folder),
                             "unreachable": out_of_reach(tool, veth, reach)}
            rounds.append(rnd)
    return {"rounds": rounds, "tools": tools, "n": {"top": n_top, "gap": n_gap, "original": n_orig},
            "frames_mean_bytes": float(np.mean([len(f) for f in frames]))}


def summary(res: dict) -> dict:
    """Per tool: the median over rounds of each figure; ratios against tcpreplay."""
    out: dict = {}
    for tool in res["tools"]:
        runs = [r[tool] for r in res["rounds"]]

        def med(key, sub, runs=runs):
            vals = [r[key][sub] for r in runs if r[key].get(sub) is not None]
            return float(np.median(vals)) if vals else None
        row = {"top_pps": med("top", "pps"), "top_pps_not_preloaded": med("top", "pps_not_preloaded"),
               "top_all_arrived": all(r["top"]["all_arrived"] for r in runs),
               "original_late_pct": med("original", "late_pct"),
               "warns_out_of_reach": any(r["unreachable"]["warned"] for r in runs)}
        for p in (20_000, 100_000):
            row[f"gap_err_p50_us@{p}"] = med(f"pps{p}", "gap_err_p50_us")
            row[f"gap_err_p99_us@{p}"] = med(f"pps{p}", "gap_err_p99_us")
            row[f"achieved_pps@{p}"] = med(f"pps{p}", "achieved_pps")
            row[f"gap_err_p999_us@{p}"] = med(f"pps{p}", "gap_err_p999_us")
            row[f"gaps_off_2us_pct@{p}"] = med(f"pps{p}", "gaps_off_2us_pct")
            row[f"late_p50_us@{p}"] = med(f"pps{p}", "late_p50_us")
            row[f"late_p99_us@{p}"] = med(f"pps{p}", "late_p99_us")
        out[tool] = row
    if "tcpreplay" in out and out["tcpreplay"]["top_pps"]:
        tg_top, tr = out["trafficgen"]["top_pps"], out["tcpreplay"]
        out["ratio_top_speed_vs_tcpreplay_preloaded"] = tg_top / tr["top_pps"]
        out["ratio_top_speed_vs_tcpreplay_not_preloaded"] = tg_top / tr["top_pps_not_preloaded"]
    return out


def print_table(s: dict, res: dict) -> None:
    cols = [("top speed pps (tcpreplay: -K / without)", "top_pps", "{:,.0f}"),
            ("all arrived", "top_all_arrived", "{}"),
            ("gap err p50/p99/p99.9 us, % off >2us @20k", None, None),
            ("gap err p50/p99/p99.9 us, % off >2us @100k", None, None),
            ("late vs schedule p50/p99 us @20k", None, None),
            ("late vs schedule p50/p99 us @100k", None, None),
            ("original timing late", "original_late_pct", "{:+.2f}%"),
            ("warns when out of reach", "warns_out_of_reach", "{}")]
    print("| tool | " + " | ".join(c[0] for c in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for tool in res["tools"]:
        row = s[tool]
        cells = []
        for _, key, fmt in cols[:2]:
            cells.append(fmt.format(row[key]) if row[key] is not None else "-")
        if row["top_pps_not_preloaded"]:
            cells[0] += f" / {row['top_pps_not_preloaded']:,.0f}"
        for p in (20_000, 100_000):
            cells.append(f"{row[f'gap_err_p50_us@{p}']:.1f} / {row[f'gap_err_p99_us@{p}']:.1f} / "
                         f"{row[f'gap_err_p999_us@{p}']:.1f}, {row[f'gaps_off_2us_pct@{p}']:.2f}%")
        for p in (20_000, 100_000):
            cells.append(f"{row[f'late_p50_us@{p}']:.1f} / {row[f'late_p99_us@{p}']:.1f}")
        cells.append(cols[6][2].format(row["original_late_pct"]))
        cells.append(str(row["warns_out_of_reach"]))
        print(f"| {tool} | " + " | ".join(cells) + " |")
    if "ratio_top_speed_vs_tcpreplay_preloaded" in s:
        print(f"\ntop speed, trafficgen / tcpreplay: "
              f"{s['ratio_top_speed_vs_tcpreplay_preloaded']:.2f}x (tcpreplay -K), "
              f"{s['ratio_top_speed_vs_tcpreplay_not_preloaded']:.2f}x (tcpreplay without -K)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small files, one round (CI)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    reason = net_admin_reason() or next((f"{t} is not installed" for t in ("tcpreplay", "tcpdump", "chrt")
                                         if shutil.which(t) is None), None)
    if reason:
        print(f"bench_replay: skipped: {reason}", file=sys.stderr)
        return 1 if os.environ.get("TRAFFICGEN_REQUIRE_TOOLS") else 0
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tg-bench-replay-") as folder:
        res = measure(args, Path(folder))
    s = summary(res)
    meta = {"machine": f"{platform.node()} {os.cpu_count()} cpus {platform.machine()}",
            "python": platform.python_version(), "trafficgen": tg.__version__,
            "seconds": round(time.perf_counter() - t, 1)}
    if args.json:
        print(json.dumps({"meta": meta, "summary": s, **res}, indent=2))
    else:
        print(f"{meta['machine']}, {args.rounds} round(s), {meta['seconds']} s; frames of "
              f"{res['frames_mean_bytes']:.0f} B on average; packets {res['n']}\n")
        print_table(s, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
