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
from pathlib import Path
from contextlib import ExitStack
from typing import Callable, Iterator

from .config import Scenario, load_scenario
from .engine import DEFAULT_BATCH_PACKETS, DEFAULT_WINDOW_NS, MIN_WINDOW_NS, Batch, BufferPool, Engine
from .errors import TrafficgenError
from .sinks import check_writable, is_special
from .units import parse_duration
from .sinks.parquet import ParquetSink
from .sinks.pcap import PcapSink
from .sinks.pcapng import PcapngSink

__all__ = ["load_scenario", "batches", "generate", "Batch"]


def _window_ns(window) -> int:
    """A generation window given as ns (int) or a duration string; at least 100 ms."""
    given = window
    if isinstance(window, str):
        try:
            window = parse_duration(window)
        except ValueError as e:
            raise TrafficgenError(f"window: {e}") from None
    if isinstance(window, bool) or not isinstance(window, int) or window < MIN_WINDOW_NS:
        raise TrafficgenError(f"window: expected a duration of at least 100ms, got {given!r}")
    return window


def batches(scenario: Scenario | str | dict, *, frames: bool = True,
            batch_packets: int = DEFAULT_BATCH_PACKETS,
            window: int | str = DEFAULT_WINDOW_NS) -> Iterator[Batch]:
    """Iterate the scenario's packets in timestamp order, in batches (see ``Batch``).

    ``frames=False`` skips building frame bytes (labels and tables only). ``batch_packets`` and
    ``window`` (ns or a duration such as ``"10s"``: how much session time is generated at once)
    trade memory against overhead and never change the output."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    return iter(_engine(scenario, frames, batch_packets, window))


def _engine(scenario: Scenario, frames: bool, batch_packets, window, alloc=None,
            packets: bool = True) -> Engine:
    if isinstance(batch_packets, bool) or not isinstance(batch_packets, int) or batch_packets < 1:
        raise TrafficgenError(f"batch_packets: expected a whole number >= 1, got {batch_packets!r}")
    return Engine(scenario, frames=frames, batch_packets=batch_packets,
                  window_ns=_window_ns(window), alloc=alloc, packets=packets)


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


def _capture_format(pcap) -> str | None:
    """``"pcap"`` or ``"pcapng"`` from the capture path's suffix (a file object, or an existing
    FIFO or device not named ``.pcapng``, gets pcap); anything else is refused."""
    if pcap is None:
        return None
    if hasattr(pcap, "write"):
        return "pcap"
    suffix = os.fspath(pcap).lower().rsplit(".", 1)[-1] if "." in os.fspath(pcap) else ""
    if suffix in ("pcap", "pcapng"):
        return suffix
    if is_special(Path(pcap)):
        return "pcap"
    raise TrafficgenError(f"{pcap}: capture format from the suffix must be .pcap or .pcapng")


def generate(scenario: Scenario | str | dict, *, pcap=None, flows=None, requests=None,
             packets=None, batch_packets: int = DEFAULT_BATCH_PACKETS,
             window: int | str = DEFAULT_WINDOW_NS, progress: Callable[[int, int], None] | None = None) -> dict:
    """Generate a scenario into the given sinks (paths or binary file objects).

    Frames are built only when ``pcap`` is given; a path ending in ``.pcapng`` is written as
    pcapng with the labels as packet comments, anything else as pcap. Each path is written under a temporary name
    and renamed when whole; on any error none of them appears. A capture path that is an
    existing FIFO or device (``/dev/null``) is written in place. ``progress(done_ns, total_ns)``
    is called as the stream advances. Returns a report dict (counts, bytes, seconds).
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    outputs = {"capture": pcap, "flows": flows, "requests": requests, "packets": packets}
    _check_outputs(outputs)
    fmt = _capture_format(pcap)
    buffers = BufferPool()  # frame buffers go back to the pool once written
    # without a capture or a packet table, the packets are counted but never sorted or merged
    with_packets = pcap is not None or packets is not None
    engine = _engine(scenario, pcap is not None, batch_packets, window, buffers.get, with_packets)
    t0 = time.perf_counter()
    totals = {"packets": 0, "wire_bytes": 0, "flows": 0, "requests": 0}
    with ExitStack() as stack:
        sinks = []
        if fmt == "pcapng":
            sinks.append(stack.enter_context(PcapngSink(pcap, scenario, release=buffers.release)))
        elif pcap is not None:
            sinks.append(stack.enter_context(PcapSink(pcap, release=buffers.release)))
        for table, dest in (("flows", flows), ("requests", requests), ("packets", packets)):
            if dest is not None:
                sinks.append(stack.enter_context(ParquetSink(dest, table, scenario)))
        for batch in engine:
            for sink in sinks:
                sink.write(batch)
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
        for sink in sinks:  # every file whole under its temporary name before any is renamed
            sink.finish()
        for sink in sinks:
            sink.commit()
    elapsed = time.perf_counter() - t0
    return {
        "scenario": scenario.name, "seed": scenario.seed,
        "duration_s": scenario.duration_ns / 1e9, **totals,
        "elapsed_s": round(elapsed, 3),
        "packets_per_s": round(totals["packets"] / elapsed) if elapsed > 0 else None,
        "outputs": {k: os.fspath(v) for k, v in outputs.items()
                    if v is not None and not hasattr(v, "write")},
    }
