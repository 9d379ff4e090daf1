"""Sending through AF_XDP (``--xdp``), or saying in one line why AF_PACKET sends instead.

A TX-only AF_XDP socket needs no XDP program, hence no libxdp or libbpf: one socket per port,
made with plain system calls (socket, setsockopt, mmap, bind), bound to queue 0 of the port
in whatever mode the driver offers (zero-copy where it can, else copy mode, as on a veth).
Each socket's UMEM (``RING`` chunks) and its TX and completion rings are mapped into one
region (the rings with MAP_FIXED over it), so the numba kernel (``kernels.xdptx``) sees one
array per run whatever the number of ports. The Transmitter's pacing, counters and per-port
report are unchanged: only the send step differs.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import struct
import sys
import time

import numpy as np

from trafficgen.kernels import xdptx as kx

AF_XDP, SOL_XDP = 44, 283
XDP_MMAP_OFFSETS, XDP_TX_RING, XDP_UMEM_REG, XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING = 1, 3, 4, 5, 6
XDP_OPTIONS, XDP_OPTIONS_ZEROCOPY = 8, 1
XDP_PGOFF_TX_RING, XDP_UMEM_PGOFF_COMPLETION_RING = 0x80000000, 0x180000000
PROT_RW, MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANON, MAP_POPULATE = 3, 1, 2, 0x10, 0x20, 0x8000
RING = 2048  # descriptors per TX and completion ring, and UMEM chunks per port
# a queue stays busy for a moment after the AF_XDP socket bound to it closes (the kernel
# releases it from a work queue): a replay right after another waits this long for it
BUSY_WAIT_S = 0.5
PAGE = os.sysconf("SC_PAGE_SIZE")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.setsockopt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
_libc.getsockopt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_libc.bind.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]


def _fail(what: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}")


def _up(n: int) -> int:
    return -(-n // PAGE) * PAGE


class XdpPorts:
    """AF_XDP sockets on ``names`` (one per port, in order), their rings in one region
    (``rings``: a ``kernels.xdptx.XdpRings``); ``mode`` "zerocopy" or "copy". Raises
    OSError (its message says which step failed) when any cannot be made."""

    def __init__(self, names: list[str], max_frame: int):
        self.chunk = 2048 if max_frame <= 2048 else 4096
        if max_frame > self.chunk:
            raise OSError(0, f"frames of up to {max_frame} bytes do not fit a {self.chunk}-byte UMEM chunk")
        self.fds: list[int] = []
        self.base, self.size = 0, 0
        umem = RING * self.chunk
        span = _up(umem) + _up(PAGE + RING * 16) + _up(PAGE + RING * 8)  # the rings' headers fit a page
        self.size = span * len(names)
        base = _libc.mmap(None, self.size, PROT_RW, MAP_PRIVATE | MAP_ANON | MAP_POPULATE, -1, 0)
        if base in (None, ctypes.c_void_p(-1).value):
            raise _fail("mmap")
        self.base = base
        q = np.zeros((len(names), kx.Q_WORDS), np.int64)
        zerocopy = []
        try:
            for p, name in enumerate(names):
                q[p], zc = self._open(name, p * span, umem)
                zerocopy.append(zc)
        except OSError:
            self.close()
            raise
        mem = np.ctypeslib.as_array((ctypes.c_uint8 * self.size).from_address(self.base))
        self.rings = kx.XdpRings(q, mem, mem.view(np.uint32), mem.view(np.uint64))
        self.mode = "zerocopy" if all(zerocopy) else "copy"

    def _open(self, name: str, at: int, umem: int) -> tuple[np.ndarray, bool]:
        fd = _libc.socket(AF_XDP, socket.SOCK_RAW, 0)
        if fd < 0:
            raise _fail("socket(AF_XDP)")
        self.fds.append(fd)

        def sockopt(opt: int, data: bytes, what: str) -> None:
            b = ctypes.create_string_buffer(data, len(data))
            if _libc.setsockopt(fd, SOL_XDP, opt, b, len(data)) != 0:
                raise _fail(what)
        sockopt(XDP_UMEM_REG, struct.pack("=QQIII4x", self.base + at, umem, self.chunk, 0, 0), "UMEM")
        for opt in (XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING, XDP_TX_RING):
            sockopt(opt, struct.pack("=I", RING), "rings")
        off = ctypes.create_string_buffer(128)
        olen = ctypes.c_uint32(128)
        if _libc.getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS, off, ctypes.byref(olen)) != 0:
            raise _fail("ring offsets")
        o = struct.unpack("=16Q", off.raw)  # rx, tx, fill, completion: producer, consumer, desc, flags
        tx, cr = o[4:8], o[12:16]
        at_tx = at + _up(umem)
        at_cr = at_tx + _up(PAGE + RING * 16)
        for where, length, pgoff in ((at_tx, tx[2] + RING * 16, XDP_PGOFF_TX_RING),
                                     (at_cr, cr[2] + RING * 8, XDP_UMEM_PGOFF_COMPLETION_RING)):
            got = _libc.mmap(self.base + where, length, PROT_RW, MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, pgoff)
            if got != self.base + where:
                raise _fail("ring mmap")
        sxdp = ctypes.create_string_buffer(struct.pack("=HHIII", AF_XDP, 0, socket.if_nametoindex(name), 0, 0), 16)
        end = time.monotonic() + BUSY_WAIT_S
        while _libc.bind(fd, sxdp, 16) != 0:
            if ctypes.get_errno() != errno.EBUSY or time.monotonic() > end:
                raise _fail(f"bind to {name}")
            time.sleep(0.01)
        opts = ctypes.c_uint32(0)
        olen = ctypes.c_uint32(4)
        zc = (_libc.getsockopt(fd, SOL_XDP, XDP_OPTIONS, ctypes.byref(opts), ctypes.byref(olen)) == 0
              and bool(opts.value & XDP_OPTIONS_ZEROCOPY))
        row = np.array([fd, at_tx + tx[0], at_tx + tx[1], at_tx + tx[2], at_cr + cr[0], at_cr + cr[1],
                        at, RING, self.chunk], np.int64)
        return row, zc

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        if self.base:
            _libc.munmap(self.base, self.size)
            self.base = 0


def use_xdp(tx, ifaces, tx_threads: int) -> tuple[dict, list]:
    """Make ``tx`` (a Transmitter) send through AF_XDP on ``ifaces``: (the report's words:
    path af_xdp and the mode, [the sockets], to close after the run), or print one line
    saying why not and return ({"path": "af_packet"}, [])."""
    lanes = tx_threads > 1 and tx.rate.mode == "topspeed"  # more threads: only at top speed
    why = f"it sends on one thread, and --tx-threads {tx_threads} asks for more" if lanes else None
    ports = None
    if not why:
        try:
            ports = XdpPorts([i.name for i in ifaces], max(i.max_frame for i in ifaces) + 4)
        except OSError as e:
            why = e.strerror or str(e)
    if ports is None:
        print(f"trafficgen: AF_XDP not used ({why}): sending through AF_PACKET", file=sys.stderr)
        return {"path": "af_packet"}, []
    tx.xdp = ports.rings
    return {"path": "af_xdp", "xdp_mode": ports.mode}, [ports]
