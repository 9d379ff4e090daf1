"""Scenarios: TOML files (or dicts) validated into frozen config objects.

All checking happens here, never in kernels. Every problem raises :class:`ConfigError` naming
where the value came from (file, dict or override), the dotted key, and what is allowed.
A scenario may start from another with ``[scenario] base = "chat"`` (a built-in name or a path);
its tables are merged key by key under the file's own. ``Scenario.to_dict()`` returns the merged,
validated input, and ``Scenario.from_dict(s.to_dict()) == s``.
"""
from __future__ import annotations

import copy
import datetime as _dt
import ipaddress
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from .dist import Dist, parse_dist
from .errors import ConfigError
from .arrivals import ArrivalSpec, parse_arrivals
from . import network as _net
from .network import PLAIN, Network
from .units import parse_bandwidth, parse_duration, parse_rate, parse_size

MAX_DURATION_NS = 30 * 86_400 * 10**9


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
    capture: str  # "client" or "server"
    gateway_mac: bytes
    ipv6_mss: bool = False  # some flows are IPv6: segments leave room for its 40-byte header

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


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    duration_ns: int
    seed: int
    start_ns: int  # capture start, Unix epoch ns
    topology: Topology
    params: dict  # flow class -> its validated parameters, for the classes configured
    source: dict = field(compare=False, repr=False)
    network: Network = PLAIN  # the [network] section (plain IPv4 without one)

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
        return tuple(c for c in CLASS_SECTIONS if c in self.params)


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


def _size_in(lo: int, hi: int):
    return _bounded(parse_size, lo, hi, str)


def _dist(unit: str, positive: bool = True):
    return lambda v: parse_dist(v, unit, positive)


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
        "mtu": _int_in(576, 9216), "capture": _str(("client", "server")), "gateway_mac": _mac,
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
    },
}
SECTIONS["network"] = _net.SPEC  # optional section: see trafficgen.network
OPTIONAL = {"scenario": {"description", "base", "start_time"},
            "topology": {"mtu"},  # moved to network.mtu; still read (see _legacy_mtu)
            "network": _net.OPTIONAL}
DEFAULTS = {"scenario": {"description": "", "start_time": "2026-01-01T00:00:00Z"},
            "topology": {"client_skew": 0.0},
            "chat": {"arrivals": {"process": "poisson"}},
            "network": _net.DEFAULTS}

# Flow classes: section name (= the ``class`` label) -> (parameters type, the built-in scenario
# whose section of that name supplies every key a scenario leaves out). In generation order.
CLASS_SECTIONS: dict[str, tuple[type, str]] = {
    "chat": (ChatParams, "chat"),
    "coding": (ChatParams, "coding"),  # code completion: the chat flow shape, its own figures
}
for _cls in CLASS_SECTIONS:
    SECTIONS.setdefault(_cls, SECTIONS["chat"])
    DEFAULTS.setdefault(_cls, DEFAULTS["chat"])


# --- loading ------------------------------------------------------------------------------

def builtin_dir():
    """Where the built-in scenarios live (package data, or models/ in a source checkout)."""
    try:
        root = resources.files("trafficgen.scenarios")
        if root.is_dir():
            return root
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "models"


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
    params = {}
    for cls, (ptype, builtin) in CLASS_SECTIONS.items():
        if cls in data:
            if isinstance(data[cls], dict):
                data[cls] = {**class_defaults(cls), **data[cls]}
            params[cls] = ptype(**_section(data, cls, where))
    if not params:
        raise ConfigError(where, "", "no flow class configured (add a table for one of: "
                          f"{', '.join(CLASS_SECTIONS)})")
    net = PLAIN
    if "network" in data:
        net = _net.build_network(_section(data, "network", where), tuple(params),
                                 lambda key, problem: ConfigError(where, key, problem))
    return Scenario(
        name=sc["name"], description=sc.get("description", ""), duration_ns=sc["duration"],
        seed=sc["seed"], start_ns=sc["start_time"],
        topology=Topology(
            clients=topo["clients"], client_count=topo["client_count"],
            client_skew=topo["client_skew"], servers=topo["servers"],
            server_port=topo["server_port"], ephemeral_ports=topo["ephemeral_ports"],
            rtt=topo["rtt"], bandwidth_bps=topo["bandwidth"], mtu=net.mtu,
            capture=topo["capture"], gateway_mac=topo["gateway_mac"], ipv6_mss=net.ip != "4"),
        params=params, source=data, network=net)


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
