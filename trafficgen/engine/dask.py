"""Partitions on a Dask cluster: each phase a task, the scenario scattered once to every worker.
A Dask worker may be on another machine, so a stream comes back as arrays
(``phases.stream_arrays``), never through files; shards are written where the workers are.
"""
from __future__ import annotations

import operator
from typing import Callable, Iterator

from trafficgen.errors import Arg, ArgumentError

from . import phases


def dask_client(scheduler):
    """``(client, owned)``: the ``distributed.Client`` given, or one connected to the address
    given (``owned``: this run closes it)."""
    try:
        from distributed import Client
    except ImportError:
        raise ArgumentError(Arg("scheduler"), " needs Dask: pip install 'trafficgen-ai[dask]'") from None
    if isinstance(scheduler, Client):
        return scheduler, False
    check_address(scheduler)
    try:
        return Client(scheduler, timeout="10s"), True
    except (OSError, TimeoutError) as e:
        raise ArgumentError(Arg("scheduler", scheduler), f": no Dask scheduler answers there ({e})") from None
    except (ValueError, TypeError) as e:  # an unknown scheme, no port, ...
        raise ArgumentError(Arg("scheduler", scheduler), f": not a Dask scheduler address ({e})") from None


def check_address(scheduler) -> None:
    """Refuse what cannot be a scheduler's address (before anything starts): ``""`` (which
    ``Client`` would take as "start a cluster here"), or not a string."""
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise ArgumentError(Arg("scheduler", repr(scheduler)), ": expected a Dask scheduler's address "
                            "like tcp://host:8786 (or a distributed.Client)")


def dask_workers(client) -> int:
    """The cluster's worker threads (at least 1)."""
    return max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))


def dask_events(client, token: str, scenario, opts: phases.Options, jobs: list, ids: phases.Ids,
                limit: Callable[[], int]) -> Iterator[tuple[int, dict]]:
    """Run ``jobs`` (lo, hi, target) on the cluster, submitted in order below ``limit()``:
    yields ``(job, result)`` in job order. A failed task fails the run; what is left is
    cancelled."""
    sc = client.scatter(scenario, broadcast=True)
    sims, counts, builds = {}, {}, {}
    sub = built = 0
    try:
        for i in range(len(jobs)):
            while sub < min(len(jobs), max(limit(), i + 1)):
                lo, hi, _ = jobs[sub]
                both = client.submit(phases.simulate, token, sc, opts, lo, hi, pure=False)
                sims[sub] = client.submit(operator.getitem, both, 0, pure=False)
                counts[sub] = client.submit(operator.getitem, both, 1, pure=False)
                del both
                sub += 1
            while built < sub:
                first = ids.report(built, None)
                if first is None:
                    ids.report(built - 1, counts.pop(built - 1).result())
                    continue
                lo, hi, target = jobs[built]
                if isinstance(target, dict):
                    builds[built] = client.submit(phases.write_shard, token, sc, opts, lo, hi,
                                                  first, sims.pop(built), target, pure=False)
                else:
                    builds[built] = client.submit(phases.stream_arrays, token, sc, opts, lo, hi,
                                                  first, sims.pop(built), pure=False)
                built += 1
            result = builds.pop(i).result()
            yield i, result
    finally:
        for f in (*sims.values(), *counts.values(), *builds.values()):
            f.cancel()
