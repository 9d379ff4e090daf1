"""Replay a capture onto an interface, or send a scenario live as it is generated.

    import threading, trafficgen as tg
    r = tg.Replay("lab.pcap", iface="veth0", rate=tg.Rate("pps", 20_000), loop=3)
    r.prepare()                       # optional: checks the file and the interface first
    t = threading.Thread(target=r.run); t.start()
    r.stats()                         # counters so far, from any thread
    r.abort(); t.join()               # stop early (within ~50 ms)
    r.report                          # what run() returned

The CLI (``trafficgen replay``, ``trafficgen generate --iface``) calls the same class.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np

from trafficgen.config.scenario import Scenario, load_scenario
from trafficgen.errors import Arg, ArgumentError, TrafficgenError

from .capture import CaptureFile, Chunk, Prefetch, Ready, SlotPool
from .dutrun import DutPlan
from .iface import ETH_HLEN, Interface, Transmitter, check_interface, check_may_send, open_interface, oversize
from .rate import Rate
from .xdp import use_xdp

__all__ = ["Replay", "replay", "Rate"]
READY, RUNNING, DONE = "ready", "running", "done"
CACHE_BYTES = 32 << 20  # a file up to this size is kept in memory by the check pass


def _count(value, what: str, allow_zero: bool) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if allow_zero else 1):
        raise ArgumentError(Arg(what), f": expected a whole number >= {0 if allow_zero else 1}, got {value!r}")
    return int(value)


class Replay:
    """One run of frames onto an interface: a capture file (``source`` a path) or a scenario
    generated live (``source`` a :class:`Scenario`, a built-in name or a dict, with
    ``live=True``).

    Parameters
    ----------
    source : path, Scenario, str or dict
        A pcap/pcapng file, or (``live=True``) a scenario.
    iface : str
        The interface to send on. Nothing is sent without one.
    rate : Rate, optional
        How fast (default: the file's or the scenario's own timing).
    loop : int
        Passes over the file (0: until ``duration`` or ``abort()``). Files only.
    limit : int, optional
        Send at most this many packets in all.
    duration : float, optional
        Stop after this many seconds of wall time.
    progress : callable, optional
        ``progress(stats)`` about once a second while running (on the running thread).
    realtime : bool, optional
        Schedule the sending thread SCHED_FIFO while it runs: timing that holds on a busy
        machine. Default (None): when the process may (root, CAP_SYS_NICE); True:
        required; False: never.
    peer_iface : str, optional
        A second port (the server side of a device under test): client-side frames go out of
        ``iface``, server-side ones out of ``peer_iface``, on one schedule. The side of each
        frame: ``client_net`` (networks, a str or a list: frames from them are client-side),
        ``split="syn"`` (whoever sent a flow's SYN is its client), else the ground truth of
        our own pcapng captures (``dir=`` comments) or of a live scenario.
    dmac, peer_dmac, smac, peer_smac : str, optional
        Destination and source MAC out of ``iface`` and out of ``peer_iface`` (with two ports
        the source is by default the port's own MAC; the destination the capture's).
    map_client, map_server : str or list of str, optional
        ``"OLD=NEW"`` networks: addresses in OLD get NEW's network bits (host bits kept),
        checksums fixed. Only the outer headers of VXLAN/GRE tunnels are mapped.
    unique_ip : bool
        With ``loop``: pass k adds k times the span of client addresses to each client
        address, within the client net (the first ``map_client`` target, else the first
        ``client_net``, else a /16), so each pass opens new connections.
    count_back : bool
        Count the frames arriving on each port while sending (those a device passed).
    tx_threads : int
        Sending threads at top speed (default 1); each flow keeps to one, so its order holds.
    xdp : bool
        Send through AF_XDP sockets (``playback.xdp``) where the ports take them, else through
        AF_PACKET with one line on stderr saying why; the report's ``path`` says which sent.

    Raises
    ------
    ArgumentError
        A bad argument, named as here (``loop: expected a whole number >= 0, got -1``).

    Notes
    -----
    ``run()`` sends (blocking), after ``prepare()`` (the checks: the interface, the whole file)
    if it was not called; ``stats()`` and ``abort()`` work from any thread. A Replay runs once.
    """

    def __init__(self, source, iface: str | None, rate: Rate | None = None, *, loop: int = 1,
                 limit: int | None = None, duration: float | None = None, live: bool = False,
                 progress=None, qdisc_bypass: bool = True, realtime: bool | None = None,
                 peer_iface: str | None = None, tx_threads: int = 1, xdp: bool = False, **dut):
        self.live = live or isinstance(source, Scenario)
        self.dut = DutPlan(iface, peer_iface, **dut)
        self.tx_threads = _count(tx_threads, "tx_threads", allow_zero=False)
        self.source, self.iface_name = source, iface
        self.rate = rate if rate is not None else Rate()
        if not isinstance(self.rate, Rate):
            raise ArgumentError(Arg("rate"), f": expected a trafficgen.Rate, got {rate!r}")
        self.loop = _count(loop, "loop", allow_zero=True)
        self.limit = _count(limit, "limit", allow_zero=False)
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                     or not duration > 0):
            raise ArgumentError(Arg("duration"), f": expected a number of seconds above zero, got {duration!r}")
        self.duration = duration
        if self.live and loop != 1:
            raise ArgumentError(Arg("loop"), ": a live scenario is generated once; give ",
                                Arg("duration"), " instead")
        self.progress, self.qdisc_bypass, self.realtime, self.xdp = progress, qdisc_bypass, realtime, xdp
        self.sent_by, self.xdp_ports = {"path": "af_packet"}, []  # which sends; AF_XDP sockets to close
        self.state = None
        self.iface: Interface | None = None
        self.ifaces: list[Interface] = []
        self.tx: Transmitter | None = None
        self.info: dict = {}
        self.report: dict | None = None
        self._cached: list[Chunk] | None = None
        self._slots: SlotPool | None = None
        self._lock = threading.RLock()  # prepare() and the start of run(): one at a time
        self._last_progress = 0.0

    # --- lifecycle ----------------------------------------------------------------------------

    def prepare(self) -> dict:
        """Check the source and the interface (before anything is sent) and open the socket.

        Optional: ``run()`` prepares a Replay that was not. Calling it first separates the
        checks (a whole pass over a file) from the sending, and tells what will be sent.

        Returns
        -------
        dict
            What was found: packets, bytes and timestamp span (``span_ns``) of a file; the
            scenario, seed and duration of a live run.

        Raises
        ------
        TrafficgenError
            The file, the scenario or the interface cannot be used (nothing was sent), or
            ``prepare()`` was called before.
        """
        with self._lock:
            if self.state is not None:
                raise TrafficgenError("prepare() was already called on this Replay")
            self._open()
            self.state = READY
            return dict(self.info)

    def _open(self) -> None:
        check_interface(self.iface_name)  # nothing is sent without an interface that is up
        for name in self.dut.names[1:]:
            check_interface(name, "peer_iface")
        check_may_send(self.iface_name)  # before a long check of the file
        self.dut.open()
        if self.live:
            self.source = self.source if isinstance(self.source, Scenario) else load_scenario(self.source)
            self.info = {"scenario": self.source.name, "seed": self.source.seed,
                         "duration_s": self.source.duration_ns / 1e9}
            frame = self.source.topology.mss + 40 + 14
            self._check_mtu(frame, f"the scenario's frames reach {frame} bytes "
                                   f"(topology.mss {self.source.topology.mss})")
        else:
            self.capture = CaptureFile(self.source)
            self.info = self._scan(min(check_interface(n)[1] for n in self.dut.names))
            self.dut.finish(self.source, self._walk, self._cached)
        self.iface = open_interface(self.iface_name, self.qdisc_bypass)
        self.ifaces = [self.iface] + [open_interface(n, self.qdisc_bypass, "peer_iface") for n in self.dut.names[1:]]
        span, n = self.info.get("span_ns", 0), self.info.get("packets", 0)
        gap = span // (n - 1) if n > 1 else 0
        self.tx = Transmitter(self.ifaces, self.rate, loop_gap_ns=gap, on_slice=self._on_slice,
                              realtime=self.realtime,
                              duration_ns=int(self.duration * 1e9) if self.duration else None)
        if self.xdp:
            self.sent_by, self.xdp_ports = use_xdp(self.tx, self.ifaces, self.tx_threads)
        if self.tx_threads > 1 and self.rate.mode == "topspeed":  # paced, lanes wake late
            self.tx.use_lanes(self.tx_threads)

    def _check_mtu(self, size: int, what: str, mtu: int | None = None) -> None:
        """Refuse frames the interface cannot take (``size`` > MTU + Ethernet header)."""
        mtu = mtu if mtu is not None else check_interface(self.iface_name)[1]
        if size > mtu + ETH_HLEN or size < ETH_HLEN:
            room = (f"more than its MTU of {mtu} allows ({mtu + ETH_HLEN} bytes with the "
                    f"Ethernet header): raise it ('ip link set {self.iface_name} mtu N') or use "
                    f"smaller frames") if size >= ETH_HLEN else "shorter than an Ethernet header"
            raise ArgumentError(Arg("iface", self.iface_name), f": {what}, {room}")

    def _scan(self, mtu: int) -> dict:
        """Walk the whole file once: it is readable to the end and every frame fits."""
        packets = total = 0
        first = last = None
        keep = self.capture.size <= CACHE_BYTES
        kept = []
        for chunk in self.capture.chunks():
            k = oversize(chunk.buf, chunk.off, chunk.length, mtu + ETH_HLEN)
            if k >= 0:
                self._check_mtu(int(chunk.length[k]), f"{self.source}: packet "
                                f"{chunk.index + k + 1} is a frame of {int(chunk.length[k])} bytes", mtu)
            ts = chunk.ts[chunk.ts >= 0]
            if ts.shape[0]:
                first = int(ts[0]) if first is None else first
                last = int(ts.max()) if last is None else max(last, int(ts.max()))
            self.dut.scan(chunk, self.capture.format == "pcapng", chunk.big)
            if keep:
                kept.append(chunk.compact())
            packets += len(chunk)
            total += int(chunk.length.sum())
        self._cached = kept if keep else None
        return {"file": os.fspath(self.source), "format": self.capture.format,
                "file_bytes": self.capture.size, "packets": packets, "bytes": total,
                "span_ns": (last - first) if first is not None else 0}

    def run(self) -> dict:
        """Send everything (blocking; any thread), after ``prepare()`` if it has not run.

        A Replay runs once. On KeyboardInterrupt the report is made (``stopped_by:
        interrupt``) and the interrupt raised again.

        Returns
        -------
        dict
            The report, also kept in ``report``: packets and bytes sent, rates achieved,
            departure error, send errors, what stopped the run (``stopped_by``).

        Raises
        ------
        TrafficgenError
            What ``prepare()`` raises, or this Replay has run (or was closed) already.
        """
        with self._lock:
            if self.state is None:
                self.prepare()
            if self.state != READY:
                raise TrafficgenError(f"this Replay is {'running' if self.state == RUNNING else 'done'}: "
                                      "a Replay sends once; make a new one to send again")
            self.state = RUNNING
        t_wall = time.perf_counter()
        try:
            self.dut.start_counting()
            self.tx.stopped_by = None
            ended = self._run_live() if self.live else self._run_file()
            self.tx.stopped_by = self.tx.stopped_by or ended
        except KeyboardInterrupt:
            self.tx.stopped_by = "interrupt"
            raise
        finally:
            self.tx.finish()
            self.dut.stop_counting()
            self.report = self._report(time.perf_counter() - t_wall)
            self.state = DONE
            self._close_ifaces()
        return self.report

    def abort(self) -> None:
        """Stop a run soon (from any thread); ``run()`` then returns its report."""
        if self.tx is not None:
            self.tx.abort()

    def close(self) -> None:
        """Release the socket of a prepared Replay that will not run (``run()`` does it)."""
        if self.iface is not None and self.state != RUNNING:
            self._close_ifaces()
            self.state = DONE

    def _close_ifaces(self) -> None:
        for i in self.ifaces + self.xdp_ports:
            i.close()
        self.dut.close()

    def stats(self) -> dict:
        """Counters so far (see ``report``); safe from any thread."""
        if self.tx is None:
            return {"state": self.state, "packets": 0, "bytes": 0}
        return {"state": self.state, **self.tx.stats()}

    # --- sending ------------------------------------------------------------------------------

    def _budget(self, n: int) -> int:
        if self.limit is None:
            return n
        return max(0, min(n, self.limit - int(self.tx.acc[0])))

    def _send(self, buf, off, length, ts, port=None) -> str | None:
        """Send a chunk within the limit; the reason to stop, or None to go on."""
        n = self._budget(off.shape[0])
        more = {} if port is None else {"port": port[:n]}
        if n and not self.tx.send(buf, off[:n], length[:n], ts[:n], **more):
            return self.tx.stopped_by
        return "limit" if n < off.shape[0] or self._budget(1) == 0 else None

    def _run_file(self) -> str:
        """Every pass; chunks are read (and rewritten) ahead on one reading thread for the
        whole run, so a new pass starts on time, unless they are all in memory as sent."""
        if self.info["packets"] == 0:
            return "end"
        direct = self._cached is not None and not self.dut.busy(True)
        if self._slots is None and self._cached is None:
            self._slots = SlotPool()  # the same buffers for every pass
        reader = None if direct else Prefetch(self._ready(), name="trafficgen-replay-read")
        passes = 0
        try:
            for r in self._direct() if direct else reader:
                if r.chunk is None:  # the end of a pass
                    passes = self.tx.loops = passes + 1
                    if self.tx.pacer is not None:
                        self.tx.pacer.next_loop()
                    continue
                try:
                    stop = self._send(r.buf, r.chunk.off, r.chunk.length, r.chunk.ts, r.port)
                finally:
                    r.release()
                if stop:
                    self.tx.loops = passes + 1
                    return stop
        finally:
            if reader is not None:
                reader.close()
        return "end"

    def _walk(self):  # the file's chunks again (a second walk, for unique_ip)
        return iter(self._cached) if self._cached is not None else self.capture.chunks()
    def _ready(self):
        """Every pass's chunks, rewritten for the device (on the reading thread, ahead, unless
        kept in memory as sent: ``_direct``), a ``Ready`` without a chunk after each pass."""
        k, cached = 0, self._cached is not None
        while self.loop == 0 or k < self.loop:
            for c in self._cached if cached else self.capture.chunks(self._slots.get):
                yield Ready(c, *self.dut.frames(c.buf, c.off, c.length, c.index, k, cached))
            yield Ready(None, None, None)
            k += 1

    _direct = _ready

    def _run_live(self) -> str:
        from trafficgen.engine.build import make_engine
        from trafficgen.sinks.buffers import BufferPool
        pool = BufferPool(keep=3)
        engine = make_engine(self.source, True, 1 << 14, "10s", pool.get)
        batches = Prefetch(iter(engine), depth=2, name="trafficgen-live-gen")
        try:
            for batch in batches:
                if batch.frames is None:
                    continue
                port = self.dut.live_frames(batch.frames, batch.offsets,
                                            batch.packets["wire_len"], batch.packets["direction"])
                stop = self._send(batch.frames, batch.offsets, batch.packets["wire_len"],
                                  batch.packets["ts_ns"], port)
                pool.release(batch.frames)
                if stop:
                    return stop
        finally:
            batches.close()
        return "end"

    def _on_slice(self, tx: Transmitter) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self._last_progress >= 1.0:
            self._last_progress = now
            self.progress(self.stats())

    # --- report -------------------------------------------------------------------------------

    def _report(self, wall_s: float) -> dict:
        st = self.tx.stats()
        warnings = [self.tx.warning] if self.tx.warning else []
        if st["send_errors"]:
            warnings.append(f"{st['send_errors']:,} frames could not be sent")
        passes = getattr(self.tx, "loops", None) if not self.live else None
        dut, more = self.dut.report(self.tx, 1 if self.live else self.loop, passes or 1)
        if self.tx_threads > 1 and self.tx.lanes is None:
            more.append(f"tx_threads {self.tx_threads}: only top speed is sent by more than one thread")
        warnings += more
        return {"iface": self.iface.name, **({"peer_iface": self.ifaces[1].name} if self.dut.two else {}),
                **dut, "source": self.info, "rate": self.rate.to_dict(),
                **st, "loops": getattr(self.tx, "loops", None) if not self.live else None,
                "stopped_by": self.tx.stopped_by, "rate_reached": self.tx.warning is None,
                "qdisc_bypass": self.iface.qdisc_bypass, "realtime": self.tx.realtime_used, "wall_s": round(wall_s, 3),
                **self.sent_by, "warnings": warnings}


def replay(source, iface: str, rate: Rate | None = None, **kwargs) -> dict:
    """Prepare and run a :class:`Replay` in one call; returns its report."""
    r = Replay(source, iface, rate, **kwargs)
    r.prepare()
    return r.run()
