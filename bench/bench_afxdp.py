"""AF_XDP beside AF_PACKET on a veth pair: can an XDP socket send faster than replay's sendmmsg?

    sudo python bench/bench_afxdp.py [--frames 500000] [--rounds 3]

A measurement, not a sender of the product: an AF_XDP socket made with plain system calls
(no libxdp: a TX-only socket needs no XDP program), its UMEM holding the first 4,096 frames of
a chat capture (as ``tcpreplay -K`` preloads), sent in a loop: descriptors written into the TX
ring by a numba function, one ``sendto`` per batch to kick the kernel, completions reclaimed.
Beside it, in the same rounds: ``trafficgen replay --topspeed`` (AF_PACKET, sendmmsg) of the
same number of frames. The peer's rx counter must grow by every frame. veth has no zero-copy
AF_XDP: the socket binds in copy mode (XDP_COPY), as on most drivers without XDP support.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import mmap
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trafficgen as tg  # noqa: E402
from tests.replay_net import VethPair, net_admin_reason, read_pcap, write_pcap  # noqa: E402

AF_XDP, SOL_XDP = 44, 283
XDP_MMAP_OFFSETS, XDP_TX_RING, XDP_UMEM_REG, XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING = 1, 3, 4, 5, 6
XDP_PGOFF_TX_RING, XDP_UMEM_PGOFF_COMPLETION_RING = 0x80000000, 0x180000000
XDP_COPY = 1 << 1
MSG_DONTWAIT = 0x40
CHUNK, NCHUNKS, RING = 2048, 4096, 2048
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


@njit(cache=False)
def fill_tx(desc, prod, cons, cprod, ccons, lens, nframes, sent, want, size):
    """Reclaim completions, then write as many descriptors as the ring takes (at most
    ``want - sent``). Returns how many were written."""
    done = cprod[0] - ccons[0]
    if done:
        ccons[0] = cprod[0]
    free = size - (prod[0] - cons[0])
    k = min(free, want - sent)
    p = prod[0]
    for j in range(k):
        f = (sent + j) % nframes
        slot = (p + j) & (size - 1)
        desc[slot, 0] = f * 2048
        desc[slot, 1] = lens[f]  # len (low 32 bits); options (high 32) = 0
    prod[0] = p + k
    return k


def xdp_socket(ifname: str, frames: list[bytes]):
    fd = libc.socket(AF_XDP, socket.SOCK_RAW, 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "socket(AF_XDP)")
    umem = mmap.mmap(-1, CHUNK * NCHUNKS, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    ubuf = np.frombuffer(umem, np.uint8)
    n = min(len(frames), NCHUNKS)
    lens = np.zeros(n, np.uint64)
    for k in range(n):
        ubuf[k * CHUNK:k * CHUNK + len(frames[k])] = np.frombuffer(frames[k], np.uint8)
        lens[k] = len(frames[k])
    addr = ctypes.addressof(ctypes.c_char.from_buffer(umem))

    def sockopt(opt, data: bytes):
        b = ctypes.create_string_buffer(data, len(data))
        if libc.setsockopt(fd, SOL_XDP, opt, b, len(data)) != 0:
            raise OSError(ctypes.get_errno(), f"setsockopt {opt}")
    sockopt(XDP_UMEM_REG, struct.pack("=QQIII4x", addr, CHUNK * NCHUNKS, CHUNK, 0, 0))
    for opt in (XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING, XDP_TX_RING):
        sockopt(opt, struct.pack("=I", RING))
    off = ctypes.create_string_buffer(128)
    olen = ctypes.c_uint32(128)
    if libc.getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, off, ctypes.byref(olen)) != 0:
        raise OSError(ctypes.get_errno(), "XDP_MMAP_OFFSETS")
    o = struct.unpack("=16Q", off.raw)  # rx, tx, fr, cr: producer, consumer, desc, flags
    tx_o, cr_o = o[4:8], o[12:16]
    txm = mmap.mmap(fd, tx_o[2] + RING * 16, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                    offset=XDP_PGOFF_TX_RING)
    crm = mmap.mmap(fd, cr_o[2] + RING * 8, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                    offset=XDP_UMEM_PGOFF_COMPLETION_RING)
    sxdp = struct.pack("=HHIII", AF_XDP, XDP_COPY, socket.if_nametoindex(ifname), 0, 0)
    if libc.bind(fd, ctypes.create_string_buffer(sxdp, 16), 16) != 0:
        raise OSError(ctypes.get_errno(), "bind(AF_XDP)")
    t = np.frombuffer(txm, np.uint8)
    c = np.frombuffer(crm, np.uint8)
    rings = (t[tx_o[2]:].view(np.uint64).reshape(-1, 2)[:RING], t[tx_o[0]:tx_o[0] + 4].view(np.uint32),
             t[tx_o[1]:tx_o[1] + 4].view(np.uint32), c[cr_o[0]:cr_o[0] + 4].view(np.uint32),
             c[cr_o[1]:cr_o[1] + 4].view(np.uint32))
    return fd, rings, lens, (umem, txm, crm)


def send_xdp(ifname: str, frames: list[bytes], total: int) -> float:
    fd, (desc, prod, cons, cprod, ccons), lens, keep = xdp_socket(ifname, frames)
    try:
        fill_tx(desc, prod, cons, cprod, ccons, lens, lens.shape[0], 0, 0, RING)  # compile
        sent = 0
        t0 = time.perf_counter()
        while sent < total:
            sent += fill_tx(desc, prod, cons, cprod, ccons, lens, lens.shape[0], sent, total, RING)
            libc.sendto(fd, None, 0, MSG_DONTWAIT, None, 0)
        while cprod[0] != prod[0]:  # every frame handed to the driver
            libc.sendto(fd, None, 0, MSG_DONTWAIT, None, 0)
        return total / (time.perf_counter() - t0)
    finally:
        os.close(fd)
        del keep


def rx(dev: str) -> int:
    return int(Path(f"/sys/class/net/{dev}/statistics/rx_packets").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    reason = net_admin_reason()
    if reason:
        print(f"bench_afxdp: skipped: {reason}", file=sys.stderr)
        return 1 if os.environ.get("TRAFFICGEN_REQUIRE_TOOLS") else 0
    res: dict = {"af_xdp (copy mode)": [], "trafficgen replay (af_packet)": []}
    with tempfile.TemporaryDirectory(prefix="tg-bench-xdp-") as d, VethPair() as veth:
        sc = tg.load_scenario("chat", {"chat.rate": "20/s"}, duration="4s", seed=3)
        tg.generate(sc, pcap=Path(d) / "chat.pcap")
        frames = read_pcap(Path(d) / "chat.pcap")[1]
        head = (frames * (-(-NCHUNKS // len(frames))))[:NCHUNKS]
        path = Path(d) / "top.pcap"
        n = args.frames
        write_pcap(path, (head * (-(-n // NCHUNKS)))[:n], 10**18 + np.arange(n, dtype=np.int64) * 1000)
        for _ in range(args.rounds):
            before = rx(veth.peer)
            pps = send_xdp(veth.name, head, n)
            time.sleep(0.2)
            res["af_xdp (copy mode)"].append({"pps": pps, "arrived": rx(veth.peer) - before})
            before = rx(veth.peer)
            done = subprocess.run([sys.executable, "-m", "trafficgen", "replay", str(path), "--iface",
                                   veth.name, "--topspeed", "--json"], capture_output=True, text=True)
            rep = json.loads(done.stdout)
            res["trafficgen replay (af_packet)"].append({"pps": rep["packets_per_s"],
                                                          "arrived": rx(veth.peer) - before})
    summary = {k: {"pps_median": float(np.median([r["pps"] for r in v])),
                   "all_arrived": all(r["arrived"] == args.frames for r in v),
                   "arrived": [r["arrived"] for r in v]} for k, v in res.items()}
    if args.json:
        print(json.dumps({"summary": summary, "rounds": res}, indent=2))
    else:
        for k, v in summary.items():
            print(f"{k:32s} {v['pps_median']:>12,.0f} packets/s, all arrived: {v['all_arrived']} {v['arrived']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
