"""Frames into AF_XDP transmit rings from numba (``send_paced`` calls ``xdp_send`` in place of
sendmmsg when its ``TxState.xdp`` names rings).

One AF_XDP socket per port; each socket's UMEM, TX ring and completion ring are mapped into
one region (``XdpRings.mem``, seen also as uint32 and uint64 words: ``m32``, ``m64``), and
``q[port]`` holds the socket and the byte offsets of its ring words in that region
(``playback.xdp`` makes them). Descriptor slot s uses UMEM chunk s, so a chunk is free again
once the completion ring has passed it: ``size - (producer - completions consumed)`` frames
fit. A frame is copied into its chunk, its descriptor written, the producer advanced; then
each port with frames queued is kicked (``sendto``) until the kernel has taken every one,
so a frame counts as sent when it has been handed to the driver, as after sendmmsg. Stores
are ordered as written (x86-64's TSO; the kernel reads the ring inside ``sendto``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
from collections import namedtuple

import llvmlite.binding as _llvm
import numpy as np
from numba import carray, types

from .jit import helper

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
for _name in ("sendto", "__errno_location"):
    _llvm.add_symbol(_name, ctypes.cast(getattr(_libc, _name), ctypes.c_void_p).value)
_sendto = types.ExternalFunction(
    "sendto", types.intp(types.intc, types.voidptr, types.uintp, types.intc, types.voidptr, types.uint32))
_errno_location = types.ExternalFunction("__errno_location", types.CPointer(types.int32)())

MSG_DONTWAIT = 0x40
EINTR, EAGAIN, EBUSY, ENOBUFS = 4, 11, 16, 105
MAX_KICKS = 1_000_000  # kicks without progress before a port counts as failing
# q[port, :]: the socket, then byte offsets into mem of: TX producer, TX consumer, TX
# descriptors, completion producer, completion consumer, the UMEM; the ring size (a power
# of two, descriptors and chunks) and the chunk size
Q_FD, Q_PROD, Q_CONS, Q_DESC, Q_CPROD, Q_CCONS, Q_UMEM, Q_SIZE, Q_CHUNK, Q_WORDS = range(10)

XdpRings = namedtuple("XdpRings", "q mem m32 m64")
XdpRings.__doc__ = """AF_XDP rings of each port (``q``: int64[ports, Q_WORDS]) in one mapped
region (``mem`` uint8, ``m32`` uint32 and ``m64`` uint64 views of it). No rows: sendmmsg."""
NO_XDP = XdpRings(np.zeros((0, Q_WORDS), np.int64), np.zeros(0, np.uint8),
                  np.zeros(0, np.uint32), np.zeros(0, np.uint64))


@helper  # reads errno through carray, an array: not an inline function (jit.inline)
def xdp_send(x, buf, off, length, port, i, k):
    """Queue frames ``i..i+k-1`` on the TX rings of their ports (stopping at the first whose
    ring is full), kick, and wait until the kernel has taken them. Returns how many were
    taken (0: every ring full, try again), or minus the errno of a port that failed."""
    q, mem, m32, m64 = x
    for p in range(q.shape[0]):  # completed frames free their chunks
        m32[q[p, Q_CCONS] >> 2] = m32[q[p, Q_CPROD] >> 2]
    n = 0
    while n < k:
        p = port[i + n]
        size = q[p, Q_SIZE]
        prod = np.int64(m32[q[p, Q_PROD] >> 2])
        if (prod - np.int64(m32[q[p, Q_CCONS] >> 2])) & 0xFFFFFFFF >= size:
            break
        slot = prod & (size - 1)
        a = slot * q[p, Q_CHUNK]
        L = length[i + n]
        s = off[i + n]
        d = q[p, Q_UMEM] + a
        mem[d:d + L] = buf[s:s + L]
        w = (q[p, Q_DESC] >> 3) + 2 * slot
        m64[w] = a
        m64[w + 1] = L  # len in the low 32 bits, options 0
        m32[q[p, Q_PROD] >> 2] = (prod + 1) & 0xFFFFFFFF
        n += 1
    errno_ptr = carray(_errno_location(), 1)
    for p in range(q.shape[0]):
        kicks = 0
        while m32[q[p, Q_CONS] >> 2] != m32[q[p, Q_PROD] >> 2]:
            r = _sendto(q[p, Q_FD], 0, 0, MSG_DONTWAIT, 0, 0)
            kicks += 1
            if r < 0:
                e = errno_ptr[0]
                if not (e == EAGAIN or e == EBUSY or e == ENOBUFS or e == EINTR):
                    return -e
            if kicks >= MAX_KICKS:
                return -EBUSY
    return n
