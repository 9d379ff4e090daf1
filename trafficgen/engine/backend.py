"""Where the partitions run: local worker processes (``pool``), a Dask cluster (``dask``), or
this process alone (one worker). Either way ``events(jobs, ids)`` yields ``(job, result)``
as each ends, and at most ``ahead`` partitions run past the first one not yet taken up.
"""
from __future__ import annotations

from typing import Iterator

from . import phases, spool
from .dask import dask_client, dask_events, dask_workers
from .pool import LocalPool

AHEAD = 2  # partitions built ahead of the merge, per worker


class Backend:
    """Local processes, or a Dask cluster: ``events(jobs, ids)`` yields ``(job, result)``."""

    def __init__(self, scenario, opts: phases.Options, workers: int, scheduler):
        self.scenario, self.opts = scenario, opts
        self.token = phases.token_of(scenario)
        self.remote = scheduler is not None
        self.pool = self.client = None
        self._limit = 1 << 62
        self.own_client = False
        if self.remote:
            self.client, self.own_client = dask_client(scheduler)
            self.workers = dask_workers(self.client)
        else:
            self.workers = workers
            if workers > 1:
                self.pool = LocalPool(workers, self.token, scenario, opts)

    @property
    def ahead(self) -> int:
        """Partitions that may run past the first one the caller has not taken up yet."""
        return AHEAD * self.workers

    @property
    def limit(self) -> int:
        """Jobs below this index may run (the merge moves it on; the pool sees it at once)."""
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        self._limit = value
        if self.pool is not None:
            self.pool.limit = value

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.pool is not None:
            self.pool.close(abort=exc_type is not None)
        if self.own_client:
            self.client.close()
        return False

    def events(self, jobs: list, ids: phases.Ids) -> Iterator[tuple[int, dict]]:
        """Run ``jobs`` (lo, hi, target: a spool folder or shard paths): ``(job, result)``."""
        if self.pool is not None:
            yield from self.pool.events(jobs, ids)
            return
        if self.client is not None:
            yield from dask_events(self.client, self.token, self.scenario, self.opts, jobs, ids,
                                   lambda: self.limit)
            return
        for i, (lo, hi, target) in enumerate(jobs):  # one worker: this process
            sim, counts = phases.simulate(self.token, self.scenario, self.opts, lo, hi)
            first = ids.report(i, None)
            ids.report(i, counts)
            if isinstance(target, dict):
                yield i, phases.write_shard(self.token, self.scenario, self.opts, lo, hi, first,
                                            sim, target)
            else:
                yield i, spool.stream_files(self.token, self.scenario, self.opts, lo, hi, first,
                                            sim, target)
