"""Reading what was made: inspect reports, statistics, fitting and comparing against traces,
plots.

Owns: ``report`` (``trafficgen inspect``), ``capinfo`` (a capture's summary, chunk by chunk),
``stats``, ``fit``, ``compare``, ``plot`` (drawing) and ``figures`` (what a plot shows).
May import: ``traces``, ``sinks`` (atomic outputs, the capture formats), ``classes``,
``config``, ``schema``, ``errors``, ``kernels``. Never the engine, replay, the API or the CLI.
"""
