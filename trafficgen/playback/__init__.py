"""Playback (replay): reading captures in chunks, rates and pacing, the raw-socket sender on the one
interface the user names.

Owns: ``replayer`` (Replay), ``capture`` (chunked pcap/pcapng reading), ``rate`` (Rate, Pacer),
``iface`` (the interface and its transmitter).
May import: ``engine`` (live generation: ``engine.build``), ``sinks`` (frame buffers, the
capture formats), ``config``, ``kernels``, ``errors``. Never analysis, the API or the CLI.

(Named ``playback``, not ``replay``: a subpackage ``trafficgen.replay`` would replace the
public function ``trafficgen.replay`` as an attribute of the package once imported.)
"""
