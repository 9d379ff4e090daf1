"""Reading what was made: inspect reports, statistics, fitting and comparing against traces,
plots.

Owns: ``report`` (``trafficgen inspect``), ``stats``, ``fit``, ``compare``, ``plot``.
May import: ``config``, ``traces``, ``kernels``, ``schema``, ``errors``, ``sinks`` (atomic
outputs). Never the engine, API or CLI.
"""
