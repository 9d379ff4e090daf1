"""Shards: each partition into its own files (one per output), written by the worker that
builds it; nothing is merged. A partition writes no file for an output it has no rows for
(``phases.write_shard``), so the names keep the partition's number, with gaps: the same
number in two output folders is the same partition. An output with no rows in any partition
gets one empty file, the first partition's, so its folder still reads as a dataset with its
columns (or holds a valid empty capture). MACsec runs cannot be sharded (their packet numbers
count one capture's frames).
"""
from __future__ import annotations

from typing import Callable

from trafficgen.errors import Arg, ArgumentError
from trafficgen.sinks.outputs import open_sinks

from .backend import Backend
from .core import Engine
from .phases import Ids, Options


def check_shards(scenario) -> None:
    """Refuse what cannot be cut into captures: MACsec packet numbers count one capture's frames."""
    if scenario.network.macsec:
        raise ArgumentError("network.macsec: MACsec packet numbers count the frames of one whole "
                            "capture, so a MACsec run cannot be sharded (drop ", Arg("shards"), ")")


def write_shards(scenario, opts: Options, paths_of: Callable[[int], dict], *, workers: int = 1,
                 scheduler=None, progress: Callable | None = None) -> tuple[list[dict], int, dict]:
    """Each partition into its own files (``paths_of(i)``, the same keys for every ``i``).

    Returns
    -------
    (counts, workers, files)
        Each partition's counts (``phases.write_shard``), the number of workers that ran, and
        how many files each output got."""
    check_shards(scenario)
    parts = Engine(scenario, frames=False, packets=False, window_ns=opts.window_ns,
                   stop_at_ns=opts.stop_at_ns).partitions()
    out: list[dict | None] = [None] * len(parts)
    with Backend(scenario, opts, workers, scheduler) as backend:
        jobs = [(lo, hi, paths_of(i)) for i, (lo, hi) in enumerate(parts)]
        ahead = backend.ahead
        backend.limit = ahead
        done = 0
        for i, result in backend.events(jobs, Ids(len(jobs))):
            out[i] = result
            while done < len(out) and out[done] is not None:
                done += 1
            backend.limit = done + ahead
            if progress is not None:
                hi = parts[done][0] if done < len(parts) else scenario.duration_ns
                progress(max(0, min(hi, scenario.duration_ns)), scenario.duration_ns)
        workers_ran = backend.workers
    first = {k: v for k, v in paths_of(0).items() if v is not None}
    files = {k: sum(k in r["files"] for r in out) for k in first}
    empty = {k: first[k] for k, n in files.items() if n == 0}
    if empty:  # no rows anywhere: one empty file, for the folder's schema (or an empty capture)
        with open_sinks(scenario, empty) as sinks:
            sinks.finish()
        files.update(dict.fromkeys(empty, 1))
    return out, workers_ran, files
