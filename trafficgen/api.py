"""The library API: load a scenario, iterate its packet batches, or write it to sinks.

    import trafficgen as tg
    sc = tg.load_scenario("chat", {"chat.rate": "5/s"}, duration="30s", seed=7)
    for batch in tg.batches(sc):            # nothing touches the disk
        batch.packets["ts_ns"], batch.packets["wire_len"], batch.frame(0)
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
from trafficgen.engine.build import check_batch, make_engine, window_ns
from trafficgen.engine.core import DEFAULT_BATCH_PACKETS, DEFAULT_WINDOW_NS, GEN_WORKERS, Batch
from trafficgen.errors import TrafficgenError
from trafficgen.sinks import check_writable
from trafficgen.sinks.buffers import BufferPool
from trafficgen.sinks.outputs import capture_format, open_sinks

__all__ = ["load_scenario", "batches", "generate", "Batch", "open_sinks"]


def batches(scenario: Scenario | str | dict, *, frames: bool = True,
            batch_packets: int = DEFAULT_BATCH_PACKETS,
            window: int | str = DEFAULT_WINDOW_NS) -> Iterator[Batch]:
    """Iterate the scenario's packets in timestamp order, in batches (see ``Batch``).

    ``frames=False`` skips building frame bytes (labels and tables only). ``batch_packets`` and
    ``window`` (ns or a duration such as ``"10s"``: how much session time is generated at once)
    trade memory against overhead and never change the output."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    return iter(make_engine(scenario, frames, batch_packets, window))


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


def _workers(workers, scheduler) -> int | None:
    """0: the Dask cluster; None: this process, with its generation threads; N: N workers (1:
    this process on one generation thread, the unit of the scaling figures)."""
    if scheduler is not None:
        if workers is not None:
            raise TrafficgenError("--workers and --scheduler: the cluster's workers do the work; "
                                  "give one of the two")
        return 0
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise TrafficgenError(f"workers: expected a whole number >= 1, got {workers!r}")
    return workers


def generate(scenario: Scenario | str | dict, *, pcap=None, flows=None, requests=None,
             packets=None, batch_packets: int = DEFAULT_BATCH_PACKETS,
             window: int | str = DEFAULT_WINDOW_NS, progress: Callable[[int, int], None] | None = None,
             workers: int | None = None, scheduler=None, shards: bool = False) -> dict:
    """Generate a scenario into the given sinks (paths or binary file objects).

    Frames are built only when ``pcap`` is given; a path ending in ``.pcapng`` is written as
    pcapng with the labels as packet comments, anything else as pcap. Each path is written under a temporary name
    and renamed when whole; on any error none of them appears. A capture path that is an
    existing FIFO or device (``/dev/null``) is written in place. ``progress(done_ns, total_ns)``
    is called as the stream advances. Returns a report dict (counts, bytes, seconds).

    ``workers``: local processes to spread the work over (default 1: this process alone);
    ``scheduler``: a Dask scheduler's address (or a ``distributed.Client``) to run it on
    instead. ``shards``: every output path names a new folder of one file per partition (the
    sessions that start in one minute) that has rows for it, readable as one dataset; the
    report's ``shards`` gives each output's number of files. None of the three changes a
    byte of the output (see ``trafficgen.engine.parallel``).
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    n_workers = _workers(workers, scheduler)
    outputs = {"capture": pcap, "flows": flows, "requests": requests, "packets": packets}
    if shards:
        return _generate_shards(scenario, outputs, n_workers, scheduler, batch_packets, window,
                                progress)
    _check_outputs(outputs)
    capture_format(pcap)
    buffers = BufferPool()  # frame buffers go back to the pool once written
    # without a capture or a packet table, the packets are counted but never sorted or merged
    with_packets = pcap is not None or packets is not None
    t0 = time.perf_counter()
    par: dict = {}
    if n_workers in (None, 1):
        source = make_engine(scenario, pcap is not None, batch_packets, window, buffers.get, with_packets,
                         gen_threads=1 if n_workers == 1 else GEN_WORKERS)
    else:
        from trafficgen.engine.parallel import Options, merged_batches
        opts = Options(pcap is not None, with_packets, window_ns(window),
                       check_batch(batch_packets))
        source = merged_batches(scenario, opts, workers=n_workers, scheduler=scheduler, stats=par,
                                alloc=buffers.get)
    totals = {"packets": 0, "wire_bytes": 0, "flows": 0, "requests": 0}
    with open_sinks(scenario, outputs, buffers.release) as sinks:
        for batch in source:
            sinks.write(batch)
            if with_packets:
                totals["packets"] += batch.packets.shape[0]
                totals["wire_bytes"] += int(batch.packets["wire_len"].sum())
            else:  # every flow's packets are in the run: its totals are theirs
                f = batch.flows
                totals["packets"] += int(f["packets_up"].sum() + f["packets_down"].sum())
                totals["wire_bytes"] += int(f["bytes_up"].sum() + f["bytes_down"].sum())
            totals["flows"] += batch.flows.shape[0]
            totals["requests"] += batch.requests.shape[0]
            if progress is not None:
                progress(batch.progress_ns, scenario.duration_ns)
        sinks.finish()  # every file whole under its temporary name before any is renamed
    return _report(scenario, totals, time.perf_counter() - t0, outputs,
                   workers=par.get("workers", n_workers or 1), **({"merge_s": par["merge_s"]} if par else {}))


def _report(scenario, totals: dict, elapsed: float, outputs: dict, **extra) -> dict:
    return {
        "scenario": scenario.name, "seed": scenario.seed,
        "duration_s": scenario.duration_ns / 1e9, **totals,
        "elapsed_s": round(elapsed, 3),
        "packets_per_s": round(totals["packets"] / elapsed) if elapsed > 0 else None,
        "outputs": {k: os.fspath(v) for k, v in outputs.items()
                    if v is not None and not hasattr(v, "write")},
        **extra,
    }


SHARD_NAME = "part-{:05d}"


def _generate_shards(scenario, outputs: dict, n_workers: int, scheduler, batch_packets, window,
                     progress) -> dict:
    """Every output a new folder of one file per partition, staged under a hidden name in the
    same parent and renamed into place when every shard of every output is whole."""
    from trafficgen.engine.parallel import Options, write_shards
    from trafficgen.sinks import StagedFolder
    given = {k: v for k, v in outputs.items() if v is not None}
    if not given:
        raise TrafficgenError("--shards: nothing to write")
    for what, dest in given.items():
        if hasattr(dest, "write") or os.fspath(dest) == "-":
            raise TrafficgenError(f"--shards: the {what} output must be a folder path, not a stream")
    suffix = {"capture": "pcapng" if os.fspath(given.get("capture", "")).lower().endswith(".pcapng")
              else "pcap", "flows": "parquet", "requests": "parquet", "packets": "parquet"}
    opts = Options("capture" in given, "capture" in given or "packets" in given,
                   window_ns(window), check_batch(batch_packets))
    t0 = time.perf_counter()
    with ExitStack() as stack:
        folders = {k: stack.enter_context(StagedFolder(v, what=k)) for k, v in given.items()}
        def paths_of(i):
            return ({k: os.path.join(f.tmp, f"{SHARD_NAME.format(i)}.{suffix[k]}")
                                       for k, f in folders.items()})
        parts, used, files = write_shards(scenario, opts, paths_of, workers=max(1, n_workers or 1),
                                          scheduler=scheduler, progress=progress)
        for f in folders.values():
            f.commit()
    totals = {k: sum(p[k] for p in parts) for k in ("packets", "wire_bytes", "flows", "requests")}
    return _report(scenario, totals, time.perf_counter() - t0, outputs, workers=used,
                   shards=files)
