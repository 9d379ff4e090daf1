"""RoCEv2 frame speed: the CRC-32 kernel, the frame encoder on kv_transfer rows, the pipeline.

    python bench/bench_roce.py            # 10 minutes of the kv-transfer scenario (~3.4 GB)
    python bench/bench_roce.py --quick    # 60 s at 0.05/s: what CI can afford
    python bench/bench_roce.py --json
    python bench/bench_roce.py --impair [--quick]   # the cost of ECN/CNP/DCQCN and loss/NAK/go-back-N

Three figures, each the best of ``--repeat`` rounds:

1. **crc32**: ``kernels.udp.crc32_update`` (slicing-by-16) over a 64 MiB buffer, beside
   ``zlib.crc32`` on the same bytes (the ICRC is the same CRC, so zlib is the ceiling to beat).
2. **encoder**: ``kernels.frames.encode`` alone over the scenario's schedule rows (ICRC, IPv4
   and UDP checksums, payload copy), frames/s and MB/s of frames, no pcap headers.
3. **pipeline**: ``trafficgen.generate(kv-transfer, pcap=...)`` into ``--dir`` (``/dev/shm``),
   the whole thing: transfers, packets, merge, frames, pcap writing.

``--impair`` instead runs the same scenario clean and under ``[network.impair]`` settings
(:data:`IMPAIRMENTS`): per setting the schedule alone (``batches(frames=False)``: the transfers'
simulation, ``kernels.roce`` when impaired, ``kernels.kv`` when clean), the whole pipeline, the
packets made and how many are CNPs, NAKs, resends and lost, each against the clean run's; in CPU
seconds of this process (its threads included), steadier than wall time on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

import trafficgen as tg
from trafficgen.engine.core import POOL_BYTES, Engine
from trafficgen.kernels import frames as kf
from trafficgen.kernels import udp as ku
from trafficgen.kernels.rng import fill_bytes, key_of


def best(fn, repeat: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def crc_figures(repeat: int) -> dict:
    buf = np.random.default_rng(0).integers(0, 256, 64 << 20, dtype=np.uint8)
    ku.crc32_update(np.int64(0xFFFFFFFF), buf, 0, 64)  # compile / load
    raw = buf.tobytes()
    ours = best(lambda: ku.crc32_update(np.int64(0xFFFFFFFF), buf, 0, buf.shape[0]), repeat)
    theirs = best(lambda: zlib.crc32(raw), repeat)
    return {"bytes": buf.shape[0], "crc32_MBps": buf.shape[0] / ours / 1e6,
            "zlib_MBps": buf.shape[0] / theirs / 1e6}


def schedule(sc, limit: int):
    """The first ``limit`` schedule rows and the flow rows of the scenario (no frames)."""
    rows, flows, n = [], [], 0
    for b in tg.batches(sc, frames=False):
        flows.append(b.flows)
        rows.append(b.packets[:limit - n])
        n += rows[-1].shape[0]
        if n >= limit:
            break
    return np.concatenate(rows), np.concatenate(flows)


def encoder_figures(sc, limit: int, repeat: int) -> dict:
    rows, flows = schedule(sc, limit)
    eng = Engine(sc)
    a = eng.flow_attrs(flows)
    pool = np.empty(POOL_BYTES, np.uint8)
    fill_bytes(key_of(1), pool)
    tpl = eng.templates
    buf = np.empty(kf.frame_space(rows["wire_len"], False), np.uint8)
    offsets = np.empty(rows.shape[0], np.int64)
    packets = kf.PacketRows(
        ts=rows["ts_ns"], flow_row=rows["flow_id"], dirs=rows["direction"], seq=rows["seq"],
        ack=rows["ack"], flags=rows["tcp_flags"], plen=rows["payload_len"], ipid=rows["ipid"],
        layout=rows["layout"], segoff=rows["segoff"], writelen=rows["writelen"],
        wire_len=rows["wire_len"], win=rows["win"], tsval=rows["tsval"], tsecr=rows["tsecr"])
    flow_attrs = kf.FlowAttrs(cip=a["cip"], sip=a["sip"], cport=a["cport"], sport=a["sport"],
                              key=a["key"], hops=a["hops"], side=a["side"], proto=a["proto"],
                              cos=a["cos"], sos=a["sos"], tsopt=a["tsopt"])
    payloads = kf.Payloads(pool=pool, tpl=tpl.data, tpl_mask=tpl.mask, tpl_start=tpl.start,
                           tpl_len=tpl.length)

    def once():
        kf.encode(buf, False, 0, packets, flow_attrs, eng.gw_mac, 1460, payloads, offsets)
    once()
    t = best(once, repeat)
    return {"frames": int(rows.shape[0]), "MB": buf.shape[0] / 1e6, "seconds": t,
            "frames_per_s": rows.shape[0] / t, "MBps": buf.shape[0] / t / 1e6}


def pipeline_figures(sc, where: Path, repeat: int) -> dict:
    path = where / "bench_roce.pcap"
    report = {}

    def once():
        path.unlink(missing_ok=True)
        report.update(tg.generate(sc, pcap=path))
    try:
        once()
        t = best(once, repeat)
        size = path.stat().st_size
    finally:
        path.unlink(missing_ok=True)
    return {"packets": report["packets"], "MB": size / 1e6, "seconds": t,
            "packets_per_s": report["packets"] / t, "MBps": size / t / 1e6}


IMPAIRMENTS = {
    "clean": None,
    "ecn 0.1%": {"ecn": 0.001},
    "loss 0.1%": {"loss": 0.001, "before_tap": 0.5},
    "ecn 1%, loss 1%": {"ecn": 0.01, "loss": 0.01, "before_tap": 0.5},
}


def impair_figures(over: dict, duration, where: Path, repeat: int) -> dict:
    """Per :data:`IMPAIRMENTS` setting: schedule and pipeline seconds, packets, the RoCE
    answers and resends (best of ``repeat``)."""
    out = {}
    for name, imp in IMPAIRMENTS.items():
        sc = tg.load_scenario("kv-transfer", {**over, **({"network.impair": imp} if imp else {})},
                              duration=duration)
        counts = {}

        def sched(sc=sc, counts=counts):
            n = cnp = nak = rtx = lost = 0
            for b in tg.batches(sc, frames=False):
                p = b.packets
                n += p.shape[0]
                cnp += int((p["tcp_flags"] == ku.OP_CNP).sum())
                nak += int(((p["tcp_flags"] == ku.OP_ACK) & (p["segoff"] == ku.AETH_NAK_PSN)).sum())
                rtx += int(p["retransmit"].sum())
                lost += int(p["lost"].sum())
            counts.update(packets=n, cnp=cnp, nak=nak, retransmit=rtx, lost=lost)
        sched()
        t_sched = best(sched, repeat, time.process_time)  # CPU s: the machine may be shared
        path = where / "bench_roce_impair.pcap"
        try:
            t_pipe = best(lambda sc=sc, path=path: tg.generate(sc, pcap=path), repeat,
                          time.process_time)
            size = path.stat().st_size
        finally:
            path.unlink(missing_ok=True)
        out[name] = {"impair": imp, **counts, "schedule_cpu_s": t_sched, "pipeline_cpu_s": t_pipe,
                     "packets_per_cpu_s": counts["packets"] / t_pipe, "MB": size / 1e6}
    clean = out["clean"]
    for v in out.values():
        v["schedule_x"] = v["schedule_cpu_s"] / clean["schedule_cpu_s"]
        v["pipeline_x"] = v["pipeline_cpu_s"] / clean["pipeline_cpu_s"]
    return out


def print_impair(figs: dict) -> None:
    print("| setting | packets | CNPs | NAKs | resends | lost after tap | schedule CPU s | x clean | "
          "pipeline CPU s | x clean | packets per CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, v in figs.items():
        print(f"| {name} | {v['packets']:,} | {v['cnp']:,} | {v['nak']:,} | {v['retransmit']:,} | "
              f"{v['lost']:,} | {v['schedule_cpu_s']:.3f} | {v['schedule_x']:.2f} | "
              f"{v['pipeline_cpu_s']:.2f} | {v['pipeline_x']:.2f} | {v['packets_per_cpu_s']:,.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--impair", action="store_true", help="clean against [network.impair] runs")
    args = ap.parse_args()
    over = {"kv_transfer.rate": "0.05/s"} if args.quick else {}
    if args.impair:
        figs = impair_figures(over, "60s" if args.quick else None, Path(args.dir), args.repeat)
        print(json.dumps(figs, indent=2) if args.json else "", end="")
        if not args.json:
            print_impair(figs)
        return
    sc = tg.load_scenario("kv-transfer", over, duration="60s" if args.quick else None)
    out = {"scenario": "kv-transfer", "overrides": over, "duration_s": sc.duration_ns / 1e9,
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                      f"{platform.platform()}",
           "crc": crc_figures(args.repeat),
           "encoder": encoder_figures(sc, 200_000 if args.quick else 1_000_000, args.repeat),
           "pipeline": pipeline_figures(sc, Path(args.dir), 1 if args.quick else args.repeat)}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    c, e, p = out["crc"], out["encoder"], out["pipeline"]
    print(f"crc32 slicing-by-16: {c['crc32_MBps']:,.0f} MB/s (zlib {c['zlib_MBps']:,.0f} MB/s)")
    print(f"encoder, RoCE rows: {e['frames']:,} frames, {e['MB']:,.0f} MB in {e['seconds']:.3f} s: "
          f"{e['frames_per_s']:,.0f} frames/s, {e['MBps']:,.0f} MB/s")
    print(f"pipeline to {args.dir}: {p['packets']:,} packets, {p['MB']:,.0f} MB in "
          f"{p['seconds']:.2f} s: {p['packets_per_s']:,.0f} packets/s, {p['MBps']:,.0f} MB/s")


if __name__ == "__main__":
    main()
