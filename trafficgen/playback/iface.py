"""An interface as a sink: raw Ethernet frames out through an AF_PACKET socket, paced.

``open_interface`` checks everything that would make sending fail or lie (the interface
exists and is up, the process may open a raw socket) and says what to do about it in one
line. ``Transmitter`` sends arrays of frames against absolute deadlines with the
``kernels.txsend`` loop (sendmmsg, batches of every frame already due) and keeps the counters
and the departure-error histogram of the report.
"""
from __future__ import annotations

import ctypes
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trafficgen.errors import Arg, ArgumentError
from trafficgen.kernels import txsend as kt

from .rate import Pacer, Rate

SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20
SO_SNDBUFFORCE = 32
IFF_UP = 0x1
PR_SET_TIMERSLACK = 29
SNDBUF_BYTES = 4 << 20
BATCH = 512  # frames per sendmmsg call at most
SLICE_NS = 50_000_000  # the kernel returns to Python at least this often
SPIN_NS = 200_000  # spin on the clock within this much of a deadline; sleep before
CATCHUP_NS = 10_000_000  # behind by less, catch up at twice the rate; by more, at once
BEHIND_NS = 200_000_000  # falling further behind for this long: the rate is out of reach
ETH_HLEN, VLAN_HLEN = 14, 4
REALTIME_PRIORITY = 10  # SCHED_FIFO priority of the sending thread with realtime=True
RT_SPIN_NS = 30_000  # a real-time thread wakes on time: it can sleep closer to a deadline
# The kernel throttles real-time threads that run more than 0.95 s of every second (for 50
# ms: a stall). A sender that has been busy (not asleep) for RT_BUSY_NS of the last second
# drops to the ordinary policy for RT_REST_NS, then goes back.
RT_BUSY_NS, RT_REST_NS, RT_WINDOW_NS = 700_000_000, 300_000_000, 1_000_000_000


@dataclass
class Interface:
    """An open AF_PACKET socket bound to ``name`` (``fd``), and what the checks found."""

    name: str
    index: int
    mtu: int
    sock: socket.socket
    qdisc_bypass: bool

    @property
    def max_frame(self) -> int:
        """The largest untagged frame the interface takes: MTU plus the Ethernet header."""
        return self.mtu + ETH_HLEN

    def close(self) -> None:
        self.sock.close()


def _sys(name: str, what: str) -> str:
    return (Path("/sys/class/net") / name / what).read_text().strip()


def check_interface(name: str | None, what: str = "iface") -> tuple[int, int]:
    """(index, MTU) of ``name`` if it exists and is up with a link, else ``TrafficgenError``
    saying what to do. Reads /sys only: nothing is opened."""
    if not name:
        raise ArgumentError(Arg("iface"), ": nothing is sent unless ", Arg("iface"),
                            " names an interface (see 'ip link')")
    if "/" in name or name in (".", "..") or len(name) > 15:
        raise ArgumentError(Arg(what, name), ": not an interface name (see 'ip link')")
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        raise ArgumentError(Arg(what, name), ": no such interface (see 'ip link')") from None
    try:
        flags, mtu = int(_sys(name, "flags"), 16), int(_sys(name, "mtu"))
    except (OSError, ValueError):
        raise ArgumentError(Arg(what, name), ": cannot read its state from /sys/class/net") from None
    if not flags & IFF_UP:
        raise ArgumentError(Arg(what, name), f": the interface is down: bring it up with "
                            f"'ip link set {name} up'")
    try:
        carrier = _sys(name, "carrier") == "1"
    except OSError:
        carrier = False
    if not carrier:
        raise ArgumentError(Arg(what, name), ": the interface is up but has no link (no "
                            "carrier; for a veth, bring its peer up too)")
    return index, mtu


CAP_NET_RAW = 13
NO_CAP_NET_RAW = ("sending raw frames needs CAP_NET_RAW: run as root, or grant it "
                  "('setcap cap_net_raw+ep' on the Python binary)")


def may_send_raw() -> bool:
    """Whether this process holds CAP_NET_RAW (True when /proc cannot tell: the socket will)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_RAW & 1)
    except (OSError, ValueError, IndexError):
        pass
    return True


def check_may_send(name: str) -> None:
    """Refuse early (before a long file check) when raw sockets are not allowed."""
    if not may_send_raw():
        raise ArgumentError(Arg("iface", name), f": {NO_CAP_NET_RAW}")


def open_interface(name: str | None, qdisc_bypass: bool = True, what: str = "iface") -> Interface:
    """Check ``name`` (``check_interface``) and open a raw socket bound to it, or raise
    ``TrafficgenError`` saying what to do (e.g. without CAP_NET_RAW)."""
    index, mtu = check_interface(name, what)
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: receives nothing
    except PermissionError:
        raise ArgumentError(Arg(what, name), f": {NO_CAP_NET_RAW}") from None
    try:
        sock.bind((name, 0))
        for opt in (SO_SNDBUFFORCE, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, SNDBUF_BYTES)
                break
            except OSError:
                continue
        bypass = False
        if qdisc_bypass:
            try:
                sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
                bypass = True
            except OSError:
                pass
    except OSError as e:
        sock.close()
        raise ArgumentError(Arg(what, name), f": cannot bind a raw socket: {e.strerror or e}") from None
    return Interface(name, index, mtu, sock, bypass)


def oversize(buf: np.ndarray, off: np.ndarray, length: np.ndarray, max_frame: int) -> int:
    """Index of the first frame the interface cannot take (longer than ``max_frame``, or
    ``max_frame + 4`` for an 802.1Q-tagged one, or shorter than an Ethernet header), else -1."""
    bad = np.flatnonzero((length > max_frame) | (length < ETH_HLEN))
    for k in bad:
        k = int(k)
        o = int(off[k])
        tagged = length[k] >= ETH_HLEN and buf[o + 12] == 0x81 and buf[o + 13] == 0x00
        if length[k] < ETH_HLEN or length[k] > max_frame + (VLAN_HLEN if tagged else 0):
            return k
    return -1


def _timer_slack_1ns() -> None:
    """Make this thread's sleeps end on time (Linux adds 50 us of slack by default)."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Transmitter:
    """Send chunks of frames onto an :class:`Interface` at a :class:`Rate`.

    The clock starts (``start()``) when the first chunk arrives; ``send(buf, off, length, ts)`` sends one chunk and
    returns False once the run should stop (``stop_ns`` reached, ``abort()`` called).
    ``stats()`` may be called from any thread."""

    RT_LIMITS = (REALTIME_PRIORITY, RT_BUSY_NS, RT_REST_NS, RT_WINDOW_NS)  # for playback.lanes

    def __init__(self, iface: Interface | list, rate: Rate, *, duration_ns: int | None = None,
                 loop_gap_ns: int = 0, batch: int = BATCH, spin_ns: int = SPIN_NS,
                 on_slice=None, realtime: bool | None = None, catchup_ns: int = CATCHUP_NS):
        self.ifaces = list(iface) if isinstance(iface, (list, tuple)) else [iface]
        self.iface, self.rate = self.ifaces[0], rate
        self.addrs = np.zeros((len(self.ifaces), kt.SOCKADDR_LL), np.uint8)
        for p, i in enumerate(self.ifaces):  # struct sockaddr_ll: AF_PACKET, protocol 0, ifindex
            self.addrs[p, :8] = np.frombuffer(struct.pack("=HHi", socket.AF_PACKET, 0, i.index), np.uint8)
        self.port0 = np.zeros(0, np.uint8)  # every frame out of port 0 (grown as needed)
        self.lanes = None  # with more than one sending thread: a playback.lanes.Lanes
        self.xdp = kt.NO_XDP  # AF_XDP rings that send in place of sendmmsg (playback.xdp)
        self.duration_ns, self.loop_gap_ns, self.spin_ns = duration_ns, loop_gap_ns, spin_ns
        self.catchup_ns = catchup_ns
        self.on_slice = on_slice  # called after every kernel slice with the Transmitter
        self.msgs = np.zeros((batch, kt.MMSG_WORDS), np.int64)
        self.iovs = np.zeros((batch, kt.IOV_WORDS), np.int64)
        kt.init_msgs(self.msgs, self.iovs)
        self.tspec = np.zeros(2, np.int64)
        self.hist = np.zeros((len(self.ifaces), kt.HIST_BINS), np.int64)
        self.acc = np.zeros(kt.ACC_SIZE, np.int64)
        self.pacc = np.zeros((len(self.ifaces), kt.P_SIZE), np.int64)
        self.pacer: Pacer | None = None
        self.t0 = self.stop_ns = 0
        self.stopped_by: str | None = None
        self.warning: str | None = None
        self._abort = threading.Event()
        self._late_before = 0
        self._behind_since = 0
        self.realtime = realtime
        self._policy = None
        self.realtime_used = False
        self._rt_on = False  # SCHED_FIFO right now
        self._rt_samples: list[tuple[int, int]] = []  # (t_ns, busy_ns so far) while real-time
        self._rt_rest_until = 0
        self._warm_up()

    def _warm_up(self) -> None:
        """Load the kernels now (from numba's cache, or compiled), not after the clock starts."""
        none = np.zeros(0, np.int64)
        readonly = np.zeros(1, np.uint8)
        readonly.flags.writeable = False  # e.g. np.frombuffer(bytes): numba types it apart
        for frames in (np.zeros(1, np.uint8), readonly):
            kt.send_paced(-1, kt.Frames(frames, none, none, none, self.port0), 0, 0,
                          kt.Pacing(0, 0, 0, True, 0), self._state())
        kt.sleep_until(self.tspec, 0)
        kt.now_ns(self.tspec)

    def start(self, lead_ns: int = 2_000_000) -> None:
        """Start the clock: the first deadline is ``lead_ns`` from now."""
        _timer_slack_1ns()
        if self.realtime or self.realtime is None:
            self._go_realtime(required=bool(self.realtime))
        self.t0 = time.monotonic_ns() + lead_ns
        self.stop_ns = self.t0 + self.duration_ns if self.duration_ns else 2**63 - 1
        self.pacer = Pacer(self.rate, self.t0, self.loop_gap_ns)

    def abort(self) -> None:
        self._abort.set()

    def _state(self):
        return kt.TxState(self.msgs, self.iovs, self.tspec, self.hist, self.acc, self.pacc,
                          self.addrs, self.xdp)

    def send(self, buf, off, length, ts, port=None) -> bool:
        """Send one chunk (arrays of equal length; ``ts`` int64 ns; ``port`` uint8, the index
        of the interface each frame goes out of: default all out of the first). False: stop now."""
        length = np.ascontiguousarray(length, np.int64)
        if port is None:
            if self.port0.shape[0] < off.shape[0]:
                self.port0 = np.zeros(off.shape[0], np.uint8)
            port = self.port0
        port = np.ascontiguousarray(port, np.uint8)
        if self.pacer is None:  # the clock starts with the first frames in hand
            self.start()
        sched = self.pacer.deadlines(ts, length)
        if self.lanes is not None:
            return self.lanes.send(self, buf, off, length, sched, port)
        return self.run_slices(self.iface.sock.fileno(), kt.Frames(buf, off, length, sched, port),
                               self._state())

    def pacing(self) -> kt.Pacing:
        """How the kernel paces the next slice."""
        return kt.Pacing(stop_ns=self.stop_ns, slice_end_ns=time.monotonic_ns() + SLICE_NS,
                         spin_ns=self.spin_ns, timed=self.rate.timed, catchup_ns=self.catchup_ns)

    def run_slices(self, fd: int, frames: kt.Frames, state: kt.TxState, after=None) -> bool:
        """Send ``frames`` slice by slice (``after()`` after each, then the checks, the
        progress callback). False: stop now."""
        i, n = 0, frames.off.shape[0]
        while i < n:
            if self._abort.is_set():
                self.stopped_by = self.stopped_by or "abort"
                return False
            i, status = kt.send_paced(fd, frames, i, n, self.pacing(), state)
            if after is not None:
                after()
            self._check_pace()
            self._rt_budget()
            if self.on_slice is not None:
                self.on_slice(self)
            if status == kt.ST_STOP:
                self.stopped_by = "duration"
                return False
            if status == kt.ST_FAILING:
                self.check_failing()
        return True

    def check_failing(self) -> None:
        """Sending failed MAX_FAILS times in a row: say why, naming the interface."""
        err = int(self.acc[kt.A_ERRNO])
        bad = self.ifaces[int(np.argmax(self.pacc[:, kt.P_ERRORS]))].name
        raise ArgumentError(Arg("iface", bad), f": sending failed "
                            f"{kt.MAX_FAILS} times in a row: {os.strerror(err)}")

    def use_lanes(self, count: int) -> None:
        """Send on ``count`` threads (``playback.lanes``), each flow on one."""
        from .lanes import Lanes
        socks = [open_interface(self.iface.name, self.iface.qdisc_bypass).sock for _ in range(count - 1)]
        self.lanes = Lanes(self, count, socks)

    def aborted(self) -> bool:
        return self._abort.is_set()

    def realtime_on(self) -> bool:
        """Whether the run is real-time (its lanes follow: ``playback.lanes``)."""
        return self._policy is not None

    def _check_pace(self, final: bool = False) -> None:
        """Warn once when the sender falls behind its deadlines and stays behind: late by
        more than 5 ms and 1% of the run, later at every check for BEHIND_NS (a stall the
        sender catches up from is not a rate out of reach), or more than 1 ms and 1% late at
        the end."""
        if self.warning or not self.rate.timed or self.acc[kt.A_PACKETS] == 0:
            return
        late = int(self.acc[kt.A_LATE_NS])
        last = int(self.acc[kt.A_LAST_NS])
        span = max(0, last - self.t0)
        if final:
            behind = late > max(1_000_000, span // 100)
        else:
            growing = late > max(5_000_000, span // 100) and late > self._late_before
            self._behind_since = (self._behind_since or last) if growing else 0
            behind = growing and last - self._behind_since >= BEHIND_NS
        self._late_before = late
        if behind:
            sent = int(self.acc[kt.A_PACKETS])
            pps = sent / (span / 1e9) if span else 0
            self.warning = (f"the rate asked ({self.rate.describe()}) is out of reach on "
                            f"{self.iface.name}: {late / 1e6:,.1f} ms behind schedule after "
                            f"{sent:,} packets ({pps:,.0f} packets/s achieved)")

    def _rt_budget(self) -> None:
        """Keep the real-time thread under the kernel's throttling limit (see RT_BUSY_NS)."""
        if self._policy is None:
            return
        now = time.monotonic_ns()
        if not self._rt_on:
            if now >= self._rt_rest_until:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
                self._rt_on, self._rt_samples = True, []
                self.spin_ns = min(self.spin_ns, RT_SPIN_NS)
            return
        busy = (now - self.t0) - int(self.acc[kt.A_SLEPT])
        self._rt_samples.append((now, busy))
        while len(self._rt_samples) > 1 and self._rt_samples[1][0] <= now - RT_WINDOW_NS:
            self._rt_samples.pop(0)
        t_old, busy_old = self._rt_samples[0]
        if busy - busy_old > RT_BUSY_NS:
            os.sched_setscheduler(0, *self._policy)
            self._rt_on, self._rt_rest_until = False, now + RT_REST_NS
            self.spin_ns = self._spin_ordinary

    def _go_realtime(self, required: bool) -> None:
        """SCHED_FIFO for the sending thread: on a busy machine an ordinary thread is woken
        (and preempted) milliseconds late; a real-time one is not. Undone by ``finish()``.
        Without the privilege, an error when ``required``, else the ordinary policy."""
        policy = (os.sched_getscheduler(0), os.sched_getparam(0))
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
            self._policy, self._rt_on = policy, True
            self._spin_ordinary, self.spin_ns = self.spin_ns, min(self.spin_ns, RT_SPIN_NS)
        except PermissionError:
            if required:
                raise ArgumentError(Arg("realtime"), ": needs CAP_SYS_NICE (run as root) to "
                                    "schedule the sending thread SCHED_FIFO") from None

    def finish(self) -> None:
        """The end-of-run check of the pace (a run that ends late warns); the thread's
        scheduling policy is restored."""
        if self._policy is not None:
            os.sched_setscheduler(0, *self._policy)
            self._policy = None
            self.realtime_used = True
        if self.lanes is not None:
            self.lanes.close()
        self._check_pace(final=True)

    def stats(self) -> dict:
        """Counters so far: packets, bytes, rates, departure error (us), errors."""
        a = self.acc
        sent = int(a[kt.A_PACKETS])
        first, last = int(a[kt.A_FIRST_NS]), int(a[kt.A_LAST_NS])
        span = (last - first) / 1e9 if sent > 1 else 0.0
        out = {"packets": sent, "bytes": int(a[kt.A_BYTES]),
               "elapsed_s": round((last - self.t0) / 1e9, 6) if sent else 0.0,
               "packets_per_s": round(sent / span, 1) if span > 0 else None,
               "mbps": round(a[kt.A_BYTES] * 8 / span / 1e6, 3) if span > 0 else None,
               "send_errors": int(a[kt.A_ERRORS]), "send_calls": int(a[kt.A_CALLS]),
               "retries": int(a[kt.A_RETRIES])}
        timed = int(a[kt.A_TIMED])
        if self.rate.timed and timed:
            out["departure_error_us"] = {
                "p50": kt.hist_quantile(self.hist, 0.50) / 1e3,
                "p99": kt.hist_quantile(self.hist, 0.99) / 1e3,
                "max": int(a[kt.A_MAX_ERR]) / 1e3,
                "mean": round(int(a[kt.A_SUM_ERR]) / timed / 1e3, 3)}
            out["scheduled_s"] = round((self.pacer.last - self.t0) / 1e9, 6)
            out["finish_late_ms"] = round(int(a[kt.A_LATE_NS]) / 1e6, 3)
        else:
            out["departure_error_us"] = None
        return out
