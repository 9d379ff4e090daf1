"""A Replay's device-under-test part: the side of each frame (``ports.Split``), its addresses
(``ports.Addressing``), the frames that came back (``countback.CountBack``) and what the
report says about them. With one port and no rewrite it does nothing (``port`` None)."""
from __future__ import annotations

import numpy as np

from trafficgen.errors import Arg, ArgumentError

from .countback import CountBack
from .ports import Addressing, Split, check_two, parse_mac, parse_map, port_stats

SPLITS = ("syn",)


class DutPlan:
    """The options of a two-port (or rewriting) run; see ``Replay``'s parameters."""

    def __init__(self, iface, peer_iface=None, *, client_net=(), split=None, dmac=None,
                 peer_dmac=None, smac=None, peer_smac=None, map_client=(), map_server=(),
                 unique_ip=False, count_back=False):
        check_two(iface, peer_iface)
        if split is not None and split not in SPLITS:
            raise ArgumentError(Arg("split", split), f": expected one of {', '.join(SPLITS)}")
        if split is not None and client_net:
            raise ArgumentError(Arg("split"), ": give either ", Arg("split"), " or ",
                                Arg("client_net"), ", not both")
        self.names = [iface] + ([peer_iface] if peer_iface else [])
        self.two = peer_iface is not None
        if (client_net or split) and not self.two:
            raise ArgumentError(Arg("client_net" if client_net else "split"),
                                ": splits frames between two ports: give ", Arg("peer_iface"), " too")
        if unique_ip and not self.two:
            raise ArgumentError(Arg("unique_ip"), ": shifts the client addresses, whose side two "
                                "ports tell: give ", Arg("peer_iface"), " too")
        if count_back and not self.two:
            raise ArgumentError(Arg("count_back"), ": counts what arrives on the other port: give ",
                                Arg("peer_iface"), " too")
        self.split = Split(client_net, split == "syn") if self.two else None
        self.opts = dict(dmac=dmac, peer_dmac=peer_dmac, smac=smac, peer_smac=peer_smac,
                         map_client=map_client, map_server=map_server, unique_ip=unique_ip)
        for what in ("dmac", "peer_dmac", "smac", "peer_smac"):  # refused before anything is opened
            if self.opts[what] is not None:
                parse_mac(self.opts[what], what)
        for what in ("map_client", "map_server"):
            for m in [self.opts[what]] if isinstance(self.opts[what], str) else self.opts[what] or ():
                parse_map(m, what)
        self.addr: Addressing | None = None
        self.count_back = bool(count_back)
        self.counter: CountBack | None = None
        self.came_back: dict | None = None
        self._ring: list[np.ndarray] = []  # buffers a cached chunk is rewritten into, in turn
        self._turn = 0
        self.rewritten = False  # the cached chunks hold the rewritten frames already

    def open(self) -> None:
        """After the interfaces were checked: read their MACs, parse the rewrites."""
        self.addr = Addressing(self.names, two_ports=self.two, **self.opts)
        self.addr.plen_from(self.split)

    @property
    def active(self) -> bool:
        return self.two or (self.addr is not None and self.addr.active)

    # --- the check pass over a file -------------------------------------------------------

    def scan(self, chunk, pcapng: bool, big: bool) -> None:
        if self.split is not None:
            self.split.scan(chunk, pcapng, big)

    def finish(self, path, chunks_again, cached) -> None:
        """After the check pass: the sides of all frames; then the client addresses' range
        (``chunks_again()`` walks the file again, only with ``unique_ip``). Kept chunks
        (``cached``) are rewritten once here when every pass sends the same bytes."""
        if self.split is not None:
            self.split.finish(path)
        if self.addr is not None and self.addr.unique_ip:
            for chunk in chunks_again():
                self.addr.scan(chunk, self.port_of(chunk.index, len(chunk)))
        if cached is not None and self.active and not self.addr.unique_ip:
            for c in cached:
                self.addr.apply(c.buf, c.off, c.length, self.port_of(c.index, len(c)), 0)
            self.rewritten = True

    def busy(self, cached: bool) -> bool:
        """Whether a pass has work per chunk (rewriting), to be done ahead on another thread."""
        return self.active and self.addr.active and not (cached and self.rewritten)

    def port_of(self, index: int, n: int) -> np.ndarray:
        if self.split is not None:
            return self.split.of(index, n)
        return np.zeros(n, np.uint8)

    # --- sending ------------------------------------------------------------------------------

    def frames(self, buf, off, length, index: int, pass_k: int, cached: bool):
        """(buffer, port) to send a chunk of file frames with: a cached chunk is rewritten in a
        copy (the original stays for the next pass; three copies in turn, so one can be made
        two chunks ahead of the one being sent), a streamed one in place."""
        if not self.active:
            return buf, None
        port = self.port_of(index, off.shape[0])
        if self.addr.active and not (cached and self.rewritten):
            if cached:
                if not self._ring or self._ring[0].shape[0] < buf.shape[0]:
                    self._ring = [np.empty(buf.shape[0], np.uint8) for _ in range(3)]
                self._turn = (self._turn + 1) % 3
                work = self._ring[self._turn][:buf.shape[0]]
                work[:] = buf
                buf = work
            self.addr.apply(buf, off, length, port, pass_k)
        return buf, port

    def live_frames(self, buf, off, length, direction):
        """A live batch: the side is the packet table's ``direction`` (0 up, 1 down)."""
        if not self.active:
            return None
        # contiguous: a strided column would make numba compile the sender again, mid-run
        port = (np.ascontiguousarray(direction, np.uint8) if self.two
                else np.zeros(off.shape[0], np.uint8))
        self.addr.apply(buf, off, length, port, 0)
        return port

    def start_counting(self) -> None:
        if self.count_back:
            self.counter = CountBack(self.names)

    def stop_counting(self) -> None:
        if self.counter is not None:
            counts, self.counter = self.counter.counts(), None
            other = {self.names[0]: self.names[-1], self.names[-1]: self.names[0]}
            self.came_back = {other[name]: n for name, n in counts.items()}

    # --- report -------------------------------------------------------------------------------

    def report(self, tx, loops: int, passes: int) -> tuple[dict, list[str]]:
        """The report's two-port part and its warnings."""
        if not self.active and not self.count_back:
            return {}, []
        out: dict = {"ports": port_stats(tx, self.names, self.came_back)}
        if self.split is not None:
            out["split"] = self.split.rule
        warnings = []
        if self.addr is not None:
            out.update(self.addr.describe(passes))
            u = out.get("unique_ip")
            if u and u["wraps"]:
                warnings.append(f"--unique-ip: {passes} passes of {u['shift_per_pass']:,} client "
                                f"addresses do not fit in a /{u['within_prefix']}: addresses "
                                "repeat after a wrap")
            if self.two and not self.addr.unique_ip and loops != 1:
                warnings.append("--loop without --unique-ip: every pass repeats the same "
                                "connections (same addresses and ports); a stateful device "
                                "sees closed connections again")
        return out, warnings

    def close(self) -> None:
        if self.counter is not None:
            self.counter.close()
            self.counter = None
