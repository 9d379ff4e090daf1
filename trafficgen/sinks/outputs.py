"""A run's outputs as one set of sinks: the capture (pcap or pcapng, by its suffix) and the
flow, request and packet tables, written together and made whole together."""
from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from trafficgen.errors import INTERRUPTED, TrafficgenError

from . import is_special
from .commit import CommitError, commit_set
from .parquet import ParquetSink
from .pcap import PcapSink
from .pcapng import PcapngSink


def capture_format(pcap) -> str | None:
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


class SinkSet(list):
    """The sinks of a run's outputs (``capture``, ``flows``, ``requests``, ``packets``: paths or
    binary file objects, or ``None``), as one: ``write(batch)`` to each; ``finish()`` makes every
    file whole under its temporary name (synced), then puts them all into place as one set
    (``commit.commit_set``: the previous files are back if any fails); an error aborts them all."""

    def write(self, batch) -> None:
        for sink in self:
            with naming(sink.target):
                sink.write(batch)

    def finish(self) -> None:
        for sink in self:
            with naming(sink.target):
                sink.finish()
        if INTERRUPTED.is_set():  # a ^C swallowed on the way: no output appears
            raise KeyboardInterrupt
        # all or none, SIGINT/SIGTERM held off meanwhile (commit.commit_set)
        commit_set([sink.staged for sink in self if sink.staged is not None])
        for sink in self:
            sink.committed()


@contextmanager
def naming(target):
    """An OSError writing ``target`` (a full disk: no file name of its own) names it."""
    try:
        yield
    except OSError as e:
        if e.filename is not None or not isinstance(target, (str, os.PathLike)) \
                or isinstance(e, (BrokenPipeError, CommitError)):
            raise
        raise type(e)(e.errno, e.strerror or str(e), os.fspath(target)) from e


@contextmanager
def open_sinks(scenario, outputs: dict, release=None) -> Iterator[SinkSet]:
    """The sinks of ``outputs`` (``capture``, ``flows``, ``requests``, ``packets``), opened.

    Parameters
    ----------
    scenario : Scenario
        What the files describe (their headers and metadata).
    outputs : dict
        Output name -> path, binary file object or ``None``.
    release : callable, optional
        ``release(frames)``: a batch's frame buffer once the capture sink is done with it.

    Yields
    ------
    SinkSet
        The sinks; any error inside the block aborts them all (no file appears).
    """
    fmt = capture_format(outputs.get("capture"))
    with ExitStack() as stack:
        sinks = SinkSet()
        pcap = outputs.get("capture")
        with naming(pcap):
            if fmt == "pcapng":
                sinks.append(stack.enter_context(PcapngSink(pcap, scenario, release=release)))
            elif pcap is not None:
                sinks.append(stack.enter_context(PcapSink(pcap, release=release)))
        for table in ("flows", "requests", "packets"):
            if outputs.get(table) is not None:
                with naming(outputs[table]):
                    sinks.append(stack.enter_context(ParquetSink(outputs[table], table, scenario)))
        yield sinks
