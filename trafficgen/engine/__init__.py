"""The generation engine: the window loop, rows, the network plan, scale-out.

Owns: ``core`` (Engine: classes -> sorted packet rows -> frames, in time windows), ``batch``
(Batch: its slices and tables; the stream's first N packets), ``build`` (an Engine from the
API's arguments, checked), ``report`` (a run's counts, the capture's span, rows left open by a
cut, the no-request warning), ``netplan`` (addresses, VLAN/encapsulation, QUIC, MACsec per
flow), ``malloc``, and scale-out: ``parallel`` (its entry), ``phases`` (a partition's two
phases), ``ids`` (the ids that tie them together), ``spool``, ``pool`` (local worker processes),
``lifeline`` (a worker or helper dies with its parent), ``dask``, ``backend``, ``merge``,
``shards``; ``compile`` (a first run's kernels compiled ahead, on two processes, from the plans
``record`` writes to ``kernels.json``; ``signatures``). May import: ``sinks`` (buffers, the sink
set of a shard, the sweep of dead runs' files), ``classes``, ``config``, ``wire``, ``schema``,
``errors``, ``kernels``. Never replay, analysis, the API or the CLI.
"""
