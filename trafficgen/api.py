"""The library API: load a scenario, iterate its packet batches, or write it to sinks.

    import trafficgen as tg
    sc = tg.load_scenario("chat", {"chat.rate": "5/s"}, duration="30s", seed=7)
    for batch in tg.batches(sc):            # nothing touches the disk
        batch.packets["ts_ns"], batch.packets["wire_len"], batch.frame(0)   # raw numpy rows
        batch.to_pandas("packets")          # the documented table, labels decoded
    first = list(tg.batches(sc, max_packets=10_000))   # exactly 10,000 packets
    report = tg.generate(sc, pcap="chat.pcap", flows="flows.parquet")

The CLI calls the same functions.
"""
from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterator

from trafficgen.config.scenario import Scenario, load_scenario
from trafficgen.engine.batch import Batch, first_packets
from trafficgen.engine.build import check_batch, check_load, make_engine, stop_at_ns, window_ns
from trafficgen.engine.core import DEFAULT_BATCH_PACKETS, DEFAULT_WINDOW_NS, GEN_WORKERS
from trafficgen.engine.dask import check_address
from trafficgen.engine.pool import max_workers
from trafficgen.engine.report import Tally, no_request_warning
from trafficgen.engine.spool import sweep_spool_dir
from trafficgen.errors import Arg, ArgumentError, TrafficgenError
from trafficgen.sinks import check_writable
from trafficgen.sinks.buffers import BufferPool
from trafficgen.sinks.outputs import capture_format, open_sinks

__all__ = ["load_scenario", "batches", "generate", "Batch", "open_sinks"]


def batches(scenario: Scenario | str | dict, *, frames: bool = True, max_packets: int | None = None,
            batch_packets: int = DEFAULT_BATCH_PACKETS,
            window: int | str = DEFAULT_WINDOW_NS) -> Iterator[Batch]:
    """Iterate the scenario's packets in timestamp order, in batches, with their flow and
    request rows (see :class:`Batch`). Nothing touches the disk.

    Parameters
    ----------
    scenario : Scenario, str or dict
        A loaded scenario, or what ``load_scenario`` takes (a built-in name, a path, a dict).
    frames : bool
        Build the frame bytes (default); False gives the labels and tables only, faster.
    max_packets : int, optional
        Stop after exactly this many packets: the last batch is cut to fit (``batch[:k]``),
        and the flow and request rows are exactly those the kept packets cover (referenced
        by one of them, or starting before the last one), in the order an uncut run gives
        them; a row then comes with the first batch that covers it. A stream that ends sooner
        is not cut.
    batch_packets : int
        Packets per batch at most (default 65,536).
    window : int or str
        Session time generated at once: ns, or a duration such as ``"10s"``.

    ``batch_packets`` and ``window`` trade memory against overhead and never change the
    packets, frames or rows, only how they are cut into batches.

    Returns
    -------
    iterator of Batch
        Each with ``len(batch)`` packets, ``to_arrow()`` / ``to_pandas()`` for the documented
        tables with labels decoded, and the raw numpy rows (``packets``, ``flows``,
        ``requests``) for speed.

    Raises
    ------
    ArgumentError
        A bad ``max_packets``, ``batch_packets`` or ``window`` (when called, before any batch).
    ConfigError
        A scenario that does not validate.
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    if max_packets is not None and (isinstance(max_packets, bool) or not isinstance(max_packets, int)
                                    or max_packets < 0):
        raise ArgumentError(Arg("max_packets"), f": expected a whole number >= 0, got {max_packets!r}")
    engine = make_engine(scenario, frames, batch_packets, window)
    net = scenario.network
    source = _with_prefixes(iter(engine), (net.ipv6_clients, net.ipv6_servers) if net.any_ipv6 else None)
    return source if max_packets is None else first_packets(source, max_packets)


def _with_prefixes(source: Iterator[Batch], prefixes) -> Iterator[Batch]:
    """The batches, each told how to show its IPv6 flows' addresses (``Batch.to_arrow``)."""
    try:
        for batch in source:
            batch.ipv6_prefixes = prefixes
            yield batch
    finally:
        source.close()


def _check_outputs(paths: dict[str, object]) -> None:
    seen: dict[str, str] = {}
    for what, dest in paths.items():
        if dest is None or hasattr(dest, "write"):
            continue
        real = os.path.realpath(os.fspath(dest))
        if real in seen:
            raise TrafficgenError(f"{dest}: given as both the {seen[real]} and the {what} output")
        seen[real] = what
        check_writable(Path(dest), allow_special=what == "capture")


def check_workers(workers, scheduler) -> int | None:
    """0: the Dask cluster; None: this process, with its generation threads; N: N workers (1:
    this process on one generation thread, the unit of the scaling figures)."""
    if scheduler is not None:
        if workers is not None:
            raise ArgumentError(Arg("workers"), " and ", Arg("scheduler"), ": the cluster's workers "
                                "do the work; give one of the two")
        if not hasattr(scheduler, "submit"):  # a distributed.Client passes as it is
            check_address(scheduler)
        return 0
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ArgumentError(Arg("workers"), f": expected a whole number >= 1, got {workers!r}")
    most, why = max_workers()
    if workers > most:  # checked before any process is started
        raise ArgumentError(Arg("workers"), f": at most {most} on this machine ({why}), got {workers}")
    return workers


def generate(scenario: Scenario | str | dict, *, pcap=None, flows=None, requests=None,
             packets=None, batch_packets: int = DEFAULT_BATCH_PACKETS,
             window: int | str = DEFAULT_WINDOW_NS, progress: Callable[[int, int], None] | None = None,
             workers: int | None = None, scheduler=None, shards: bool = False,
             stop_at: int | str | None = None) -> dict:
    """Generate a scenario into the given sinks (paths or binary file objects).

    Each path is written under a temporary name and renamed when whole; on any error none of
    them appears. None of ``batch_packets``, ``window``, ``workers``, ``scheduler`` and
    ``shards`` changes a byte of the output (see ``trafficgen.engine.parallel``).

    Parameters
    ----------
    scenario : Scenario, str or dict
        A loaded scenario, or what ``load_scenario`` takes.
    pcap : path or binary file, optional
        The capture; frames are built only when it is given. A path ending in ``.pcapng`` is
        written as pcapng with the labels as packet comments, anything else as pcap. An
        existing FIFO or device (``/dev/null``) is written in place.
    flows, requests, packets : path or binary file, optional
        The Parquet tables.
    batch_packets : int
        Packets per batch at most (default 65,536).
    window : int or str
        Session time generated at once: ns, or a duration such as ``"10s"`` (default).
    progress : callable, optional
        ``progress(done_ns, total_ns)``, called as the stream advances.
    workers : int, optional
        ``None`` (the default): this process, generating the next windows on two threads
        (one on a one-CPU machine) while it merges and writes; ``1``: this process on one
        thread (the unit of the scaling figures); ``N``: ``N`` local worker processes. The
        command line's default differs: ``trafficgen generate`` without ``--workers`` takes one
        worker per CPU this process may run on for runs of 5 minutes or more or with
        ``--shards``, and this process (as ``None``) otherwise.
    scheduler : str or distributed.Client, optional
        A Dask scheduler's address (or a client) to run on instead of local workers.
    shards : bool
        Every output path names a new folder of one file per partition (the sessions that
        start in one minute) that has rows for it, readable as one dataset; the report's
        ``shards`` gives each output's number of files. None of ``workers``, ``scheduler`` and
        ``shards`` changes a byte of the output (see ``trafficgen.engine.parallel``).
    stop_at : int or str, optional
        Cut the capture there (ns, a number of seconds as a str, or a duration such as
        ``"90s"``, from the capture start), as a tap that stops recording would: no packet at
        or after it is written (capture and packet table); flows and requests that start
        before it and go on past it stay in the tables, marked ``truncated`` (with their
        figures as simulated), and those that start after it are left out. It may lie before
        or after ``duration``; the bytes before the cut are those of the run without it,
        whatever ``window``, ``batch_packets``, ``workers``.

    Returns
    -------
    dict
        The report: packets, wire bytes, flows, requests, seconds, outputs;
        ``first_packet_s`` and ``last_packet_s`` (the capture's real span, seconds from its
        start: sessions that start within ``duration`` run to their end), ``stop_at_s``,
        ``truncated`` (flows and requests left open by the cut) and ``warnings`` (e.g. an
        output with no request, with the rate key and duration that would change that).

    Raises
    ------
    ArgumentError
        A bad argument (``workers``, ``window``, ``shards`` with a stream, ...).
    TrafficgenError
        An output that cannot be written, a scenario that does not validate (``ConfigError``).
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    n_workers = check_workers(workers, scheduler)
    check_load(scenario, window)
    cut = stop_at_ns(stop_at)
    outputs = {"capture": pcap, "flows": flows, "requests": requests, "packets": packets}
    total_ns = scenario.duration_ns if cut is None else min(cut, scenario.duration_ns)
    tick = None if progress is None else (lambda done, _total=None: progress(min(done, total_ns), total_ns))
    if shards:
        return _generate_shards(scenario, outputs, n_workers, scheduler, batch_packets, window,
                                tick, cut)
    _check_outputs(outputs)
    capture_format(pcap)
    sweep_spool_dir()  # what a killed run left (its workers' spool) goes first
    buffers = BufferPool()  # frame buffers go back to the pool once written
    # without a capture or a packet table, the packets are counted but never sorted or merged;
    # a cut counts the packets before it
    with_packets = pcap is not None or packets is not None or cut is not None
    t0 = time.perf_counter()
    par: dict = {}
    if n_workers in (None, 1):
        source = make_engine(scenario, pcap is not None, batch_packets, window, buffers.get, with_packets,
                             gen_threads=1 if n_workers == 1 else GEN_WORKERS, stop_at_ns=cut)
    else:
        from trafficgen.engine.parallel import Options, merged_batches
        opts = Options(pcap is not None, with_packets, window_ns(window),
                       check_batch(batch_packets), cut)
        source = merged_batches(scenario, opts, workers=n_workers, scheduler=scheduler, stats=par,
                                alloc=buffers.get)
    tally = Tally(with_packets)
    source = iter(source)
    try:
        with open_sinks(scenario, outputs, buffers.release) as sinks:
            for batch in source:
                sinks.write(batch)
                tally.add(batch)
                if tick is not None:
                    tick(batch.progress_ns)
            sinks.finish()  # every file whole under its temporary name before any is renamed
    finally:
        source.close()  # a run that stops early stops its workers now, not when collected
    return _report(scenario, tally, cut, time.perf_counter() - t0, outputs,
                   workers=par.get("workers", n_workers or 1), **({"merge_s": par["merge_s"]} if par else {}))


def _report(scenario, tally: Tally, cut: int | None, elapsed: float, outputs: dict, **extra) -> dict:
    counts = tally.report(scenario.start_ns)
    return {
        "scenario": scenario.name, "seed": scenario.seed,
        "duration_s": scenario.duration_ns / 1e9, **counts,
        "stop_at_s": None if cut is None else cut / 1e9,
        "elapsed_s": round(elapsed, 3),
        "packets_per_s": round(counts["packets"] / elapsed) if elapsed > 0 else None,
        "outputs": {k: os.fspath(v) for k, v in outputs.items()
                    if v is not None and not hasattr(v, "write")},
        **extra,
        "warnings": [no_request_warning(scenario, cut)] if counts["requests"] == 0 else [],
    }


SHARD_NAME = "part-{:05d}"


def _generate_shards(scenario, outputs: dict, n_workers: int, scheduler, batch_packets, window,
                     progress, cut) -> dict:
    """Every output a new folder of one file per partition, staged under a hidden name in the
    same parent and renamed into place when every shard of every output is whole."""
    from trafficgen.engine.parallel import Options, write_shards
    from trafficgen.sinks import StagedFolder
    from trafficgen.sinks.commit import commit_set
    given = {k: v for k, v in outputs.items() if v is not None}
    if not given:
        raise ArgumentError(Arg("shards"), ": nothing to write (give ", Arg("pcap"), ", ", Arg("flows"),
                            ", ", Arg("requests"), " or ", Arg("packets"), ")")
    for what, dest in given.items():
        if hasattr(dest, "write") or os.fspath(dest) == "-":
            raise ArgumentError(Arg("shards"), f": the {what} output must be a folder path, not a stream")
    suffix = {"capture": "pcapng" if os.fspath(given.get("capture", "")).lower().endswith(".pcapng")
              else "pcap", "flows": "parquet", "requests": "parquet", "packets": "parquet"}
    with_packets = "capture" in given or "packets" in given or cut is not None
    opts = Options("capture" in given, with_packets, window_ns(window), check_batch(batch_packets),
                   cut)
    t0 = time.perf_counter()
    with ExitStack() as stack:
        folders = {k: stack.enter_context(StagedFolder(v, what=k)) for k, v in given.items()}
        def paths_of(i):
            return ({k: os.path.join(f.tmp, f"{SHARD_NAME.format(i)}.{suffix[k]}")
                                       for k, f in folders.items()})
        parts, used, files = write_shards(scenario, opts, paths_of, workers=max(1, n_workers or 0),
                                          scheduler=scheduler, progress=progress)
        for f in folders.values():
            f.finish()
        commit_set(list(folders.values()))  # all or none, as the files of a run
        for f in folders.values():
            f.committed()
    return _report(scenario, Tally.merged(parts, with_packets), cut, time.perf_counter() - t0,
                   outputs, workers=used, shards=files)
