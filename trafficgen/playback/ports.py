"""Two ports around a device under test: which port each frame goes out of, and the addresses
it carries there.

``Split`` decides each frame's side once, into a uint8 array (0: client side, out of
``iface``; 1: server side, out of ``peer_iface``), by the first rule that applies:
``client_nets`` (a frame whose source address is in one of them is client-side), ``syn``
(the endpoint that sent a flow's SYN is its client; a flow without a SYN: the endpoint that
sent its first frame), else the ground truth of our own captures (the ``dir=up``/``dir=down``
comment of every pcapng packet). Frames that are not IP go out of the client port.

``Addressing`` holds the rewrites (``kernels.dut.rewrite``): destination and source MAC per
port, IP networks mapped (host bits kept), and the ``unique_ip`` shift of client addresses
per pass of a loop. Checksums are fixed; under VXLAN or GRE only the outer headers change.
"""
from __future__ import annotations

import ipaddress
import socket
import struct
import time
from pathlib import Path

import numpy as np

from trafficgen.errors import Arg, ArgumentError
from trafficgen.kernels import dut as kd
from trafficgen.kernels import txsend as kt

UP, DOWN = 0, 1
SHIFT_PLEN_DEFAULT = 16  # the client net of --unique-ip when no map or client net names one


def parse_net(text, what: str) -> np.ndarray:
    """A network as a map row (``kernels.dut`` layout, old network filled in)."""
    try:
        net = ipaddress.ip_network(str(text).strip(), strict=False)
    except ValueError:
        raise ArgumentError(Arg(what, text), ": expected a network like 10.1.0.0/16 or "
                            "2001:db8::/64") from None
    row = np.zeros(kd.MAP_WORDS, np.uint8)
    row[kd.MAP_FAM] = net.version if net.version == 6 else kd.FAM_V4
    row[kd.MAP_PLEN] = net.prefixlen
    raw = net.network_address.packed
    row[kd.MAP_OLD:kd.MAP_OLD + len(raw)] = np.frombuffer(raw, np.uint8)
    return row


def parse_map(text, what: str) -> np.ndarray:
    """``OLD=NEW`` (two networks of one family and prefix length) as a map row."""
    parts = str(text).split("=")
    if len(parts) != 2:
        raise ArgumentError(Arg(what, text), ": expected OLD=NEW, two networks such as "
                            "10.20.0.0/16=192.168.0.0/16")
    old, new = parse_net(parts[0], what), parse_net(parts[1], what)
    if old[kd.MAP_FAM] != new[kd.MAP_FAM] or old[kd.MAP_PLEN] != new[kd.MAP_PLEN]:
        raise ArgumentError(Arg(what, text), ": the two networks must be of one family and "
                            "one prefix length (host bits are kept)")
    old[kd.MAP_NEW:] = new[kd.MAP_OLD:kd.MAP_OLD + 16]
    return old


ARP_TRIES, ARP_WAIT_S = 3, 1.0


def parse_mac(text, what: str) -> bytes | None:
    """A MAC address, or None for ``arp:IPV4`` (resolved later: ``arp_resolve``)."""
    if str(text).startswith("arp:"):
        try:
            ipaddress.IPv4Address(str(text)[4:])
        except ValueError:
            raise ArgumentError(Arg(what, text), ": expected arp:IPV4, e.g. arp:10.1.0.254") from None
        return None
    parts = str(text).replace("-", ":").split(":")
    try:
        raw = bytes(int(p, 16) for p in parts)
    except ValueError:
        raw = b""
    if len(parts) != 6 or len(raw) != 6 or any(len(p) not in (1, 2) for p in parts):
        raise ArgumentError(Arg(what, text), ": expected a MAC address like 02:00:00:00:00:01")
    return raw


def arp_resolve(name: str, ip: str, mac: bytes, what: str) -> bytes:
    """The MAC that answers an ARP probe (sender address 0.0.0.0, as RFC 5227) for ``ip``
    sent out of ``name``; ``ArgumentError`` when nothing answers in ARP_TRIES seconds."""
    tip = socket.inet_aton(ip)
    probe = (b"\xff" * 6 + mac + b"\x08\x06" + struct.pack(">HHBBH", 1, 0x0800, 6, 4, 1) + mac
             + bytes(4) + bytes(6) + tip).ljust(60, b"\0")
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)) as s:
        s.bind((name, 0x0806))
        for _ in range(ARP_TRIES):
            s.send(probe)
            end = time.monotonic() + ARP_WAIT_S
            while (left := end - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    f = s.recv(128)
                except TimeoutError:
                    break
                if len(f) >= 42 and f[20:22] == b"\0\2" and f[28:32] == tip:
                    return f[22:28]
    raise ArgumentError(Arg(what, f"arp:{ip}"), f": nothing answered ARP for {ip} on {name} "
                        f"in {ARP_TRIES * ARP_WAIT_S:g} s")


def port_mac(name: str) -> bytes:
    """An interface's own MAC address (from /sys)."""
    try:
        return parse_mac((Path("/sys/class/net") / name / "address").read_text().strip(), "iface")
    except (OSError, ArgumentError):
        raise ArgumentError(Arg("iface", name), ": cannot read its MAC address from /sys") from None


def heads_of(buf, off, length) -> kd.Heads:
    n = off.shape[0]
    h = kd.Heads(*(np.empty(n, t) for t in (np.int8, np.int64, np.int64, np.int64, np.uint8,
                                            np.uint64, np.uint64)))
    kd.heads(buf, off, length, h)
    return h


class Split:
    """The side of every frame of a file (``scan`` each chunk of the check pass in order, then
    ``finish``; ``dirs`` then holds one uint8 per packet), or of a live batch (``live``)."""

    def __init__(self, client_nets=(), syn: bool = False):
        if isinstance(client_nets, (str, bytes)):
            client_nets = (client_nets,)
        self.nets = (np.stack([parse_net(c, "client_net") for c in client_nets])
                     if client_nets else np.zeros((0, kd.MAP_WORDS), np.uint8))
        self.syn = bool(syn)
        self.rule = ("client_net" if len(self.nets) else "syn" if self.syn else "ground truth")
        self.parts: list = []
        self.dirs = np.zeros(0, np.uint8)
        self.first_unknown: int | None = None

    def scan(self, chunk, pcapng: bool, big: bool) -> None:
        """One chunk of the file as read (``chunk.buf`` the raw bytes: pcapng options too)."""
        n = len(chunk)
        if len(self.nets):
            h = heads_of(chunk.buf, chunk.off, chunk.length)
            out = np.empty(n, np.uint8)
            kd.match_nets(chunk.buf, chunk.off, h.fam, h.l3, self.nets, True, out)
            self.parts.append(np.where(out == 1, UP, DOWN).astype(np.uint8) * (h.fam != 0))
        elif self.syn:
            h = heads_of(chunk.buf, chunk.off, chunk.length)
            self.parts.append((h.fam.copy(), h.proto.copy(), h.flags.copy(), h.skey.copy(),
                               h.dkey.copy()))
        else:
            out = np.full(n, -1, np.int8)
            if pcapng:
                kd.comment_dirs(chunk.buf, chunk.off, chunk.length, big, out)
            bad = np.flatnonzero(out < 0)
            if bad.shape[0] and self.first_unknown is None:
                self.first_unknown = chunk.index + int(bad[0])
            self.parts.append(np.maximum(out, 0).astype(np.uint8))

    def finish(self, path) -> np.ndarray:
        if self.first_unknown is not None:
            raise ArgumentError(Arg("peer_iface"), f": cannot tell which side sent packet "
                                f"{self.first_unknown + 1} of {path} (no 'dir=' ground-truth "
                                "comment): give ", Arg("client_net"), " CIDR or ",
                                Arg("split"), " syn")
        if self.syn and not len(self.nets):
            self.dirs = syn_split(*(np.concatenate(c) if self.parts else np.zeros(0)
                                    for c in zip(*self.parts))) if self.parts else self.dirs
        elif self.parts:
            self.dirs = np.concatenate(self.parts)
        self.parts = []
        return self.dirs

    def of(self, index: int, n: int) -> np.ndarray:
        return self.dirs[index:index + n]


def syn_split(fam, proto, flags, skey, dkey) -> np.ndarray:
    """Sides by who sent a SYN; flows without one: whoever sent the first frame."""
    syn = (fam != 0) & (proto == kd.PROTO_TCP) & ((flags & (kd.TCP_SYN | kd.TCP_ACK)) == kd.TCP_SYN)
    clients = np.unique(skey[syn])
    dirs = np.full(fam.shape[0], 255, np.uint8)
    dirs[np.isin(dkey, clients)] = DOWN
    dirs[np.isin(skey, clients)] = UP
    dirs[fam == 0] = UP
    rest = np.flatnonzero(dirs == 255)
    if rest.shape[0]:
        lo, hi = np.minimum(skey[rest], dkey[rest]), np.maximum(skey[rest], dkey[rest])
        conv = lo * np.uint64(0x9E3779B97F4A7C15) + hi
        _, first, inv = np.unique(conv, return_index=True, return_inverse=True)
        starter = skey[rest][first][inv]
        dirs[rest] = np.where(skey[rest] == starter, UP, DOWN)
    return dirs


class Addressing:
    """MACs out of each port, IP maps and the per-pass shift of client addresses."""

    def __init__(self, names: list[str], *, dmac=None, peer_dmac=None, smac=None,
                 peer_smac=None, map_client=(), map_server=(), unique_ip: bool = False,
                 two_ports: bool = False):
        ports = len(names)
        self.macs = np.zeros((ports, 12), np.uint8)
        self.set_mac = np.zeros((ports, 2), np.bool_)
        for p, (d, s, dn, sn) in enumerate([(dmac, smac, "dmac", "smac"),
                                            (peer_dmac, peer_smac, "peer_dmac", "peer_smac")][:ports]):
            if d is not None:
                raw = parse_mac(d, dn) or arp_resolve(names[p], str(d)[4:], port_mac(names[p]), dn)
                self.macs[p, :6] = np.frombuffer(raw, np.uint8)
                self.set_mac[p, 0] = True
            if s is not None or two_ports:  # two ports: each sends from its own MAC
                raw = parse_mac(s, sn) if s is not None else port_mac(names[p])
                if raw is None:
                    raise ArgumentError(Arg(sn, s), ": a source MAC is not resolved: give the MAC")
                self.macs[p, 6:] = np.frombuffer(raw, np.uint8)
                self.set_mac[p, 1] = True
        for what, value in (("peer_dmac", peer_dmac), ("peer_smac", peer_smac)):
            if value is not None and ports < 2:
                raise ArgumentError(Arg(what), ": is for the second port: give ", Arg("peer_iface"), " too")
        mc = [map_client] if isinstance(map_client, str) else list(map_client or ())
        ms = [map_server] if isinstance(map_server, str) else list(map_server or ())
        rows = [parse_map(m, "map_client") for m in mc] + [parse_map(m, "map_server") for m in ms]
        self.maps = np.stack(rows) if rows else np.zeros((0, kd.MAP_WORDS), np.uint8)
        self.client_maps = mc
        self.unique_ip = bool(unique_ip)
        self.shift_plen = SHIFT_PLEN_DEFAULT
        self.span = 0  # client addresses from the lowest to the highest, set by scan
        self.ranges: dict = {}  # family -> (lowest, highest) low 32 bits of a client address

    def plen_from(self, split: Split | None) -> None:
        """The net client addresses are shifted within: the first --map-client target, else
        the first --client-net, else a /16."""
        if len(self.client_maps):
            self.shift_plen = int(self.maps[0, kd.MAP_PLEN])
        elif split is not None and len(split.nets):
            self.shift_plen = int(split.nets[0, kd.MAP_PLEN])

    @property
    def active(self) -> bool:
        return bool(self.set_mac.any() or len(self.maps) or self.unique_ip)

    def scan(self, chunk, port: np.ndarray) -> None:
        """The range of client (IPv4) addresses, for the size of the unique-ip shift."""
        if not self.unique_ip:
            return
        h = heads_of(chunk.buf, chunk.off, chunk.length)
        # the low 32 bits of each client address (IPv4: all of it; IPv6: the last 4 bytes),
        # each family's range apart
        for fam, at_up, at_down, key in ((kd.FAM_V4, 12, 16, 4), (kd.FAM_V6, 20, 36, 6)):
            addrs = []
            for side, at in ((UP, at_up), (DOWN, at_down)):
                k = np.flatnonzero((h.fam == fam) & (port == side))
                if k.shape[0]:
                    b = chunk.buf[(h.l3[k] + at)[:, None] + np.arange(4)].astype(np.int64)
                    addrs.append((b[:, 0] << 24) | (b[:, 1] << 16) | (b[:, 2] << 8) | b[:, 3])
            if addrs:
                a = np.concatenate(addrs)
                lo, hi = self.ranges.get(key, (int(a.min()), int(a.max())))
                self.ranges[key] = (min(lo, int(a.min())), max(hi, int(a.max())))
                self.span = max(hi - lo + 1 for lo, hi in self.ranges.values())

    def shift_of(self, pass_k: int) -> int:
        return pass_k * self.span if self.unique_ip else 0

    def apply(self, buf, off, length, port, pass_k: int = 0) -> None:
        if self.active:
            kd.rewrite(buf, off, np.ascontiguousarray(length, np.int64), port,
                       kd.Rewrite(self.macs, self.set_mac, self.maps, self.shift_of(pass_k),
                                  self.shift_plen))

    def describe(self, passes: int) -> dict:
        """What the report says about the unique-ip shift."""
        if not self.unique_ip:
            return {}
        room = 1 << (32 - self.shift_plen)
        return {"unique_ip": {"client_addresses_per_pass": self.span,
                              "shift_per_pass": self.span, "within_prefix": self.shift_plen,
                              "passes": passes, "wraps": passes * self.span > room}}


def port_stats(tx, names: list[str], count_back: dict | None = None) -> list[dict]:
    """Packets, bytes, rate and departure error of each port (from the sender's counters)."""
    out = []
    for p, name in enumerate(names):
        a = tx.pacc[p]
        sent = int(a[kt.P_PACKETS])
        span = (int(a[kt.P_LAST_NS]) - int(a[kt.P_FIRST_NS])) / 1e9 if sent > 1 else 0.0
        st = {"iface": name, "side": ("client" if p == UP else "server"), "packets": sent,
              "bytes": int(a[kt.P_BYTES]), "send_errors": int(a[kt.P_ERRORS]),
              "packets_per_s": round(sent / span, 1) if span > 0 else None,
              "mbps": round(int(a[kt.P_BYTES]) * 8 / span / 1e6, 3) if span > 0 else None,
              "departure_error_us": None}
        timed = int(tx.hist[p].sum())
        if tx.rate.timed and timed:
            st["departure_error_us"] = {
                "p50": kt.hist_quantile(tx.hist[p], 0.50) / 1e3,
                "p99": kt.hist_quantile(tx.hist[p], 0.99) / 1e3,
                "max": int(a[kt.P_MAX_ERR]) / 1e3,
                "mean": round(int(a[kt.P_SUM_ERR]) / timed / 1e3, 3)}
        if count_back is not None:
            st["came_back"] = count_back.get(name)
        out.append(st)
    return out


def check_two(iface: str | None, peer: str | None) -> None:
    if peer is not None and peer == iface:
        raise ArgumentError(Arg("peer_iface", peer), ": the same interface as ", Arg("iface"),
                            ": the two ports must differ")
