"""Request traces: reading Azure and Mooncake traces (CSV or JSON lines, plain or gzip) and
turning one into a scenario for trace-driven runs.

Owns: ``read`` (read_trace, Trace), ``columns`` (column checks), ``scenario`` (trace_scenario).
May import: ``config``, ``classes``, ``errors``. Never the engine, API or CLI.
"""
