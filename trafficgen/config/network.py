"""The ``[network]`` section: how the lab network carries every flow on the wire.

Address family (``ip``), 802.1Q/QinQ tags (``vlan``), an encapsulation (``encap``: MPLS,
VXLAN, GRE, SRv6), 802.1AE MACsec (``macsec``, ``macsec_key``), the IP MTU (``mtu``) and
DSCP/ECN per flow class. The section is optional: without it a scenario is plain IPv4 over
Ethernet, untagged, MTU 1500, byte for byte what it was before the section existed.

Per-class values (``dscp``, ``ecn``, ``vni``, ``mpls_labels``, ``srv6_segments``) are a value
for every class or a table ``{ chat = 34, kv_transfer = 10, default = 0 }``: a class takes its
own entry, else ``default``, else the built-in default. Parsing is here; applying it to
schedules and frames is in ``trafficgen.netplan`` and ``kernels.encap``.

The MACsec key is a secret: it is never echoed in an error, kept out of ``repr`` and replaced
by :data:`REDACTED` wherever a scenario is written out (:func:`redact`).
"""
from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable

from trafficgen.schema import CLASSES

from .impair import NO_IMPAIR, Impair, parse_impair
from .keys import OPTIONAL, Key, allows, boolean, float_in, per_class, section

REDACTED = "<redacted>"
SECRET_KEYS = ("macsec_key",)
IP_FAMILIES = ("4", "6", "dual")
ENCAPS = ("none", "mpls", "vxlan", "gre", "srv6")
ECN_NAMES = {"not-ect": 0, "ect1": 1, "ect0": 2, "ce": 3}
IPV4_ONLY_CLASSES: tuple[str, ...] = ()  # none: RoCEv2's ICRC is made again over IPv6
UDP_CLASSES = ("kv_transfer",)  # not TCP/TLS: never carried over QUIC
MAX_LABELS = 8
MAX_SEGMENTS = 15  # transit segments; the far headend's SID is added as the last one


def _per_class(item: Callable[[Any], Any]) -> Callable[[Any], dict]:
    """A value for every class, or a table of class name (or ``default``) -> value."""
    return per_class(item, CLASSES)


def _int(lo: int, hi: int, what: str = "a whole number"):
    @allows(f"{lo} to {hi}")
    def conv(v) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"expected {what} from {lo} to {hi}, got {v!r}")
        return v
    return conv


@allows(f"0 to 3, {', '.join(ECN_NAMES)}")
def _ecn(v) -> int:
    if isinstance(v, str) and v.lower() in ECN_NAMES:
        return ECN_NAMES[v.lower()]
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 3:
        raise ValueError(f"expected 0-3 or one of {', '.join(ECN_NAMES)}, got {v!r}")
    return v


@allows("4, 6, dual")
def _ip_family(v) -> str:
    s = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
    if s not in IP_FAMILIES:
        raise ValueError(f"must be 4, 6 or \"dual\", got {v!r}")
    return s


_share = float_in(0, 1)


@allows("a VLAN id (1 to 4094), [outer, inner], [] or none")
def _vlan(v) -> tuple[int, ...]:
    vid = _int(1, 4094, "a VLAN id")
    if isinstance(v, list):
        if len(v) > 2:
            raise ValueError(f"expected an id or [outer, inner], got {len(v)} tags")
        return tuple(vid(x) for x in v)
    if isinstance(v, str) and v == "none":
        return ()
    return (vid(v),)


def _choice(choices: tuple[str, ...]):
    @allows(", ".join(choices))
    def conv(v) -> str:
        if v not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {v!r}")
        return v
    return conv



def _v4(v) -> int:
    if not isinstance(v, str):
        raise ValueError(f"expected an IPv4 address like '192.0.2.1', got {v!r}")
    try:
        return int(ipaddress.IPv4Address(v))
    except (ValueError, TypeError):
        raise ValueError(f"expected an IPv4 address like '192.0.2.1', got {v!r}") from None


def _v6(v) -> bytes:
    if not isinstance(v, str):
        raise ValueError(f"expected an IPv6 address like '2001:db8::1', got {v!r}")
    try:
        return ipaddress.IPv6Address(v).packed
    except (ValueError, TypeError):
        raise ValueError(f"expected an IPv6 address like '2001:db8::1', got {v!r}") from None


@allows("an IPv6 prefix, /96 or shorter")
def _v6_prefix(v) -> bytes:
    if not isinstance(v, str):
        raise ValueError(f"expected an IPv6 prefix like '2001:db8:c::/96', got {v!r}")
    try:
        net = ipaddress.IPv6Network(v, strict=False)
    except (ValueError, TypeError):
        raise ValueError(f"expected an IPv6 prefix like '2001:db8:c::/96', got {v!r}") from None
    if net.prefixlen > 96:
        raise ValueError(f"the prefix must leave 32 bits for the IPv4 address (/96 or shorter), got {v!r}")
    return net.network_address.packed


def _pair(item, what: str):
    @allows(f"[client side, server side] {what}")
    def conv(v) -> tuple:
        if not isinstance(v, list) or len(v) != 2:
            raise ValueError(f"expected [client side, server side] {what}, got {v!r}")
        return (item(v[0]), item(v[1]))
    return conv


def _list(item, lo: int, hi: int, what: str):
    @allows(f"{lo} to {hi} {what}")
    def conv(v) -> tuple:
        if not isinstance(v, list) or not lo <= len(v) <= hi:
            raise ValueError(f"expected a list of {lo} to {hi} {what}, got {v!r}")
        return tuple(item(x) for x in v)
    return conv


@allows("32 hex digits")
def _key(v) -> bytes:
    """The value is never shown: it is a secret."""
    if not isinstance(v, str):
        raise ValueError("expected 32 hex digits (a 128-bit key); the value is not shown")
    text = v.replace(":", "").replace(" ", "")
    if len(text) != 32 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ValueError("expected 32 hex digits (a 128-bit key); the value is not shown")
    return bytes.fromhex(text)


NETWORK_KEYS = (
    Key("ip", _ip_family, 4, "the IP family: \"dual\" puts ipv6_share of the flows on IPv6"),
    Key("ipv6_share", _share, 0.5, "under \"dual\", the share of flows on IPv6"),
    Key("ipv6_clients", _v6_prefix, "2001:db8:c0::/96",
        "clients' IPv6 addresses: this prefix + the IPv4 address"),
    Key("ipv6_servers", _v6_prefix, "2001:db8:5e::/96",
        "servers' IPv6 addresses: this prefix + the IPv4 address"),
    Key("vlan", _vlan, [], "an id (802.1Q), or [outer, inner] (802.1ad QinQ)"),
    Key("encap", _choice(ENCAPS), "none", "the encapsulation"),
    Key("mpls_labels", _per_class(_list(_int(16, 2**20 - 1, "a label"), 1, MAX_LABELS, "labels")),
        {"default": [16001]}, "MPLS: the label stack per class, top first"),
    Key("vni", _per_class(_int(1, 2**24 - 1, "a VNI")), {"default": 10000},
        "VXLAN: the network identifier per class"),
    Key("underlay", _pair(_v4, "IPv4 tunnel endpoints"), ["192.0.2.1", "192.0.2.2"],
        "VXLAN/GRE tunnel endpoints: client side, server side"),
    Key("underlay6", _pair(_v6, "IPv6 SRv6 headends"), ["2001:db8:ff::1", "2001:db8:ff::2"],
        "SRv6 headends: client side, server side"),
    # a low-latency path for interactive classes, a bulk path for KV-cache transfers
    Key("srv6_segments", _per_class(_list(_v6, 0, MAX_SEGMENTS, "IPv6 segments")),
        {"default": ["fc00:0:2::"], "kv_transfer": ["fc00:0:5::", "fc00:0:6::"]},
        "SRv6: the transit segments per class, in visiting order"),
    Key("macsec", boolean, False, "802.1AE SecTAG (with SCI) and a 16-byte ICV on every frame"),
    Key("macsec_key", _key, OPTIONAL, "real GCM-AES-128 with this key (a secret: never shown)"),
    Key("macsec_encrypt", boolean, True, "with a key: encrypt, or false for integrity only"),
    Key("mtu", _int(576, 9216), 1500, "the IP MTU: TCP segments fill it"),
    Key("dscp", _per_class(_int(0, 63, "a DSCP")), {"default": 0}, "the DSCP per class"),
    Key("ecn", _per_class(_ecn), {"default": 0}, "the ECN codepoint per class"),
    Key("quic", _per_class(_share), {"default": 0}, "share of a class's flows as HTTP/3 over QUIC"),
    Key("impair", parse_impair, OPTIONAL,
        "path impairments: the [network.impair] table (loss, burst, before_tap, ecn, jitter, "
        "reorder, duplicate; config.impair)"),
)
NETWORK = section(NETWORK_KEYS)


def _by_class(table: dict, builtin: dict) -> tuple:
    """Per-class table -> one value per class code (schema.CLASSES order): the class's own
    entry, else the table's ``default``, else the built-in entry of the class or its default."""
    return tuple(table.get(c, table.get("default", builtin.get(c, builtin["default"])))
                 for c in CLASSES)


@dataclass(frozen=True)
class Network:
    """The validated ``[network]`` section. Per-class fields are tuples indexed by class code
    (``schema.CLASSES``); addresses are ints (IPv4) or 16 bytes (IPv6)."""

    ip: str
    ipv6_share: float
    ipv6_clients: bytes
    ipv6_servers: bytes
    vlan: tuple[int, ...]
    encap: str
    mpls_labels: tuple
    vni: tuple
    underlay: tuple[int, int]
    underlay6: tuple[bytes, bytes]
    srv6_segments: tuple
    macsec: bool
    macsec_key: bytes | None = field(repr=False)
    macsec_encrypt: bool
    mtu: int
    dscp: tuple
    ecn: tuple
    quic: tuple  # share of each class's flows carried as HTTP/3 over QUIC
    impair: Impair = NO_IMPAIR  # [network.impair]: per-class impairments (config.impair)

    @property
    def plain(self) -> bool:
        """Nothing to change on the wire: plain IPv4, untagged, no encapsulation or MACsec,
        DSCP and ECN 0 (the MTU alone changes only segment sizes)."""
        return (self.ip == "4" and not self.vlan and self.encap == "none" and not self.macsec
                and not any(self.dscp) and not any(self.ecn) and not any(self.quic))

    @property
    def any_ipv6(self) -> bool:
        return self.ip == "6" or (self.ip == "dual" and self.ipv6_share > 0)


def build_network(values: dict, classes: tuple[str, ...], fail: Callable[[str, str], Exception]) -> Network:
    """The section's parsed values (from :data:`NETWORK`) -> :class:`Network`; checks across keys.
    ``fail(key, problem)`` makes the ConfigError to raise."""
    if values.get("macsec_key") is not None and not values["macsec"]:
        raise fail("network.macsec_key", "a key is given but network.macsec is false "
                   "(set network.macsec = true, or drop the key)")
    if values["ip"] != "4" and values["mtu"] < 1280:
        raise fail("network.mtu", f"IPv6 needs an MTU of at least 1280, got {values['mtu']}")
    per = {k: _by_class(values[k], NETWORK[k].parse(NETWORK[k].default))
           for k in ("mpls_labels", "vni", "srv6_segments", "dscp", "ecn", "quic")}
    if any(per["quic"]) and values["mtu"] < 1280:
        raise fail("network.mtu", f"QUIC needs an MTU of at least 1280, got {values['mtu']}")
    quic = list(per["quic"])
    for cls in UDP_CLASSES:  # a share for every class means every TCP/TLS class
        if values["quic"].get(cls):
            raise fail("network.quic", f"{cls} is not a TCP/TLS class: its share must be 0")
        quic[CLASSES.index(cls)] = 0.0
    per["quic"] = tuple(quic)
    return Network(
        ip=values["ip"], ipv6_share=values["ipv6_share"], ipv6_clients=values["ipv6_clients"],
        ipv6_servers=values["ipv6_servers"], vlan=values["vlan"], encap=values["encap"],
        underlay=values["underlay"], underlay6=values["underlay6"], macsec=values["macsec"],
        macsec_key=values.get("macsec_key"), macsec_encrypt=values["macsec_encrypt"],
        mtu=values["mtu"], impair=values.get("impair", NO_IMPAIR), **per)


def redact(data: dict) -> dict:
    """A copy of a scenario dict with every secret value replaced by :data:`REDACTED`."""
    out = copy.deepcopy(data)
    net = out.get("network")
    if isinstance(net, dict):
        for k in SECRET_KEYS:
            if k in net:
                net[k] = REDACTED
    return out


PLAIN = build_network({k.name: k.parse(k.default) for k in NETWORK_KEYS if k.default is not OPTIONAL},
                      (), None)
