"""Playback (replay): reading captures in chunks, rates and pacing, the raw-socket sender on the
interface the user names (or two: a device under test between them).

Owns: ``replayer`` (Replay), ``capture`` (chunked pcap/pcapng reading), ``rate`` (Rate, Pacer),
``iface`` (the interface and its transmitter), and for two ports around a device under test
``ports`` (each frame's side, MAC and IP rewrites), ``dutrun`` (a Replay's two-port part),
``countback`` (frames that came back), ``lanes`` (more than one sending thread).
May import: ``engine`` (live generation: ``engine.build``), ``sinks`` (frame buffers, the
capture formats), ``config``, ``kernels``, ``errors``. Never analysis, the API or the CLI.

(Named ``playback``, not ``replay``: a subpackage ``trafficgen.replay`` would replace the
public function ``trafficgen.replay`` as an attribute of the package once imported.)
"""
