"""The ``[topology]`` section: where the clients and servers are, the paths between them and
the capture point; and the endpoint keys a class section may give to have clients and servers
of its own (:data:`ENDPOINT_KEYS`)."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import numpy as np

from .catalog import CAPTURE_POINTS, SEEN_AT  # noqa: F401 (defined where `models` reads them)
from .dist import Dist
from .impair import parse_site_impair
from .keys import OPTIONAL, Key, allows, bounded, dist, float_in, int_in, optional, text
from .units import parse_bandwidth

# Capture points, and where each class is seen there: the side of its connections the tap is
# on (0 the client's end, 1 the server's), or absent where the class never passes. `client`:
# the client edge (people's and agents' hosts: no east-west traffic); `server`: every class at
# its servers' end; `gateway`: the inference gateway, which terminates the user-facing TLS
# (their server end) and is the client of the retrieval backends (rag at its client end);
# `fabric`: the data-centre fabric between gateways, backends and GPU servers; `dci`: the link
# between data centres (disaggregated KV transfers). (Both tables: ``catalog``.)


@dataclass(frozen=True)
class Site:
    """An edge site where clients sit: its address pool, how many clients, and the RTT of its
    paths to the services."""

    name: str
    clients: ipaddress.IPv4Network
    client_count: int
    rtt: Dist
    impair: tuple = ()  # ((key, value), ...): config.impair.parse_site_impair


@dataclass(frozen=True)
class Topology:
    """The validated ``[topology]`` (with ``network.mtu`` and the IP family's MSS), as the
    models read it."""

    clients: ipaddress.IPv4Network
    client_count: int
    client_skew: float  # 0: clients equally active; s > 0: activity ~ rank ** -s
    servers: tuple[int, ...]  # IPv4 addresses as ints
    server_port: int
    ephemeral_ports: tuple[int, int]
    rtt: Dist  # ns, one draw per client-server path
    bandwidth_bps: float
    mtu: int
    capture: str  # a capture point: client, server, gateway, fabric or dci (CAPTURE_POINTS)
    gateway_mac: bytes
    ipv6_mss: bool = False  # some flows are IPv6: segments leave room for its 40-byte header
    sites: tuple[Site, ...] = ()  # edge sites; empty: one site, ``clients`` with ``rtt``

    def _sites(self) -> tuple[Site, ...]:
        return self.sites or (Site("", self.clients, self.client_count, self.rtt),)

    def rtt_table(self) -> tuple[np.ndarray, np.ndarray]:
        """For the kernels: each site's first client index (int64[n]) and its paths' RTT
        distribution (float64[n, DIST_LEN]); client k belongs to the last site starting at or
        before k."""
        sites = self._sites()
        counts = np.array([x.client_count for x in sites], np.int64)
        first = np.zeros(len(sites), np.int64)
        np.cumsum(counts[:-1], out=first[1:])
        return first, np.stack([x.rtt.params() for x in sites])

    def site_of(self, clients: np.ndarray) -> np.ndarray:
        """The site (index into ``sites``, or 0 without sites) of each client index."""
        first, _ = self.rtt_table()
        return np.searchsorted(first, clients, "right") - 1

    def site_impairs(self) -> tuple[tuple, ...]:
        """Each site's ``impair`` values (config.impair.site_impair); () where it has none."""
        return tuple(x.impair for x in self._sites())

    def client_addresses(self, clients: np.ndarray) -> np.ndarray:
        """IPv4 addresses (int64) of client indexes: the k-th client of a site is the k-th
        host of its pool (after the network address where the pool has room)."""
        first, _ = self.rtt_table()
        sites = self._sites()
        site = np.searchsorted(first, clients, "right") - 1
        base = np.array([int(x.clients.network_address)
                         + (1 if x.clients.num_addresses > x.client_count + 1 else 0)
                         for x in sites], np.int64)
        return base[site] + (np.asarray(clients, np.int64) - first[site])

    def side(self, cls: str) -> int | None:
        """The end of ``cls``'s connections the capture is on (0 client, 1 server), or None
        where the class is not seen at this capture point."""
        return SEEN_AT.get(cls, {}).get(self.capture)

    @property
    def mss(self) -> int:
        """TCP MSS for the IP MTU (``network.mtu``): IPv4 or IPv6 header and a 20-byte TCP
        header fit in it. Under ``ip = "dual"`` every flow uses the IPv6 MSS."""
        return self.mtu - (60 if self.ipv6_mss else 40)


@allows("an IPv4 network like '10.1.0.0/16'")
def ipv4_network(v) -> ipaddress.IPv4Network:
    """An IPv4 network (``"10.1.0.0/16"``; host bits are dropped)."""
    if not isinstance(v, str):
        raise ValueError(f"expected an IPv4 network like '10.1.0.0/16', got {v!r}")
    try:
        return ipaddress.IPv4Network(v, strict=False)
    except (ValueError, TypeError) as e:
        raise ValueError(f"expected an IPv4 network like '10.1.0.0/16', got {v!r}") from e


@allows("an IPv4 network, or a list of them (up to 65536 hosts)")
def addresses(v) -> tuple[int, ...]:
    """Server addresses: the hosts of a network or a list of networks, as ints."""
    items = v if isinstance(v, list) else [v]
    out: list[int] = []
    for item in items:
        net = ipv4_network(item)
        hosts = net.num_addresses - 2 if net.num_addresses > 2 else net.num_addresses
        if len(out) + hosts > 65536:  # checked before the hosts are listed (a /0 has 2**32)
            raise ValueError(f"at most 65536 server addresses, got {len(out) + hosts} with {net}")
        out.extend(int(a) for a in (net.hosts() if net.num_addresses > 2 else net))
    if not out:
        raise ValueError("expected at least one server address")
    return tuple(out)


@allows("[low, high], 1024 <= low < high <= 65535")
def _port_range(v) -> tuple[int, int]:
    if (not isinstance(v, list) or len(v) != 2 or not all(isinstance(p, int) and not isinstance(p, bool) for p in v)
            or not 1024 <= v[0] < v[1] <= 65535):
        raise ValueError(f"expected [low, high] with 1024 <= low < high <= 65535, got {v!r}")
    return (v[0], v[1])


@allows("a MAC address like '00:00:5e:00:01:01'")
def _mac(v) -> bytes:
    if not isinstance(v, str) or not re.fullmatch(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", v):
        raise ValueError(f"expected a MAC address like '00:00:5e:00:01:01', got {v!r}")
    return bytes(int(x, 16) for x in v.split(":"))


NAME = r"[A-Za-z0-9_.\-]{1,64}"
_CLIENT_COUNT = int_in(1, 1 << 24)
_RTT = dist("duration")


@allows("1 to 256 tables of name, clients, client_count, rtt (and impair)")
def _sites(v) -> tuple[Site, ...]:
    """``[{ name = "hq", clients = "10.20.0.0/17", client_count = 1500, rtt = {...} }, ...]``,
    each with an optional ``impair = { loss = 0.01, ... }`` for its clients' paths."""
    keys = {"name", "clients", "client_count", "rtt"}
    if not isinstance(v, list) or not 1 <= len(v) <= 256:
        raise ValueError("expected a list of 1 to 256 sites like { name = \"hq\", clients = "
                         "\"10.20.0.0/17\", client_count = 1500, rtt = { median = \"20ms\", p90 = \"50ms\" } }")
    out, names = [], set()
    for i, site in enumerate(v):
        if not isinstance(site, dict) or not keys <= set(site) <= keys | {"impair"}:
            raise ValueError(f"site {i + 1}: expected the keys {', '.join(sorted(keys))} (and "
                             f"impair), got {site!r}")
        try:
            name = text(pattern=NAME)(site["name"])
            net = ipv4_network(site["clients"])
            count = _CLIENT_COUNT(site["client_count"])
            rtt = _RTT(site["rtt"])
            imp = parse_site_impair(site.get("impair", {}))
        except ValueError as e:
            raise ValueError(f"site {i + 1}: {e}") from None
        if name in names:
            raise ValueError(f"site name {name!r} is given twice")
        if count > net.num_addresses:
            raise ValueError(f"site {name!r}: {count} clients do not fit in {net}")
        names.add(name)
        out.append(Site(name, net, count, rtt, imp))
    return tuple(out)


_CLIENTS = Key("clients", ipv4_network, help="the client address pool")
_COUNT = Key("client_count", _CLIENT_COUNT, help="distinct clients drawn from the pool")
_SKEW = Key("client_skew", float_in(0.0, 3.0), 0.0,
            "0: clients equally active; s > 0: client k's share ~ (k + 1) ** -s")
_SERVERS = Key("servers", addresses, help="the services' addresses")
_PORT = Key("server_port", int_in(1, 65535), help="the services' TCP port")
_PATH_RTT = Key("rtt", _RTT, help="the round trip of a client-server path (one draw per path)")

TOPOLOGY_KEYS = (
    _CLIENTS, _COUNT, _SKEW, _SERVERS, _PORT,
    Key("ephemeral_ports", _port_range, help="the clients' source port range"),
    _PATH_RTT,
    Key("bandwidth", bounded(parse_bandwidth, 1e5, 1e12, lambda x: f"{x:g}bps"),
        help="the access link: spacing of back-to-back segments"),
    Key("mtu", int_in(576, 9216), OPTIONAL, "moved to network.mtu (still read here)"),
    Key("capture", text(CAPTURE_POINTS), help="where the tap is (README: capture points)"),
    Key("gateway_mac", _mac, help="the MAC address of the clients' gateway"),
    Key("sites", _sites, OPTIONAL, "edge sites, each with its own clients, RTT and path "
        "impairments (replaces clients, client_count and rtt)"),
)
# Every class section but kv_transfer may name its own endpoints (else the topology's): a site
# of its own. Left out, the topology's hold.
ENDPOINT_KEYS = optional((_CLIENTS, _COUNT, _SKEW, _SERVERS, _PORT, _PATH_RTT))
