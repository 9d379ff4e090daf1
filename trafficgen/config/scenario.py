"""Scenarios: TOML files (or dicts) validated into frozen config objects.

All checking happens here, never in kernels. Every problem raises :class:`ConfigError` naming
where the value came from (file, dict or override), the dotted key, and what is allowed.
A scenario may start from another with ``[scenario] base = "chat"`` (a built-in name or a path);
its tables are merged key by key under the file's own. ``Scenario.to_dict()`` returns the merged,
validated input, and ``Scenario.from_dict(s.to_dict()) == s``.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import ipaddress
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np

from trafficgen.errors import ConfigError
from trafficgen.wire.profiles import check_alpn, check_hostname, check_profiles

from . import media as _media
from . import network as _net
from .arrivals import ArrivalSpec, parse_arrivals
from .dist import Dist, parse_dist
from .kvcache import KVModel, parse_kv_model
from .media import VideoParams, VoiceParams
from .network import PLAIN, Network
from .units import parse_bandwidth, parse_duration, parse_rate, parse_size

MAX_DURATION_NS = 30 * 86_400 * 10**9


@dataclass(frozen=True)
class Site:
    """An edge site where clients sit: its address pool, how many clients, and the RTT of its
    paths to the services."""

    name: str
    clients: ipaddress.IPv4Network
    client_count: int
    rtt: Dist


@dataclass(frozen=True)
class Topology:
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


@dataclass(frozen=True)
class ChatParams:
    rate: float  # requests per second
    turns: float  # mean turns per session (geometric, >= 1)
    think_time: Dist
    keepalive: int
    prompt_tokens: Dist
    output_tokens: Dist
    ttft: Dist
    itl: Dist
    stall_prob: float
    stall: Dist
    bytes_per_token: float
    request_overhead_bytes: int
    chunk_overhead_bytes: int
    tokens_per_chunk: int
    client_hello_bytes: int
    server_flight_bytes: int
    session_ticket_bytes: int
    arrivals: ArrivalSpec  # of sessions
    reasoning: Dist  # share of the output tokens that are hidden reasoning (0: none)
    keepalive_every: int  # ns between SSE keep-alive comments while reasoning (0: none)
    images: Dist  # images per request (0: none)
    image_bytes: Dist  # bytes per image before base64
    image_tokens: Dist  # prompt tokens per image
    retrieval_share: float  # share of requests that fan out to RAG lookups (0: none)
    retrieval_lookups: float  # mean lookups (retrieval chains) per such request, geometric
    retrieval_gap: Dist  # between a request's lookups
    sni: str  # the service's hostname (TLS server name)
    alpn: tuple[str, ...]  # the ALPN offer (empty: each client profile's own)
    client_profiles: tuple[tuple[str, float], ...]  # (profile, share of the clients)
    plaintext: str  # "": HTTPS; "http1": plaintext HTTP/1.1 (no TLS) for content inspection


@dataclass(frozen=True)
class MultimodalParams(ChatParams):
    """``[multimodal]``: the chat-shaped image requests plus voice and video sessions."""

    voice_rate: float  # voice sessions per second (0: none)
    voice: VoiceParams
    video_rate: float  # video sessions per second (0: none)
    video: VideoParams


@dataclass(frozen=True)
class Service:
    """A backend a chain calls: its addresses and port, the RTT of each path to it, how long it
    takes to answer, and the sizes of a request and its answer (bytes before TLS)."""

    servers: tuple[int, ...]
    port: int
    rtt: Dist
    latency: Dist
    request_bytes: Dist
    response_bytes: Dist
    sni: str = ""  # its hostname (TLS server name; "": none, an address)
    alpn: tuple[str, ...] = ()  # the ALPN offer (empty: the client profile's own)


@dataclass(frozen=True)
class AgenticParams:
    rate: float  # LLM calls per second, all sessions together
    arrivals: ArrivalSpec  # of sessions
    turns: float  # mean turns per session (geometric)
    llm_calls: float  # mean LLM calls per turn (geometric)
    think_time: Dist  # between turns
    keepalive: int
    context_tokens: Dist  # the context the first call sends
    turn_tokens: Dist  # what each later turn adds (the user's next task)
    max_context_tokens: int  # compaction: the context sent never exceeds this
    output_tokens: Dist
    ttft: Dist
    itl: Dist
    stall_prob: float
    stall: Dist
    tools_per_step: Dist  # parallel tool calls after each LLM call but the turn's last
    agent_delay: Dist  # the agent's own time before each step
    tools: Service
    bytes_per_token: float
    request_overhead_bytes: int
    chunk_overhead_bytes: int
    tokens_per_chunk: int
    client_hello_bytes: int
    server_flight_bytes: int
    session_ticket_bytes: int
    sni: str  # the LLM API's hostname
    alpn: tuple[str, ...]
    client_profiles: tuple[tuple[str, float], ...]  # the agent runtimes' TLS stacks


@dataclass(frozen=True)
class RagParams:
    rate: float  # retrievals per second, all sessions together
    arrivals: ArrivalSpec  # of sessions
    turns: float  # mean retrievals per session (geometric)
    think_time: Dist
    keepalive: int
    query_tokens: Dist
    top_k: Dist
    chunk_tokens: Dist
    rerank_share: float  # share of retrievals that rerank
    embed: Service
    search: Service
    rerank: Service
    bytes_per_token: float
    client_hello_bytes: int
    server_flight_bytes: int
    session_ticket_bytes: int
    client_profiles: tuple[tuple[str, float], ...]  # the gateways' TLS stacks


@dataclass(frozen=True)
class KVParams:
    """``[kv_transfer]``: prefill-to-decode KV-cache transfers over RoCEv2 (kv-transfer.toml)."""

    rate: float  # transfers per second
    arrivals: ArrivalSpec  # of transfers
    model: KVModel  # layers and KV bytes per token per layer
    prompt_tokens: Dist
    shared_prefix_tokens: int  # cached for every request (a common system prompt)
    cache_hit_prob: float  # share of requests that continue a cached context
    hit_uncached_tokens: Dist  # tokens to prefill on such a hit (the rest is cached)
    link_rate: float  # bits per second
    prefill_rate: float  # prefill tokens per second (0: the KV is all ready at the start)
    path_mtu: int  # RDMA payload bytes per packet
    prefill_servers: tuple[int, ...]
    decode_servers: tuple[int, ...]
    layers_per_message: int
    ack_every: int  # WRITE packets per coalesced ACK (and one at each message's end)
    rtt: int  # ns, the fabric's round trip


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    duration_ns: int
    seed: int
    start_ns: int  # capture start, Unix epoch ns
    topology: Topology
    params: dict  # flow class -> its validated parameters, for the classes configured
    endpoints: dict  # flow class -> its own clients/servers/rtt where it has them (ENDPOINT_KEYS)
    source: dict = field(compare=False, repr=False)
    network: Network = PLAIN  # the [network] section (plain IPv4 without one)
    # trace-driven runs (``trafficgen.tracegen``): the trace rows each class replays, or None
    trace: Any = field(default=None, compare=False, repr=False)

    def topology_of(self, cls: str) -> Topology:
        """The topology as ``cls`` sees it: its own endpoints where its section gives them
        (a retrieval's clients are the gateways, an agent's the agent runtimes)."""
        own = self.endpoints.get(cls)
        if not own:
            return self.topology
        if "clients" in own or "client_count" in own or "rtt" in own:
            own = {**own, "sites": ()}  # a class with clients of its own is its own site
        return dataclasses.replace(self.topology, **own)

    def __getattr__(self, name: str):
        """``scenario.chat``, ``scenario.coding``, ...: a class's parameters, or None."""
        if name in CLASS_SECTIONS:
            return self.params.get(name)
        raise AttributeError(name)

    def to_dict(self) -> dict:
        return copy.deepcopy(self.source)

    @classmethod
    def from_dict(cls, data: dict, where: str = "<dict>") -> "Scenario":
        return _build(copy.deepcopy(data), where)

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes configured and seen at the capture point, in generation order."""
        return tuple(c for c in CLASS_SECTIONS
                     if c in self.params and self.topology.side(c) is not None)


# --- field specs --------------------------------------------------------------------------

def _int_in(lo: int, hi: int) -> Callable[[Any], int]:
    def conv(v):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected a whole number from {lo} to {hi}, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"must be from {lo} to {hi}, got {v}")
        return v
    return conv


def _float_in(lo: float, hi: float) -> Callable[[Any], float]:
    def conv(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"expected a number from {lo:g} to {hi:g}, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"must be from {lo:g} to {hi:g}, got {v:g}")
        return float(v)
    return conv


def _bounded(parse, lo, hi, show) -> Callable[[Any], Any]:
    def conv(v):
        x = parse(v)
        if not lo <= x <= hi:
            raise ValueError(f"must be from {show(lo)} to {show(hi)}, got {v!r}")
        return x
    return conv


def _str(choices: tuple[str, ...] | None = None, pattern: str | None = None):
    def conv(v):
        if not isinstance(v, str):
            raise ValueError(f"expected a string, got {v!r}")
        if choices is not None and v not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {v!r}")
        if pattern is not None and not re.fullmatch(pattern, v):
            raise ValueError(f"got {v!r}")
        return v
    return conv


def _one_of(v, allowed: tuple[int, ...]) -> int:
    if isinstance(v, bool) or v not in allowed:
        raise ValueError(f"must be one of {', '.join(map(str, allowed))}, got {v!r}")
    return int(v)


def _size_in(lo: int, hi: int):
    return _bounded(parse_size, lo, hi, str)


def _dist(unit: str, positive: bool = True):
    return lambda v: parse_dist(v, unit, positive)


def _dist_within(lo: float, hi: float):
    """A distribution of plain numbers (a share, a count) whose values lie in [lo, hi]."""
    def conv(v):
        d = parse_dist(v, "count", positive=False)
        if d.lo < lo or d.hi > hi:
            raise ValueError(f"values must lie from {lo:g} to {hi:g}")
        return d
    return conv


def _plaintext(v) -> str:
    """false / "off" (HTTPS) or "http1" (plaintext HTTP/1.1)."""
    if v is False or v == "off":
        return ""
    if v == "http1":
        return v
    raise ValueError(f"expected false (HTTPS) or \"http1\" (plaintext HTTP/1.1), got {v!r}")


def _duration_or_zero(hi: int):
    def conv(v):
        ns = 0 if v == 0 else parse_duration(v)
        if not (ns == 0 or 10**6 <= ns <= hi):
            raise ValueError(f"expected 0 (off) or a duration from 1ms to {hi // 10**9}s, got {v!r}")
        return ns
    return conv


def _service(v) -> Service:
    """``{ servers = "10.60.1.0/29", port = 443, rtt = ..., latency = ..., request_bytes = ...,
    response_bytes = ... }`` (port defaults to 443)."""
    keys = {"servers", "port", "rtt", "latency", "request_bytes", "response_bytes", "sni", "alpn"}
    if not isinstance(v, dict):
        raise ValueError(f"expected a service table with {', '.join(sorted(keys))}, got {v!r}")
    extra, missing = sorted(set(v) - keys), sorted(keys - {"port", "sni", "alpn"} - set(v))
    if extra:
        raise ValueError(f"unknown key {extra[0]!r} (allowed: {', '.join(sorted(keys))})")
    if missing:
        raise ValueError(f"missing {missing[0]!r} (a service has {', '.join(sorted(keys))})")
    out = {}
    for key, conv in (("servers", _addresses), ("port", _int_in(1, 65535)),
                      ("rtt", _dist("duration")), ("latency", _dist("duration", positive=False)),
                      ("request_bytes", _dist("bytes")), ("response_bytes", _dist("bytes")),
                      ("sni", lambda x: "" if x == "" else check_hostname(x)), ("alpn", check_alpn)):
        try:
            out[key] = conv(v.get(key, {"port": 443, "sni": "", "alpn": []}.get(key)))
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from None
    return Service(**out)


def _sites(v) -> tuple[Site, ...]:
    """``[{ name = "hq", clients = "10.20.0.0/17", client_count = 1500, rtt = {...} }, ...]``."""
    keys = {"name", "clients", "client_count", "rtt"}
    if not isinstance(v, list) or not 1 <= len(v) <= 256:
        raise ValueError("expected a list of 1 to 256 sites like { name = \"hq\", clients = "
                         "\"10.20.0.0/17\", client_count = 1500, rtt = { median = \"20ms\", p90 = \"50ms\" } }")
    out, names = [], set()
    for i, site in enumerate(v):
        if not isinstance(site, dict) or set(site) != keys:
            raise ValueError(f"site {i + 1}: expected exactly the keys {', '.join(sorted(keys))}, got {site!r}")
        try:
            name = _str(pattern=r"[A-Za-z0-9_.\-]{1,64}")(site["name"])
            net = _network(site["clients"])
            count = _int_in(1, 1 << 24)(site["client_count"])
            rtt = _dist("duration")(site["rtt"])
        except ValueError as e:
            raise ValueError(f"site {i + 1}: {e}") from None
        if name in names:
            raise ValueError(f"site name {name!r} is given twice")
        if count > net.num_addresses:
            raise ValueError(f"site {name!r}: {count} clients do not fit in {net}")
        names.add(name)
        out.append(Site(name, net, count, rtt))
    return tuple(out)


def _network(v) -> ipaddress.IPv4Network:
    if not isinstance(v, str):
        raise ValueError(f"expected an IPv4 network like '10.1.0.0/16', got {v!r}")
    try:
        return ipaddress.IPv4Network(v, strict=False)
    except (ValueError, TypeError) as e:
        raise ValueError(f"expected an IPv4 network like '10.1.0.0/16', got {v!r}") from e


def _addresses(v) -> tuple[int, ...]:
    items = v if isinstance(v, list) else [v]
    out: list[int] = []
    for item in items:
        net = _network(item)
        out.extend(int(a) for a in (net.hosts() if net.num_addresses > 2 else net))
        if len(out) > 65536:
            raise ValueError("at most 65536 server addresses")
    if not out:
        raise ValueError("expected at least one server address")
    return tuple(out)


def _port_range(v) -> tuple[int, int]:
    if (not isinstance(v, list) or len(v) != 2 or not all(isinstance(p, int) and not isinstance(p, bool) for p in v)
            or not 1024 <= v[0] < v[1] <= 65535):
        raise ValueError(f"expected [low, high] with 1024 <= low < high <= 65535, got {v!r}")
    return (v[0], v[1])


def _mac(v) -> bytes:
    if not isinstance(v, str) or not re.fullmatch(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", v):
        raise ValueError(f"expected a MAC address like '00:00:5e:00:01:01', got {v!r}")
    return bytes(int(x, 16) for x in v.split(":"))


def _start_time(v) -> int:
    if isinstance(v, _dt.datetime):
        t = v
    elif isinstance(v, str):
        try:
            t = _dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError as e:
            raise ValueError(f"expected an ISO 8601 time like '2026-01-01T00:00:00Z', got {v!r}") from e
    else:
        raise ValueError(f"expected an ISO 8601 time like '2026-01-01T00:00:00Z', got {v!r}")
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    ns = int(t.timestamp()) * 10**9 + t.microsecond * 1000
    if not 0 <= ns < 2**32 * 10**9:
        raise ValueError("start_time must fall between 1970 and 2106 (the pcap time range)")
    return ns


_ns = lambda ns: f"{ns / 1e9:g}s"  # noqa: E731

# Capture points, and where each class is seen there: the side of its connections the tap is
# on (0 the client's end, 1 the server's), or absent where the class never passes. `client`:
# the client edge (people's and agents' hosts: no east-west traffic); `server`: every class at
# its servers' end; `gateway`: the inference gateway, which terminates the user-facing TLS
# (their server end) and is the client of the retrieval backends (rag at its client end);
# `fabric`: the data-centre fabric between gateways, backends and GPU servers; `dci`: the link
# between data centres (disaggregated KV transfers).
CAPTURE_POINTS = ("client", "server", "gateway", "fabric", "dci")
_FRONT = {"client": 0, "server": 1, "gateway": 1}
SEEN_AT = {"chat": _FRONT, "coding": _FRONT, "reasoning": _FRONT, "multimodal": _FRONT,
           "agentic": _FRONT, "rag": {"server": 1, "gateway": 0, "fabric": 1},
           "kv_transfer": {"server": 1, "fabric": 0, "dci": 0}}

SECTIONS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "scenario": {
        "name": _str(pattern=r"[A-Za-z0-9_.\-]{1,64}"), "description": _str(), "base": _str(),
        "duration": _bounded(parse_duration, 10**6, MAX_DURATION_NS, _ns),
        "seed": _int_in(0, 2**63 - 1), "start_time": _start_time,
    },
    "topology": {
        "clients": _network, "client_count": _int_in(1, 1 << 24),
        "client_skew": _float_in(0.0, 3.0), "servers": _addresses,
        "server_port": _int_in(1, 65535), "ephemeral_ports": _port_range,
        "rtt": _dist("duration"), "bandwidth": _bounded(parse_bandwidth, 1e5, 1e12, lambda x: f"{x:g}bps"),
        "mtu": _int_in(576, 9216), "capture": _str(CAPTURE_POINTS), "gateway_mac": _mac,
        "sites": _sites,
    },
    "chat": {
        "rate": _bounded(parse_rate, 0.0, 1e6, lambda x: f"{x:g}/s"),
        "turns": _float_in(1.0, 1000.0), "think_time": _dist("duration"),
        "keepalive": _bounded(parse_duration, 10**6, 86_400 * 10**9, _ns),
        "prompt_tokens": _dist("count"), "output_tokens": _dist("count"),
        "ttft": _dist("duration"), "itl": _dist("duration"),
        "stall_prob": _float_in(0.0, 1.0), "stall": _dist("duration"),
        "bytes_per_token": _float_in(0.5, 64.0),
        "request_overhead_bytes": _size_in(0, 1 << 20), "chunk_overhead_bytes": _size_in(0, 16000),
        "tokens_per_chunk": _int_in(1, 4096), "client_hello_bytes": _size_in(64, 16000),
        "server_flight_bytes": _size_in(64, 1 << 20), "session_ticket_bytes": _size_in(0, 16000),
        "arrivals": parse_arrivals,
        "reasoning": _dist_within(0.0, 1.0), "keepalive_every": _duration_or_zero(3600 * 10**9),
        "images": _dist_within(0, 64), "image_bytes": _dist("bytes", positive=False),
        "image_tokens": _dist("count", positive=False),
        "retrieval_share": _float_in(0.0, 1.0), "retrieval_lookups": _float_in(1.0, 100.0),
        "retrieval_gap": _dist("duration", positive=False),
        "sni": check_hostname, "alpn": check_alpn, "client_profiles": check_profiles,
        "plaintext": _plaintext,
    },
}
SECTIONS["kv_transfer"] = {
    "rate": SECTIONS["chat"]["rate"], "arrivals": parse_arrivals, "model": parse_kv_model,
    "prompt_tokens": _dist("count"), "shared_prefix_tokens": _int_in(0, 1 << 20),
    "cache_hit_prob": _float_in(0.0, 1.0), "hit_uncached_tokens": _dist("count"),
    "link_rate": _bounded(parse_bandwidth, 1e6, 1.6e12, lambda x: f"{x:g}bps"),
    "prefill_rate": _bounded(parse_rate, 0.0, 1e9, lambda x: f"{x:g}/s"),
    "path_mtu": lambda v: _one_of(v, (256, 512, 1024, 2048, 4096)),
    "prefill_servers": _addresses, "decode_servers": _addresses,
    "layers_per_message": _int_in(1, 1024), "ack_every": _int_in(1, 1 << 20),
    "rtt": _bounded(parse_duration, 0, 10**9, _ns),
}
_rate = _bounded(parse_rate, 0.0, 1e6, lambda x: f"{x:g}/s")
_keepalive = _bounded(parse_duration, 10**6, 86_400 * 10**9, _ns)
_TLS_KEYS = {"client_hello_bytes": _size_in(64, 16000), "server_flight_bytes": _size_in(64, 1 << 20),
             "session_ticket_bytes": _size_in(0, 16000)}
SECTIONS["agentic"] = {
    "rate": _rate, "arrivals": parse_arrivals, "turns": _float_in(1.0, 1000.0),
    "llm_calls": _float_in(1.0, 1000.0), "think_time": _dist("duration"), "keepalive": _keepalive,
    "context_tokens": _dist("count"), "turn_tokens": _dist("count"),
    "max_context_tokens": _int_in(1, 10_000_000), "output_tokens": _dist("count"),
    "ttft": _dist("duration"), "itl": _dist("duration"), "stall_prob": _float_in(0.0, 1.0),
    "stall": _dist("duration"), "tools_per_step": _dist_within(0, 64),
    "agent_delay": _dist("duration", positive=False), "tools": _service,
    "bytes_per_token": _float_in(0.5, 64.0), "request_overhead_bytes": _size_in(0, 1 << 20),
    "chunk_overhead_bytes": _size_in(0, 16000), "tokens_per_chunk": _int_in(1, 4096), **_TLS_KEYS,
    "sni": check_hostname, "alpn": check_alpn, "client_profiles": check_profiles,
}
SECTIONS["rag"] = {
    "rate": _rate, "arrivals": parse_arrivals, "turns": _float_in(1.0, 1000.0),
    "think_time": _dist("duration"), "keepalive": _keepalive, "query_tokens": _dist("count"),
    "top_k": _dist_within(1, 1000), "chunk_tokens": _dist("count"),
    "rerank_share": _float_in(0.0, 1.0), "embed": _service, "search": _service,
    "rerank": _service, "bytes_per_token": _float_in(0.5, 64.0), **_TLS_KEYS,
    "client_profiles": check_profiles,
}

# Every class section may name its own endpoints (else the topology's): a site of its own.
ENDPOINT_KEYS = ("clients", "client_count", "client_skew", "servers", "server_port", "rtt")
ENDPOINT_CLASSES = ("chat", "coding", "reasoning", "multimodal", "agentic", "rag")
for _spec in [SECTIONS["chat"], SECTIONS["agentic"], SECTIONS["rag"]]:
    for _k in ENDPOINT_KEYS:
        _spec[_k] = SECTIONS["topology"][_k]

SECTIONS["network"] = _net.SPEC  # optional section: see trafficgen.network
OPTIONAL = {"scenario": {"description", "base", "start_time"},
            "topology": {"mtu", "sites"},  # mtu moved to network.mtu; still read (_legacy_mtu)
            "network": _net.OPTIONAL}
DEFAULTS = {"scenario": {"description": "", "start_time": "2026-01-01T00:00:00Z"},
            "topology": {"client_skew": 0.0},
            "chat": {"arrivals": {"process": "poisson"}, "reasoning": 0, "keepalive_every": 0,
                     "images": 0, "image_bytes": 0, "image_tokens": 0, "retrieval_share": 0.0,
                     "retrieval_lookups": 1.0, "retrieval_gap": 0, "alpn": [], "plaintext": False,
                     "client_hello_bytes": 1750},  # unused: the client profile sets the size
            "kv_transfer": {"arrivals": {"process": "poisson"}},
            "network": _net.DEFAULTS}

# Flow classes: section name (= the ``class`` label) -> (parameters type, the built-in scenario
# whose section of that name supplies every key a scenario leaves out). In generation order.
CLASS_SECTIONS: dict[str, tuple[type, str]] = {
    "chat": (ChatParams, "chat"),
    "coding": (ChatParams, "coding"),  # code completion: the chat flow shape, its own figures
    "reasoning": (ChatParams, "reasoning"),  # a silent thinking phase, then a long answer
    "multimodal": (MultimodalParams, "multimodal"),  # images upstream; voice and video sessions
    "agentic": (AgenticParams, "agentic"),  # chains of LLM calls and tool calls
    "rag": (RagParams, "rag"),  # embed -> vector search -> rerank, east-west
}
CLASS_SECTIONS["kv_transfer"] = (KVParams, "kv-transfer")
for _cls, (_ptype, _) in CLASS_SECTIONS.items():
    if _ptype is ChatParams:
        SECTIONS.setdefault(_cls, SECTIONS["chat"])
        DEFAULTS.setdefault(_cls, DEFAULTS["chat"])
    if _cls in ENDPOINT_CLASSES:
        OPTIONAL[_cls] = set(ENDPOINT_KEYS)
DEFAULTS["agentic"] = {"arrivals": {"process": "poisson"}, "alpn": [], "client_hello_bytes": 1750}
DEFAULTS["rag"] = {"arrivals": {"process": "poisson"}, "client_hello_bytes": 600}
SECTIONS["multimodal"] = {**SECTIONS["chat"], **_media.SPEC}
DEFAULTS["multimodal"] = {**DEFAULTS["chat"], **_media.DEFAULTS}


# --- loading ------------------------------------------------------------------------------

def builtin_dir():
    """Where the built-in scenarios live (package data, or models/ in a source checkout)."""
    try:
        root = resources.files("trafficgen.scenarios")
        if root.is_dir():
            return root
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "models"


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in builtin_dir().iterdir() if p.name.endswith(".toml"))


def read_toml(src: str | Path) -> tuple[dict, str]:
    """Read a scenario by built-in name or path; return (data, where-for-messages)."""
    src = str(src)
    looks_like_path = src.endswith(".toml") or "/" in src or "\\" in src
    if not looks_like_path and src in builtin_names():
        where = f"models/{src}.toml"
        text = (builtin_dir() / f"{src}.toml").read_text(encoding="utf-8")
    else:
        path = Path(src)
        where = str(path)
        if not path.is_file():
            known = ", ".join(builtin_names())
            raise ConfigError(where, "", f"no such scenario file or built-in name (built-ins: {known})")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(where, "", f"cannot read: {e}") from None
    try:
        return tomllib.loads(text), where
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(where, "", f"not valid TOML: {e}") from None


def _merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key in SECTIONS:
            out[key] = {**out[key], **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_base(data: dict, where: str, seen: tuple[str, ...] = ()) -> dict:
    base = data.get("scenario", {}).get("base") if isinstance(data.get("scenario"), dict) else None
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(where, "scenario.base", f"expected a scenario name or path, got {base!r}")
    if base in seen:
        raise ConfigError(where, "scenario.base", f"circular base: {' -> '.join(seen + (base,))}")
    parent, pwhere = read_toml(base)
    merged = _merge(resolve_base(parent, pwhere, seen + (base,)), data)
    merged["scenario"].pop("base", None)
    return merged


def parse_override(text: str) -> tuple[str, Any]:
    """``dotted.key=value``: the value is read as TOML when it parses, else as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+", key):
        shown = f"{key}=<redacted>" if any(k in key for k in _net.SECRET_KEYS) else text
        raise ConfigError("-t", shown, "expected dotted.key=value, e.g. chat.rate=80/s")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def apply_overrides(data: dict, overrides: dict[str, Any] | list[str] | None) -> dict:
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides or [])
    data = copy.deepcopy(data)
    for key, value in items:
        parts = key.split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError("-t", key, f"{'.'.join(parts[:i + 1])} is not a table")
            node = nxt
        node[parts[-1]] = value
    return data


def load_scenario(src: "str | Path | dict | Scenario", overrides=None, *, duration=None,
                  seed=None) -> Scenario:
    """Load and validate a scenario from a built-in name, a TOML path or a dict.

    ``overrides`` maps dotted keys to values (or is a list of ``key=value`` strings, as ``-t``);
    ``duration`` and ``seed`` are shorthands for ``scenario.duration`` and ``scenario.seed``.
    """
    if isinstance(src, Scenario):
        data, where = src.to_dict(), f"<scenario {src.name}>"
    elif isinstance(src, dict):
        data, where = copy.deepcopy(src), "<dict>"
    else:
        data, where = read_toml(src)
    data = resolve_base(data, where)
    extra = {} if isinstance(overrides, list) else dict(overrides or {})
    if duration is not None:
        extra["scenario.duration"] = duration
    if seed is not None:
        extra["scenario.seed"] = seed
    data = apply_overrides(data, overrides if isinstance(overrides, list) else None)
    data = apply_overrides(data, extra)
    given = [parse_override(o)[0] for o in overrides] if isinstance(overrides, list) else []
    try:
        return _build(data, where)
    except ConfigError as e:
        # a bad value that came from an override is reported against the override
        if any(e.key == k or e.key.startswith(k + ".") or k.startswith(e.key + ".")
               for k in given + list(extra)) and e.key:
            src = "-t" if any(e.key == k or k.startswith(e.key + ".") or e.key.startswith(k + ".")
                              for k in given) else "<overrides>"
            raise ConfigError(src, e.key, e.problem) from None
        raise


def _section(data: dict, name: str, where: str) -> dict:
    raw = data.get(name)
    if not isinstance(raw, dict):
        raise ConfigError(where, name, "missing table" if raw is None else "expected a table")
    spec = SECTIONS[name]
    for key in raw:
        if key not in spec:
            raise ConfigError(where, f"{name}.{key}",
                              f"unknown key (allowed: {', '.join(sorted(spec))})")
    values = {}
    for key, conv in spec.items():
        if key not in raw:
            if key in DEFAULTS.get(name, {}):
                raw[key] = DEFAULTS[name][key]
            elif key in OPTIONAL.get(name, set()):
                continue
            else:
                raise ConfigError(where, f"{name}.{key}", "missing (required)")
        try:
            values[key] = conv(raw[key])
        except ValueError as e:
            raise ConfigError(where, f"{name}.{key}", str(e)) from None
    return values


def _build(data: dict, where: str) -> Scenario:
    if not isinstance(data, dict):
        raise ConfigError(where, "", "expected a table of sections")
    for name in data:
        if name not in SECTIONS:
            raise ConfigError(where, name, f"unknown section (allowed: {', '.join(SECTIONS)})")
    sc = _section(data, "scenario", where)
    _legacy_mtu(data, where)
    topo = _section(data, "topology", where)
    if topo["client_count"] > topo["clients"].num_addresses:
        raise ConfigError(where, "topology.client_count",
                          f"{topo['client_count']} clients do not fit in {topo['clients']}")
    params, endpoints = {}, {}
    for cls, (ptype, _builtin) in CLASS_SECTIONS.items():
        if cls in data:
            if isinstance(data[cls], dict):
                data[cls] = {**class_defaults(cls), **data[cls]}
            values = _section(data, cls, where)
            own = {k: values.pop(k) for k in ENDPOINT_KEYS if k in values} if cls in ENDPOINT_CLASSES else {}
            if own:
                own = {("bandwidth_bps" if k == "bandwidth" else k): v for k, v in own.items()}
                pool = own.get("clients", topo["clients"])
                count = own.get("client_count", topo["client_count"])
                if count > pool.num_addresses:
                    raise ConfigError(where, f"{cls}.client_count", f"{count} clients do not fit in {pool}")
                endpoints[cls] = own
            params[cls] = ptype(**values)
    if not params:
        raise ConfigError(where, "", "no flow class configured (add a table for one of: "
                          f"{', '.join(CLASS_SECTIONS)})")
    if not any(topo["capture"] in SEEN_AT.get(c, {}) for c in params):
        there = [c for c in CLASS_SECTIONS if topo["capture"] in SEEN_AT.get(c, {})]
        raise ConfigError(where, "topology.capture",
                          f"none of the classes configured ({', '.join(params)}) is seen at "
                          f"{topo['capture']!r} (seen there: {', '.join(there)})")
    net = PLAIN
    if "network" in data:
        net = _net.build_network(_section(data, "network", where), tuple(params),
                                 lambda key, problem: ConfigError(where, key, problem))
    mm = params.get("multimodal")
    if mm is not None and mm.voice_rate > 0 and mm.voice.rtp_share > 0 \
            and net.quic[_net.CLASSES.index("multimodal")]:
        raise ConfigError(where, "network.quic", "multimodal's RTP voice flows are UDP already: "
                          "set multimodal.voice.rtp_share = 0 to carry multimodal over QUIC")
    if "kv_transfer" in params:  # the IP MTU its RDMA path MTU must fit
        _check_kv(params["kv_transfer"], net.mtu - (20 if net.ip != "4" else 0), where)
    return Scenario(
        name=sc["name"], description=sc.get("description", ""), duration_ns=sc["duration"],
        seed=sc["seed"], start_ns=sc["start_time"],
        topology=Topology(**{
            "clients": topo["clients"], "client_count": topo["client_count"],
            "client_skew": topo["client_skew"], "servers": topo["servers"],
            "server_port": topo["server_port"], "ephemeral_ports": topo["ephemeral_ports"],
            "rtt": topo["rtt"], "bandwidth_bps": topo["bandwidth"], "mtu": net.mtu,
            "capture": topo["capture"], "gateway_mac": topo["gateway_mac"],
            "ipv6_mss": net.ip != "4", **_site_fields(topo.get("sites", ()))}),
        params=params, endpoints=endpoints, source=data, network=net)


def _site_fields(sites: tuple[Site, ...]) -> dict:
    """With edge sites, the topology's clients are theirs: their count, the first pool and RTT
    (for what reads one of each; the kernels read every site's through ``rtt_table``)."""
    if not sites:
        return {}
    return {"sites": sites, "client_count": sum(x.client_count for x in sites),
            "clients": sites[0].clients, "rtt": sites[0].rtt}


def _check_kv(kv: KVParams, ip_mtu: int, where: str) -> None:
    """What ``[kv_transfer]`` must agree on with the rest of the scenario."""
    if kv.path_mtu + 60 > ip_mtu:  # IPv4 20, UDP 8, BTH 12, RETH 16, ICRC 4
        fits = [m for m in (256, 512, 1024, 2048, 4096) if m + 60 <= ip_mtu]
        raise ConfigError(where, "kv_transfer.path_mtu",
                          f"{kv.path_mtu} needs an IP MTU of at least {kv.path_mtu + 60}, the "
                          f"scenario's is {ip_mtu} (network.mtu): use "
                          f"{fits[-1] if fits else 'a larger network.mtu'} or raise network.mtu")
    if set(kv.prefill_servers) & set(kv.decode_servers):
        raise ConfigError(where, "kv_transfer.decode_servers",
                          "must not share an address with kv_transfer.prefill_servers")


def _legacy_mtu(data: dict, where: str) -> None:
    """``topology.mtu`` (before the network section) moves to ``network.mtu`` in the source,
    checked under its own name; given in both places it is refused."""
    topo, net = data.get("topology"), data.get("network", {})
    if not isinstance(topo, dict) or "mtu" not in topo or not isinstance(net, dict):
        return
    if "mtu" in net:
        raise ConfigError(where, "topology.mtu", "the MTU is network.mtu now: set it there "
                          "only (drop topology.mtu)")
    try:
        SECTIONS["topology"]["mtu"](topo["mtu"])
    except ValueError as e:
        raise ConfigError(where, "topology.mtu", str(e)) from None
    data["network"] = {**net, "mtu": topo.pop("mtu")}


_CLASS_DEFAULTS: dict[str, dict] = {}


def class_defaults(cls: str) -> dict:
    """The ``[cls]`` section of the class's built-in scenario (empty if there is none): a
    scenario that names a class takes every key it leaves out from there, so a mix can say
    just ``[coding] rate = "5/s"``."""
    if cls not in _CLASS_DEFAULTS:
        builtin = CLASS_SECTIONS[cls][1]
        section: dict = {}
        if builtin in builtin_names():
            data, where = read_toml(builtin)
            section = resolve_base(data, where).get(cls, {})
        _CLASS_DEFAULTS[cls] = section if isinstance(section, dict) else {}
    return copy.deepcopy(_CLASS_DEFAULTS[cls])
