"""Hosts and links, swept over every built-in scenario at both taps (issue 15): consecutive frames
that share a nanosecond timestamp, those of one flow in opposite directions, and tshark's expert
warnings. A sweep for bench/RESULTS.md, not a test (the tests check one case of each).

    python bench/sweep_hosts.py                 # every built-in, 20 s, both taps
    python bench/sweep_hosts.py chat rag        # some of them

A scenario whose classes are not seen at a tap (rag and kv-transfer at the client) says so.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile

BUILTINS = ["chat", "coding", "reasoning", "multimodal", "agentic", "rag", "kv-transfer", "enterprise-mix"]
FIELDS = ["frame.time_epoch", "tcp.stream", "udp.stream", "frame.len", "ip.src", "tcp.flags"]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def sweep(name: str, tap: str, folder: str) -> dict | str:
    pcap = f"{folder}/{name}-{tap}.pcap"
    done = run([sys.executable, "-m", "trafficgen", "generate", name, "--duration", "20s", "--seed", "2",
                "-t", f"topology.capture={tap}", "-o", pcap, "-q"])
    if done.returncode:
        return "not generated: " + done.stderr.strip()[-300:]
    expert = run(["tshark", "-r", pcap, "-q", "-z", "expert,warn"]).stdout
    warnings = [line.strip() for line in expert.splitlines() if line.strip()[:1].isdigit()]
    cols = [f for field in FIELDS for f in ("-e", field)]
    rows = [line.split("\t") for line in run(["tshark", "-r", pcap, "-T", "fields", *cols]).stdout.splitlines()]
    pairs = list(zip(rows, rows[1:]))
    same = [(a, b) for a, b in pairs if a[0] == b[0]]
    opposite = sum(1 for a, b in same if a[1] and a[1] == b[1] and a[4] != b[4])
    return {"frames": len(rows), "same_ts_share": round(len(same) / max(1, len(pairs)), 5),
            "same_ts_same_flow_opposite": opposite, "expert_warnings": warnings[:6]}


def main() -> int:
    folder = tempfile.mkdtemp(prefix="tg-sweep-")
    out = {}
    for name in sys.argv[1:] or BUILTINS:
        for tap in ("client", "server"):
            out[f"{name}/{tap}"] = sweep(name, tap, folder)
            print(name, tap, out[f"{name}/{tap}"], flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
