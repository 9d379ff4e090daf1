"""Replay: reading captures in chunks, rates and pacing, the raw-socket sender on the one
interface the user names.

Owns: ``replayer`` (Replay), ``capture`` (chunked pcap/pcapng reading), ``rate`` (Rate, Pacer),
``iface`` (the interface and its transmitter).
May import: ``config``, ``engine`` (live generation), ``kernels``, ``analysis.formats``,
``errors``. Never the API or the CLI.
"""
