"""Hosts and links, swept over every built-in scenario at each tap (issue 15): frames closer
than the tap's link can carry them (in one direction, one frame starting before the one ahead
of it has been serialized), consecutive frames that share a nanosecond timestamp and those of
one flow in opposite directions, and tshark's expert warnings. A sweep for bench/RESULTS.md,
not a test (the tests check one case of each).

    python bench/sweep_hosts.py                 # every built-in, 20 s, client and server taps
    python bench/sweep_hosts.py chat rag        # some of them
    python bench/sweep_hosts.py --tap default   # each scenario's own capture point

A scenario whose classes are not seen at a tap (rag and kv-transfer at the client) says so.
The link's rate is the one the tap pass uses (``engine.tap.tap_ns_per_byte``); a frame
occupies it for (L + 24) x 8 / rate, L as captured, and stamps are whole ns (one ns of
rounding is allowed).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import trafficgen as tg  # noqa: E402
from trafficgen.engine.tap import tap_ns_per_byte  # noqa: E402
from trafficgen.schema import CLASSES  # noqa: E402

BUILTINS = ["chat", "coding", "reasoning", "multimodal", "agentic", "rag", "kv-transfer", "enterprise-mix"]
FIELDS = ["frame.time_epoch", "tcp.stream", "udp.stream", "frame.len", "ip.src", "tcp.flags"]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def spacing(name: str, tap: str | None, packets: str, flows: str) -> dict:
    """Frames closer than serialization at the tap's link, from the packet and flow tables."""
    sc = tg.load_scenario(name, [f"topology.capture={tap}"] if tap else [])
    ns_per_byte = tap_ns_per_byte(sc)
    p = pq.read_table(packets, columns=["ts_ns", "flow_id", "direction", "wire_len"]).to_pandas()
    f = pq.read_table(flows, columns=["flow_id", "class"]).to_pandas()
    side = {c: sc.topology.side(c) or 0 for c in CLASSES}
    cls = dict(zip(f["flow_id"], f["class"].astype(str)))
    sent = (p["direction"].astype(str).to_numpy() == "down").astype(int) == \
        np.array([side[cls[x]] for x in p["flow_id"]])
    ts, wl, fid = p["ts_ns"].to_numpy(), p["wire_len"].to_numpy().astype(np.int64), p["flow_id"].to_numpy()
    close = across = 0
    for m in (sent, ~sent):
        bad = np.diff(ts[m]) < np.floor((wl[m][:-1] + 24) * ns_per_byte)
        close += int(bad.sum())
        across += int((bad & (fid[m][1:] != fid[m][:-1])).sum())
    return {"link_gbps": round(8 / ns_per_byte, 3), "closer_than_serialization": close,
            "of_them_across_flows": across}


def sweep(name: str, tap: str | None, folder: str, duration: str) -> dict | str:
    base = f"{folder}/{name}-{tap or 'default'}"
    done = run([sys.executable, "-m", "trafficgen", "generate", name, "--duration", duration, "--seed", "2",
                *(["-t", f"topology.capture={tap}"] if tap else []), "-o", base + ".pcap",
                "--packets", base + "-p.parquet", "--flows", base + "-f.parquet", "-q"])
    if done.returncode:
        return "not generated: " + done.stderr.strip()[-300:]
    expert = run(["tshark", "-r", base + ".pcap", "-q", "-z", "expert,warn"]).stdout
    warnings = [line.strip() for line in expert.splitlines() if line.strip()[:1].isdigit()]
    cols = [f for field in FIELDS for f in ("-e", field)]
    rows = [line.split("\t") for line in
            run(["tshark", "-r", base + ".pcap", "-T", "fields", *cols]).stdout.splitlines()]
    pairs = list(zip(rows, rows[1:]))
    same = [(a, b) for a, b in pairs if a[0] == b[0]]
    opposite = sum(1 for a, b in same if a[1] and a[1] == b[1] and a[4] != b[4])
    out = {"frames": len(rows), "same_ts_share": round(len(same) / max(1, len(pairs)), 5),
           "same_ts_same_flow_opposite": opposite, "expert_warnings": warnings[:6]}
    if rows:
        out.update(spacing(name, tap, base + "-p.parquet", base + "-f.parquet"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenarios", nargs="*", default=BUILTINS)
    ap.add_argument("--tap", action="append", choices=["client", "server", "default"],
                    help="capture points (default: client and server)")
    ap.add_argument("--duration", default="20s")
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="tg-sweep-")
    out = {}
    for name in args.scenarios:
        for tap in args.tap or ["client", "server"]:
            key = f"{name}/{tap}"
            out[key] = sweep(name, None if tap == "default" else tap, folder, args.duration)
            print(name, tap, out[key], flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
