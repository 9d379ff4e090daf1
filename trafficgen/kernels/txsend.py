"""Paced sending through sendmmsg(2): numba kernels that call libc directly.

The libc functions are registered with LLVM by name (``llvmlite.binding.add_symbol``) and
declared as numba ``ExternalFunction``s, so the kernels cache (the symbol is resolved when the
cached code loads) and release the GIL for the whole send loop: Python runs once per slice of
up to ``slice_ns`` of wall time, never per packet.

Deadlines are absolute CLOCK_MONOTONIC int64 ns. The loop sleeps (clock_nanosleep with
TIMER_ABSTIME) while the next deadline is more than a margin away and spins on the clock
inside it; the margin is ``spin_ns``, or twice the recent worst wake-up delay when that is
more (a busy machine wakes sleepers late), at most 5 ms. A sender that falls behind catches up
at twice the rate (each late frame keeps half its gap) and, once far behind, sends every frame
already due in one sendmmsg call: it never drifts.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from collections import namedtuple

import llvmlite.binding as _llvm
import numpy as np
from numba import carray, types

from .jit import inline, kernel
from .xdptx import NO_XDP, xdp_send

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
for _name in ("clock_gettime", "clock_nanosleep", "sendmmsg", "__errno_location"):
    _llvm.add_symbol(_name, ctypes.cast(getattr(_libc, _name), ctypes.c_void_p).value)

_clock_gettime = types.ExternalFunction("clock_gettime", types.intc(types.intc, types.voidptr))
_clock_nanosleep = types.ExternalFunction(
    "clock_nanosleep", types.intc(types.intc, types.intc, types.voidptr, types.voidptr))
_sendmmsg = types.ExternalFunction(
    "sendmmsg", types.intc(types.intc, types.voidptr, types.uintc, types.intc))
_errno_location = types.ExternalFunction("__errno_location", types.CPointer(types.int32)())

CLOCK_MONOTONIC = 1
TIMER_ABSTIME = 1
EINTR, EAGAIN, ENOBUFS = 4, 11, 105
MMSG_WORDS = 8  # struct mmsghdr is 64 bytes on 64-bit Linux: msghdr (56) + msg_len + pad
IOV_WORDS = 2  # struct iovec: base, len
MAX_FAILS = 1000  # consecutive hard send errors before the kernel gives up

# acc[] fields (int64 counters shared with Python)
A_PACKETS, A_BYTES, A_ERRORS, A_ERRNO, A_MAX_ERR, A_SUM_ERR, A_TIMED = 0, 1, 2, 3, 4, 5, 6
A_FIRST_NS, A_LAST_NS, A_LATE_NS, A_CALLS, A_RETRIES, A_FAILS, A_WAKE = 7, 8, 9, 10, 11, 12, 13
A_SLEPT = 14  # ns spent asleep in clock_nanosleep, in all
A_PREV_T, A_PREV_SCHED = 15, 16  # when the last frame was handed over, and its deadline
MAX_SPIN_NS = 5_000_000  # the adaptive spin margin never grows past this
ACC_SIZE = 20
# kernel status
ST_DONE, ST_SLICE, ST_STOP, ST_FAILING = 0, 1, 2, 3
# departure-error histogram: 100 ns bins to 1 ms, then 100 us bins to ~1 s, then overflow
FINE_NS, FINE_BINS, COARSE_NS, COARSE_BINS = 100, 10_000, 100_000, 10_000
HIST_BINS = FINE_BINS + COARSE_BINS + 1

Frames = namedtuple("Frames", "buf off length sched port")
Frames.__doc__ = """Frames to send: frame k is ``buf[off[k]:off[k] + length[k]]``, due at
``sched[k]`` (CLOCK_MONOTONIC ns; 0: now), out of port ``port[k]`` (uint8: a row of the
sender's ``addrs``)."""
Pacing = namedtuple("Pacing", "stop_ns slice_end_ns spin_ns timed catchup_ns")
Pacing.__doc__ = """How ``send_paced`` paces: when to stop, when this slice ends, the spin margin
before a deadline, whether lateness is measured, how late a frame may be and still keep half
its gap."""
TxState = namedtuple("TxState", "msgs iovs ts hist acc pacc addrs xdp", defaults=(NO_XDP,))
TxState.__doc__ = """A sender's scratch and counters: sendmmsg headers and iovecs
(``init_msgs``), a timespec, the lateness histogram per port (int64[ports, HIST_BINS]), the
A_* counters, the P_* counters per port (int64[ports, P_SIZE]), and each port's address
(uint8[ports, SOCKADDR_LL]: a struct sockaddr_ll naming its interface; with one port none is
given and the socket's binding says where frames go), and the AF_XDP rings that send in place
of sendmmsg (``kernels.xdptx.XdpRings``; default none)."""
SOCKADDR_LL = 20
# pacc[port, :] fields: the per-port share of the counters
P_PACKETS, P_BYTES, P_ERRORS, P_SUM_ERR, P_MAX_ERR, P_FIRST_NS, P_LAST_NS, P_SIZE = 0, 1, 2, 3, 4, 5, 6, 8


@kernel
def now_ns(ts):
    """CLOCK_MONOTONIC in int64 ns; ``ts``: int64[2] scratch (a struct timespec)."""
    _clock_gettime(CLOCK_MONOTONIC, ts.ctypes.data)
    return ts[0] * 1_000_000_000 + ts[1]


@kernel
def sleep_until(ts, t_ns):
    """Sleep until CLOCK_MONOTONIC reaches ``t_ns`` (returns early on a signal)."""
    ts[0] = t_ns // 1_000_000_000
    ts[1] = t_ns % 1_000_000_000
    _clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ts.ctypes.data, 0)


@inline
def _hist_bin(err):
    if err < 0:
        return 0
    if err < FINE_NS * FINE_BINS:
        return err // FINE_NS
    k = FINE_BINS + (err - FINE_NS * FINE_BINS) // COARSE_NS
    return min(k, HIST_BINS - 1)


@kernel
def init_msgs(msgs, iovs):
    """Point mmsghdr k at iovec k: ``msgs`` int64[B, 8], ``iovs`` int64[B, 2]."""
    base = iovs.ctypes.data
    for k in range(msgs.shape[0]):
        for w in range(MMSG_WORDS):
            msgs[k, w] = 0
        msgs[k, 2] = base + 16 * k  # msg_iov
        msgs[k, 3] = 1  # msg_iovlen


@kernel
def send_paced(fd, frames, i, n, pacing, state):
    """Send frames ``i..n-1`` of ``frames`` (``Frames``: bytes ``buf[off[k]:off[k] +
    length[k]]``) at their absolute deadlines ``sched[k]`` (CLOCK_MONOTONIC ns; 0: now).
    ``pacing`` (``Pacing``): stops before a deadline past ``stop_ns`` or at that time, and
    returns once ``slice_end_ns`` passes while waiting. Frame k goes out of the interface
    ``state.addrs[port[k]]`` names (one sendmmsg call may hold frames of every port, each
    message with its address, so order holds across ports). With ``timed``, each packet's lateness
    (return time of its send call minus its deadline) goes into ``state.hist``
    (int64[HIST_BINS]) and ``state.acc``. A late frame still keeps half its scheduled gap after
    the one before (catching up at twice the rate, never in a burst) while that leaves it at
    most ``catchup_ns`` late; later than that, every due frame goes at once. ``state``:
    ``TxState``. Returns (next index, status)."""
    buf, off, length, sched, port = frames
    stop_ns, slice_end_ns, spin_ns, timed, catchup_ns = pacing
    msgs, iovs, ts, hist, acc, pacc, addrs, xdp = state
    use_xdp = xdp.q.shape[0] > 0
    batch = msgs.shape[0]
    named = addrs.shape[0] > 1
    abase = addrs.ctypes.data
    base = buf.ctypes.data
    errno_ptr = carray(_errno_location(), 1)
    while i < n:
        d = sched[i]
        t = now_ns(ts)
        spaced = timed and catchup_ns > 0 and t - d <= catchup_ns
        if spaced and acc[A_PACKETS] > 0:
            d = max(d, acc[A_PREV_T] + (d - acc[A_PREV_SCHED]) // 2)
        if d > stop_ns or t >= stop_ns:
            return i, ST_STOP
        if t >= slice_end_ns:
            return i, ST_SLICE
        if d > t:
            # spin within the margin: at least spin_ns, more when wake-ups have been late
            margin = min(max(spin_ns, 2 * acc[A_WAKE] + 10_000), MAX_SPIN_NS)
            if d - t > margin:
                target = min(d - margin, slice_end_ns)
                sleep_until(ts, target)
                woke = now_ns(ts)
                acc[A_SLEPT] += woke - t
                over = woke - target  # how late this wake-up was (decaying maximum)
                acc[A_WAKE] = max(over, acc[A_WAKE] - acc[A_WAKE] // 16)
                continue
            while t < d:
                t = now_ns(ts)
        k = 1  # with every frame already due (while catching up: those with no gap between)
        while (k < batch and i + k < n and sched[i + k] <= t
               and not (spaced and sched[i + k] > sched[i + k - 1])):
            k += 1
        for j in range(k if not use_xdp else 0):
            iovs[j, 0] = base + off[i + j]
            iovs[j, 1] = length[i + j]
            if named:
                msgs[j, 0] = abase + SOCKADDR_LL * np.int64(port[i + j])
                msgs[j, 1] = SOCKADDR_LL
        if use_xdp:
            r = xdp_send(xdp, buf, off, length, port, i, k)
            if r < 0:
                errno_ptr[0] = -r
                r = -1
        else:
            r = _sendmmsg(fd, msgs.ctypes.data, k, 0)
        t_after = now_ns(ts)
        acc[A_CALLS] += 1
        if r <= 0:
            e = errno_ptr[0] if r < 0 else EAGAIN
            if e == EAGAIN or e == ENOBUFS or e == EINTR:
                acc[A_RETRIES] += 1
                continue
            acc[A_ERRORS] += 1  # this frame is skipped; the next one is tried
            pacc[port[i], P_ERRORS] += 1
            acc[A_ERRNO] = e
            acc[A_FAILS] += 1
            i += 1
            if acc[A_FAILS] >= MAX_FAILS:
                return i, ST_FAILING
            continue
        acc[A_FAILS] = 0
        if acc[A_PACKETS] == 0:
            acc[A_FIRST_NS] = t
        for j in range(r):
            p = port[i + j]
            if pacc[p, P_PACKETS] == 0:
                pacc[p, P_FIRST_NS] = t
            pacc[p, P_PACKETS] += 1
            pacc[p, P_LAST_NS] = t_after
            acc[A_BYTES] += length[i + j]
            pacc[p, P_BYTES] += length[i + j]
            if timed:
                err = t_after - sched[i + j]
                hist[p, _hist_bin(err)] += 1
                acc[A_SUM_ERR] += err
                pacc[p, P_SUM_ERR] += err
                if err > acc[A_MAX_ERR]:
                    acc[A_MAX_ERR] = err
                if err > pacc[p, P_MAX_ERR]:
                    pacc[p, P_MAX_ERR] = err
        if timed:
            acc[A_TIMED] += r
            acc[A_LATE_NS] = t_after - sched[i + r - 1]
        acc[A_PREV_T] = t
        acc[A_PREV_SCHED] = sched[i + r - 1]
        acc[A_PACKETS] += r
        acc[A_LAST_NS] = t_after
        i += r
    return i, ST_DONE


def hist_quantile(hist: np.ndarray, q: float) -> int:
    """The ``q`` quantile (ns, the upper edge of its bin) of a departure-error histogram
    (int64[HIST_BINS], or one per port: int64[ports, HIST_BINS], summed)."""
    if hist.ndim == 2:
        hist = hist.sum(axis=0)
    total = int(hist.sum())
    if total == 0:
        return 0
    k = int(np.searchsorted(np.cumsum(hist), max(1, int(np.ceil(q * total))), "left"))
    if k < FINE_BINS:
        return (k + 1) * FINE_NS
    return FINE_NS * FINE_BINS + (k - FINE_BINS + 1) * COARSE_NS
