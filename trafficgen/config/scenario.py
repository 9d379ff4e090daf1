"""Scenarios: TOML files (or dicts) validated into frozen config objects.

All checking happens here, never in kernels. Every problem raises :class:`ConfigError` naming
where the value came from (file, dict or override), the dotted key, and what is allowed.
A scenario may start from another with ``[scenario] base = "chat"`` (a built-in name or a path);
its tables are merged key by key under the file's own. ``Scenario.to_dict()`` returns the merged,
validated input, and ``Scenario.from_dict(s.to_dict()) == s``. The keys themselves are declared
in :mod:`.sections` (each once: check, default, help).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trafficgen.errors import ConfigError
from trafficgen.schema import CLASSES

from .bases import apply_overrides, check_depth, parse_override, read_toml, resolve_base
from .catalog import builtin_dir, builtin_names
from .hosts import HostsParams, default_hosts
from .keys import DIST_MAX, parse_section
from .network import NETWORK, PLAIN, Network, build_network
from .sections import (
    CLASS_SECTIONS,
    ENDPOINT_CLASSES,
    MAX_DURATION_NS,
    SECTIONS,
    AgenticParams,
    ChatParams,
    KVParams,
    MultimodalParams,
    RagParams,
)
from .topology import CAPTURE_POINTS, ENDPOINT_KEYS, SEEN_AT, Site, Topology

__all__ = ["CAPTURE_POINTS", "CLASS_SECTIONS", "MAX_DURATION_NS", "SECTIONS", "SEEN_AT", "Scenario",
           "apply_overrides", "builtin_dir", "builtin_names", "class_defaults", "load_scenario",
           "parse_override", "read_toml", "resolve_base"]


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. Each flow class configured has its parameters in ``params`` and
    as the attribute of its name (``scenario.chat``; None for a class not configured)."""

    name: str
    description: str
    duration_ns: int
    seed: int
    start_ns: int  # capture start, Unix epoch ns
    topology: Topology
    params: dict[str, Any]  # flow class -> its validated parameters, for the classes configured
    endpoints: dict  # flow class -> its own clients/servers/rtt where it has them (ENDPOINT_KEYS)
    source: dict = field(compare=False, repr=False)
    network: Network = PLAIN  # the [network] section (plain IPv4 without one)
    hosts: HostsParams = field(default_factory=default_hosts)  # [hosts]: turnaround, reads, fabric
    # trace-driven runs (``trafficgen.traces``): the trace rows each class replays, or None
    trace: Any = field(default=None, compare=False, repr=False)

    @property
    def chat(self) -> ChatParams | None:
        """``[chat]``: people's chat sessions."""
        return self.params.get("chat")

    @property
    def coding(self) -> ChatParams | None:
        """``[coding]``: code completion (the chat flow shape, its own figures)."""
        return self.params.get("coding")

    @property
    def reasoning(self) -> ChatParams | None:
        """``[reasoning]``: a silent thinking phase, then a long answer."""
        return self.params.get("reasoning")

    @property
    def multimodal(self) -> MultimodalParams | None:
        """``[multimodal]``: images upstream; voice and video sessions."""
        return self.params.get("multimodal")

    @property
    def agentic(self) -> AgenticParams | None:
        """``[agentic]``: chains of LLM calls and tool calls."""
        return self.params.get("agentic")

    @property
    def rag(self) -> RagParams | None:
        """``[rag]``: retrievals from the gateway, east-west."""
        return self.params.get("rag")

    @property
    def kv_transfer(self) -> KVParams | None:
        """``[kv_transfer]``: KV-cache transfers over RoCEv2."""
        return self.params.get("kv_transfer")

    def topology_of(self, cls: str) -> Topology:
        """The topology as ``cls`` sees it: its own endpoints where its section gives them
        (a retrieval's clients are the gateways, an agent's the agent runtimes)."""
        own = self.endpoints.get(cls)
        if not own:
            return self.topology
        if "clients" in own or "client_count" in own or "rtt" in own:
            own = {**own, "sites": ()}  # a class with clients of its own is its own site
        return dataclasses.replace(self.topology, **own)

    def to_dict(self) -> dict:
        """The merged, validated input, every default written out."""
        return copy.deepcopy(self.source)

    @classmethod
    def from_dict(cls, data: dict, where: str = "<dict>") -> "Scenario":
        """Validate a scenario dict (``to_dict``'s output, or a TOML file's tables)."""
        return _build(copy.deepcopy(data), where)

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes configured and seen at the capture point, in generation order."""
        return tuple(c for c in CLASS_SECTIONS
                     if c in self.params and self.topology.side(c) is not None)


# --- loading ------------------------------------------------------------------------------

def load_scenario(src: "str | Path | dict | Scenario", overrides=None, *, duration=None,
                  seed=None) -> Scenario:
    """Load and validate a scenario from a built-in name, a TOML path or a dict.

    ``overrides`` maps dotted keys to values (or is a list of ``key=value`` strings, as ``-t``);
    ``duration`` and ``seed`` are shorthands for ``scenario.duration`` and ``scenario.seed``.
    A ``scenario.base`` among the overrides replaces the file's before the bases are read.
    """
    folder = None
    if isinstance(src, Scenario):
        data, where = src.to_dict(), f"<scenario {src.name}>"
    elif isinstance(src, dict):
        check_depth(src, "<dict>")
        data, where = copy.deepcopy(src), "<dict>"
    else:
        data, where = read_toml(src)
        folder = builtin_dir() if where.startswith("models/") and str(src) in builtin_names() \
            else Path(where).parent
    items = list(map(parse_override, overrides)) if isinstance(overrides, list) \
        else list((overrides or {}).items())
    base = [v for k, v in items if k == "scenario.base"]
    if base:  # from the command line or the caller: read from the working directory
        data = apply_overrides(data, {"scenario.base": base[-1]})
        folder = None
        items = [(k, v) for k, v in items if k != "scenario.base"]
    blame = "-t" if isinstance(overrides, list) else "<overrides>"
    try:
        data = resolve_base(data, where, folder)
    except ConfigError as e:
        if base and e.key == "scenario.base" and e.where == where:
            raise ConfigError(blame, e.key, e.problem) from None
        raise
    file_data = data
    extra = {} if isinstance(overrides, list) else dict(overrides or {})
    if duration is not None:
        extra["scenario.duration"] = duration
    if seed is not None:
        extra["scenario.seed"] = seed
    for item in items if isinstance(overrides, list) else ():  # in the order given
        data = apply_overrides(data, dict([item]))
    data = apply_overrides(data, extra)
    given = [k for k, _ in items] if isinstance(overrides, list) else []
    try:
        return _build(data, where)
    except ConfigError as e:
        # a bad value that came from an override is reported against the override, unless
        # the scenario alone fails the same way
        if e.key and any(e.key == k or e.key.startswith(k + ".") or k.startswith(e.key + ".")
                         for k in given + list(extra)) and not _fails_alone(file_data, where, e):
            src = "-t" if any(e.key == k or k.startswith(e.key + ".") or e.key.startswith(k + ".")
                              for k in given) else "<overrides>"
            raise ConfigError(src, e.key, e.problem) from None
        raise


def _fails_alone(data: dict, where: str, e: ConfigError) -> bool:
    """Whether the scenario without its overrides fails with the same problem as ``e``."""
    try:
        _build(copy.deepcopy(data), where)
    except ConfigError as alone:
        return (alone.key, alone.problem) == (e.key, e.problem)
    return False


def _build(data: dict, where: str) -> Scenario:
    """Validate a scenario dict (its base resolved, overrides applied) into a Scenario; every
    default taken is written into ``data``, which becomes its ``source``."""
    if not isinstance(data, dict):
        raise ConfigError(where, "", "expected a table of sections")
    for name in data:
        if name not in SECTIONS:
            raise ConfigError(where, name, f"unknown section (allowed: {', '.join(SECTIONS)})")
    sc = parse_section(data, "scenario", SECTIONS["scenario"], where)
    if sc["start_time"] + sc["duration"] + _PCAP_SLACK_NS > _PCAP_END_NS:
        raise ConfigError(where, "scenario.start_time", "the run must end 7 days before "
                          "2106-02-07T06:28:16Z (pcap's 32-bit seconds; the requests in flight "
                          "finish after it): start earlier or shorten scenario.duration")
    _legacy_mtu(data, where)
    topo = parse_section(data, "topology", SECTIONS["topology"], where)
    if topo["client_count"] > topo["clients"].num_addresses:
        raise ConfigError(where, "topology.client_count",
                          f"{topo['client_count']} clients do not fit in {topo['clients']}")
    params, endpoints = _classes(data, topo, where)
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
        net = build_network(parse_section(data, "network", NETWORK, where), tuple(params),
                            lambda key, problem: ConfigError(where, key, problem))
    data.setdefault("hosts", {})
    hosts = HostsParams(**parse_section(data, "hosts", SECTIONS["hosts"], where))
    mm = params.get("multimodal")
    if mm is not None and mm.voice_rate > 0 and mm.voice.rtp_share > 0 \
            and net.quic[CLASSES.index("multimodal")]:
        raise ConfigError(where, "network.quic", "multimodal's RTP voice flows are UDP already: "
                          "set multimodal.voice.rtp_share = 0 to carry multimodal over QUIC")
    for cls, p in params.items():  # an answer's stream must end within a day, too
        if hasattr(p, "itl") and hasattr(p, "output_tokens"):
            secs = p.output_tokens.top() * (p.itl.top() + p.stall_prob * p.stall.top()) / 1e9
            if secs > MAX_DELAY_NS / 1e9:
                raise ConfigError(where, f"{cls}.itl", f"an answer of {p.output_tokens.top():.0f} "
                                  f"tokens ({cls}.output_tokens) would stream for {secs:.3g} s, over "
                                  "the limit of a day (timestamps must fit pcap's 32-bit seconds)")
    rag = params.get("rag")
    if rag is not None and rag.top_k.top() * rag.chunk_tokens.top() > DIST_MAX["count"]:
        raise ConfigError(where, "rag.chunk_tokens", f"a search returns up to "
                          f"{rag.top_k.top() * rag.chunk_tokens.top():.0f} tokens (rag.top_k x "
                          f"rag.chunk_tokens), over the limit of {DIST_MAX['count']} (a request's "
                          "packets must fit in memory)")
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
        params=params, endpoints=endpoints, source=data, network=net, hosts=hosts)


def _classes(data: dict, topo: dict, where: str) -> tuple[dict, dict]:
    """The class sections in ``data`` (each over its built-in's): class -> parameters, and
    class -> its own endpoints (the endpoint keys it gives)."""
    params, endpoints = {}, {}
    for cls, (ptype, _builtin) in CLASS_SECTIONS.items():
        if cls not in data:
            continue
        if isinstance(data[cls], dict):
            data[cls] = {**class_defaults(cls), **data[cls]}
        values = parse_section(data, cls, SECTIONS[cls], where)
        own = {k.name: values.pop(k.name) for k in ENDPOINT_KEYS
               if k.name in values} if cls in ENDPOINT_CLASSES else {}
        if own:
            pool = own.get("clients", topo["clients"])
            count = own.get("client_count", topo["client_count"])
            if count > pool.num_addresses:
                raise ConfigError(where, f"{cls}.client_count", f"{count} clients do not fit in {pool}")
            endpoints[cls] = own
        params[cls] = ptype(**values)
    return params, endpoints


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
    tokens = kv.prompt_tokens.top()
    for key, secs in (("prefill_rate", tokens / kv.prefill_rate if kv.prefill_rate else 0.0),
                      ("link_rate", tokens * kv.model.bytes_per_token * 8 / kv.link_rate)):
        if secs > MAX_DELAY_NS / 1e9:
            raise ConfigError(where, f"kv_transfer.{key}", f"a transfer of {tokens:.0f} tokens "
                              f"(kv_transfer.prompt_tokens) would take {secs:.3g} s, over the "
                              f"limit of a day (timestamps must fit pcap's 32-bit seconds): "
                              f"raise kv_transfer.{key}")
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
        SECTIONS["topology"]["mtu"].parse(topo["mtu"])
    except ValueError as e:
        raise ConfigError(where, "topology.mtu", str(e)) from None
    data["network"] = {**net, "mtu": topo.pop("mtu")}


MAX_DELAY_NS = DIST_MAX["duration"]  # the longest delay a scenario's values may give
_PCAP_END_NS = 2**32 * 10**9  # pcap's seconds are 32 bits
_PCAP_SLACK_NS = 7 * 86_400 * 10**9  # room after the duration for the requests in flight


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
