"""The console script: argument parsing and messages, nothing of its own.

Owns: ``trafficgen`` and its subcommands (``main``), the replay subcommand's options (``replay``),
``generate``'s duration options, summary line and capture pipe (``generate``), SIGTERM and ^C
(``signals``).
May import: anything of the package (it is the top); nothing imports it but ``__main__``.
"""
from .main import main

__all__ = ["main"]
