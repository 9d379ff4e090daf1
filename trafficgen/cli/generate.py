"""Pieces of ``trafficgen generate``: its options (durations checked with the option named, the
seed, the workers it picks by itself); the capture into a pipe (standard output, a FIFO), which
ends quietly when its reader goes away; the summary line."""
from __future__ import annotations

import os
import stat
import sys

from trafficgen.errors import TrafficgenError


def duration_option(option: str, text: str) -> int:
    """``--duration``/``--stop-at``: a duration (``90s``, ``5m``, or seconds: ``90``) within
    what a scenario's duration allows (1 ms to 30 days), in ns; else an error naming the option.

    Raises
    ------
    TrafficgenError
        ``--duration: must be from 1ms to 30d, got '0s'``.
    """
    from trafficgen.config.sections import SCENARIO_KEYS  # the one place the bounds are declared
    key = next(k for k in SCENARIO_KEYS if k.name == "duration")
    try:
        return key.parse(text)
    except ValueError as e:
        raise TrafficgenError(f"{option}: {e}") from None


AUTO_WORKERS_MIN_NS = 5 * 60 * 10**9  # shorter runs: starting workers costs more than it saves
# with fewer CPUs than this, a run stays in this process (its two generation threads): on two
# cores the merge's framing and the workers' spool cost more than a second process gives
# (20 minutes of chat: 0.91x the wall time of two workers, bench/RESULTS.md, issue 20)
AUTO_WORKERS_MIN_CPUS = 3


def auto_workers(args, scenario, stop_ns: int | None = None) -> int | None:
    """``--workers`` as given, or by itself: the machine's cores for runs of 5 minutes or more
    up to the cut (``stop_ns``) on a machine of 3 CPUs or more, else this process (``None``);
    with ``--shards``, the machine's cores (one worker on one CPU)."""
    if args.workers is not None or args.scheduler is not None:
        return args.workers
    from trafficgen.engine.parallel import default_workers
    from trafficgen.engine.pool import max_workers
    n = min(default_workers(), max_workers()[0])  # never more than the machine's memory holds
    if args.shards:
        return n if n >= 2 else 1
    if n < AUTO_WORKERS_MIN_CPUS or min(scenario.duration_ns, stop_ns or scenario.duration_ns) \
            < AUTO_WORKERS_MIN_NS:
        return None
    return n


def seed_option(text: str) -> int:
    """``--seed``: a whole number from 0 to 2**63-1 (``0x`` and ``0o`` prefixes allowed)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise TrafficgenError(f"--seed: expected a whole number from 0 to 2**63-1, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise TrafficgenError(f"--seed: expected a whole number from 0 to 2**63-1, got {text!r}")
    return value


class PipeCapture:
    """The capture written into a pipe: standard output (``-o -``) or an existing FIFO (opened
    on the first write, when the pcap sink would have opened it), taken as ``tee -p`` takes a
    pipe. Once its reader goes away (``| head -c 100``, ``| tcpdump -r - -c 3``) the capture ends
    there. With no other output the ``BrokenPipeError`` goes on up and the run stops (``main``
    ends it quietly, exit status 0); with other outputs the run goes on without the capture and
    they are written whole. Standard output then points at /dev/null, so nothing left in a
    buffer fails again at exit ("Exception ignored ... BrokenPipeError")."""

    def __init__(self, target, others: bool):
        self.path = None if hasattr(target, "write") else target
        self.stream = target if self.path is None else None
        self.others = others
        self.written = 0  # bytes the pipe took before its reader went away
        self.gone = False

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if self.gone:
            return size
        try:
            if self.stream is None:
                try:
                    self.stream = open(self.path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
                except OSError as e:
                    raise TrafficgenError(f"{self.path}: cannot open: {e.strerror or e}") from None
            n = self.stream.write(data)
        except BrokenPipeError:
            self._reader_gone()
            if not self.others:
                raise
            return size
        self.written += size if n is None else n
        return n

    def flush(self) -> None:
        if not self.gone and self.stream is not None:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._reader_gone()
                if not self.others:
                    raise

    def close(self) -> None:
        """Close a FIFO this opened (standard output stays open)."""
        if self.path is not None and self.stream is not None:
            try:
                self.stream.close()
            except BrokenPipeError:
                pass

    def _reader_gone(self) -> None:
        self.gone = True
        if self.path is None:
            quiet_stdout()


def pipe_capture(output: str | None, others: bool):
    """``-o``'s target: a ``PipeCapture`` for ``-`` and for an existing FIFO (not named
    ``.pcapng``: a pipe given as a stream is written as pcap), else the path as given."""
    if output == "-":
        return PipeCapture(sys.stdout.buffer, others)
    if output is not None and not output.lower().endswith(".pcapng"):
        try:
            fifo = stat.S_ISFIFO(os.stat(output).st_mode)
        except OSError:
            fifo = False
        if fifo:
            return PipeCapture(output, others)
    return output


def quiet_stdout() -> None:
    """Point standard output at /dev/null: its reader went away."""
    try:
        sys.stdout.flush()  # what is buffered goes nowhere, but without an error at exit
    except (BrokenPipeError, ValueError):
        pass
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
    finally:
        os.close(devnull)


def _at(seconds: float) -> str:
    return f"{seconds:,.1f}" if seconds >= 1 else f"{seconds:.3f}"


def summary(report: dict) -> str:
    """The one line ``generate`` prints: what was written, the duration asked, and the
    capture's real span beside it (sessions that start within the duration run to their end;
    a cut ends it)."""
    outs = ", ".join(report["outputs"].values())
    where = f"{report['duration_s']:g} s of '{report['scenario']}', seed {report['seed']}"
    span = ("no packets" if report["first_packet_s"] is None else
            f"packets from {_at(report['first_packet_s'])} to {_at(report['last_packet_s'])} s")
    if report.get("stop_at_s") is not None:
        t = report["truncated"]
        where += f", cut at {report['stop_at_s']:g} s: {span}"
        if t["flows"] or t["requests"]:
            where += f", {t['flows']:,} flows and {t['requests']:,} requests left open"
    else:
        where += f"; {span}"
    if report.get("capture_reader_left"):
        where += f"; the capture's reader closed it after {report['capture_bytes_written']:,} bytes"
    return (f"wrote {outs}: {report['packets']:,} packets, {report['wire_bytes'] / 1e6:,.1f} MB on "
            f"the wire, {report['flows']:,} flows, {report['requests']:,} requests ({where}) in "
            f"{report['elapsed_s']:.1f} s"
            + (f" on {report['workers']} workers" if report.get("workers", 1) > 1 else "")
            + (", shard files: " + ", ".join(f"{n} {k}" for k, n in report["shards"].items())
               if "shards" in report else ""))

