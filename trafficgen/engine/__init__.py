"""The generation engine: the window loop, rows and buffers, the network plan, scale-out.

Owns: ``core`` (Engine: classes -> sorted packet rows -> frames, in time windows; Batch,
BufferPool), ``netplan`` (addresses, VLAN/encapsulation, QUIC, MACsec per flow), ``parallel``
(worker processes and Dask: partitions, spools, the merge, shards), ``malloc``.
May import: ``config``, ``classes``, ``wire``, ``kernels``, ``schema``, ``errors``, ``sinks``.
Never the API or the CLI.
"""
