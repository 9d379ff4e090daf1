"""The cost of each network option: ``generate chat`` to a pcap with and without it.

    python bench/bench_network.py              # 60 s of chat (about 0.4 M packets) per option
    python bench/bench_network.py --quick      # 10 s, 1 round: what CI runs so this never rots
    python bench/bench_network.py --json

Besides wall seconds, each run's CPU seconds (all threads) and the seconds its main thread
spent building frames (the encoder plus the network post-pass: what an option adds) are
recorded. Every option runs the whole pipeline (sessions, TCP/TLS emulation, merging, frame building,
the network rewrite, pcap writing) into the same directory (``/dev/shm`` by default), in
interleaved rounds: plain IPv4, then each option, then again. Each figure is the best round;
each ratio (option seconds / plain seconds, per packet) the median of the rounds' own ratios,
so a slow spell of a shared machine hits both sides of a ratio. The target: every option
within 1.5x of plain IPv4. Keyed MACsec calls the ``cryptography`` library once per frame and
is reported beside the others, not held to that target.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generate import default_dir, machine  # noqa: E402

import trafficgen as tg  # noqa: E402
from trafficgen.engine.core import Engine  # noqa: E402

KEY = "000102030405060708090a0b0c0d0e0f"  # a benchmark key, not a secret
OPTIONS = {
    "plain IPv4": [],
    "ip = 6": ["network.ip=6"],
    "ip = dual (50%)": ["network.ip=dual"],
    "vlan = 100": ["network.vlan=100"],
    "vlan = [100, 200] (QinQ)": ["network.vlan=[100, 200]"],
    "encap = mpls (2 labels)": ["network.encap=mpls", "network.mpls_labels=[16001, 24005]"],
    "encap = vxlan": ["network.encap=vxlan"],
    "encap = gre": ["network.encap=gre"],
    "encap = srv6 (2 segments)": ["network.encap=srv6", 'network.srv6_segments=["fc00:0:2::", "fc00:0:7::"]'],
    "dscp/ecn per class": ["network.dscp={chat=34, default=10}", "network.ecn=ect0"],
    "macsec (no key)": ["network.macsec=true"],
    "quic = 0.5 (HTTP/3 share)": ["network.quic=0.5"],
    "dual + QinQ + vxlan + macsec": ["network.ip=dual", "network.vlan=[100, 200]", "network.encap=vxlan",
                                     "network.macsec=true"],
    "macsec with key (GCM-AES-128)": ["network.macsec=true", f"network.macsec_key={KEY}"],
}
KEYED = "macsec with key (GCM-AES-128)"
_FRAME_S = [0.0]  # seconds spent building frames (encoder + network post-pass), main thread


def _timed_batches():
    """Time Engine._batch (frame building, the network rewrite, sealing) inside each run."""
    inner = Engine._batch

    def batch(self, *args, **kw):
        t0 = time.perf_counter()
        try:
            return inner(self, *args, **kw)
        finally:
            _FRAME_S[0] += time.perf_counter() - t0
    Engine._batch = batch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 s of chat, 1 round")
    ap.add_argument("--duration", default=None, help="scenario duration (default 60s)")
    ap.add_argument("--repeat", type=int, default=None, help="interleaved rounds (default 3)")
    ap.add_argument("--dir", default=default_dir(), help="where the files go (default /dev/shm)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args(argv)
    duration = a.duration or ("10s" if a.quick else "60s")
    repeat = a.repeat or (1 if a.quick else 3)
    scenarios = {name: tg.load_scenario("chat", over, duration=duration, seed=7)
                 for name, over in OPTIONS.items()}
    _timed_batches()
    times: dict[str, list[float]] = {name: [] for name in OPTIONS}
    cpu: dict[str, list[float]] = {name: [] for name in OPTIONS}
    frame_s: dict[str, list[float]] = {name: [] for name in OPTIONS}
    reports: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(dir=a.dir, prefix="tg-bench-net-") as tmp:
        path = Path(tmp) / "net.pcap"
        for sc in scenarios.values():  # warm-up: numba's cache loads, pages settle
            tg.generate(sc, pcap=path)
        for _ in range(repeat):
            for name, sc in scenarios.items():
                path.unlink(missing_ok=True)
                _FRAME_S[0] = 0.0
                t0, c0 = time.perf_counter(), time.process_time()
                reports[name] = tg.generate(sc, pcap=path)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                frame_s[name].append(_FRAME_S[0])
    plain = "plain IPv4"
    rows = {}
    for name in OPTIONS:
        r = reports[name]
        best = min(times[name])
        def ratio(fig, r=r, name=name):
            return float(np.median([(t / r["packets"]) / (p / reports[plain]["packets"])
                                    for t, p in zip(fig[name], fig[plain])]))
        rows[name] = {"packets": r["packets"], "mb": r["wire_bytes"] / 1e6, "seconds": best,
                      "packets_per_s": r["packets"] / best, "ratio_vs_plain": ratio(times),
                      "cpu_s": min(cpu[name]), "cpu_ratio_vs_plain": ratio(cpu),
                      "frame_stage_s": min(frame_s[name])}
    result = {"command": "python bench/bench_network.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": machine(), "scenario": f"chat, {duration}, seed 7",
              "dir": a.dir or tempfile.gettempdir(), "rounds": repeat, "options": rows}
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"machine: {result['machine']}\nscenario: {result['scenario']} -> {result['dir']}, "
              f"{repeat} interleaved rounds")
        print(f"{'option':34}{'packets':>10}{'MB':>8}{'seconds':>9}{'packets/s':>12}{'x plain':>9}"
              f"{'cpu s':>8}{'x plain':>9}{'frames s':>10}")
        for name, r in rows.items():
            print(f"{name:34}{r['packets']:>10,}{r['mb']:>8.1f}{r['seconds']:>9.3f}"
                  f"{r['packets_per_s']:>12,.0f}{r['ratio_vs_plain']:>9.2f}{r['cpu_s']:>8.3f}"
                  f"{r['cpu_ratio_vs_plain']:>9.2f}{r['frame_stage_s']:>10.3f}")
    over = [n for n, r in rows.items() if n != KEYED and r["ratio_vs_plain"] > 1.5]
    if over and not a.quick:
        print(f"over the 1.5x target: {', '.join(over)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
