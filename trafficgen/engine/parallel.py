"""Generation spread over local processes (``workers``) or a Dask cluster (``scheduler``), with
the bytes of one process.

The unit of work is a *partition*: the sessions that start in one ``PARTITION_NS`` span of the
run (``Engine.partitions``), with all their flows and packets, even those that run on past the
span's end, so no session is ever cut. A partition is generated in two phases:

1. simulate it with local ids (``Engine.simulate``), and report how many ids it takes;
2. once the partitions before it have reported, take the ids after theirs (a running sum, the
   only thing partitions wait on each other for) and build its stream: the packet rows in
   (ts, flow id, packet) order, and its flow and request rows (``Engine.run``).

The coordinator (this process) merges the partition streams into one: every packet before the
start of the first partition not yet built is final, and ties in time go to the earlier
partition, whose flow ids are the lower, so the order is the one ``Engine`` gives alone. It then
builds the frames with its own engine, as ``Engine`` does alone: the same bytes, MACsec packet
numbers (which count the whole stream) included. The workers do the simulation, most of the
work; what they hand over is 55 bytes a packet, a tenth of the frames. With ``shards``, each
worker builds and writes its partitions' own files, and nothing is merged.

Local workers spool their streams to files in a temporary folder; a Dask worker hands its
stream back as arrays (it may be on another machine). Either way a stream is let go as soon as
the merge has passed it, and at most a few partitions run ahead of the merge.

This module is the entry; the parts, each its own concern: ``phases`` (the two phases, the
ids), ``spool`` (the workers' stream files), ``pool`` (local worker processes), ``dask`` (the
cluster), ``backend`` (which of them runs the partitions), ``merge`` (the merge and the run's
batches), ``shards`` (each partition into its own files).
"""
from __future__ import annotations

from .merge import merged_batches
from .phases import Options
from .pool import default_workers
from .shards import check_shards, write_shards
from .spool import spool_dir

__all__ = ["Options", "merged_batches", "write_shards", "check_shards", "default_workers",
           "spool_dir"]
