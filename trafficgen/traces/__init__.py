"""Request traces: reading Azure, Mooncake, BurstGPT and generic traces (CSV, JSON lines or
Parquet) and turning one into a scenario for trace-driven runs.

Owns: ``read`` (read_trace: the format, CSV and Parquet readers), ``trace`` (Trace),
``mooncake`` (the JSON-lines reader, cached prefix tokens), ``columns`` (column checks),
``compressed`` (gzip, xz and bzip2 files, told by their first bytes and streamed),
``scenario`` (trace_scenario).
May import: ``classes``, ``config``, ``errors``. Never the engine, the API or the CLI.
"""
