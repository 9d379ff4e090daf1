"""The ``[network.impair]`` section: path impairments, each a value or a per-class table.

``loss`` is the probability that a packet of the path is lost (0 to 0.5); ``burst`` the mean
length of a loss burst (1: Bernoulli; more: a Gilbert-Elliott chain with that mean burst and
the stationary loss ``loss``); ``before_tap`` the share of losses upstream of the capture
point (never captured) against downstream (captured, then never delivered); ``ecn`` the
share of RoCEv2 data marked CE (``kernels.kv``); ``jitter`` the path's extra delay per
packet (a distribution of durations, or one duration J: uniform on [0, J]; the path stays
first-in first-out, so jitter alone reorders nothing); ``reorder`` the probability that a
segment or ACK is held back behind the next frames of its direction; ``duplicate`` the
probability that the path delivers it twice (``kernels.path``). Loss, reordering and
duplication apply to TCP's segments and ACKs after the handshake, and so to QUIC flows,
which the same transport carries (RoCEv2: loss and ECN; RTP is not impaired).

Per-class values are written like ``network.dscp``: ``loss = 0.01`` for every class, or
``loss = { default = 0, kv_transfer = 0.01 }``. Left out, the section is absent and every
capture is byte for byte what it was before it existed.

Access: ``scenario.network.impair`` is an :class:`Impair` of per-class tuples (indexed by
``schema.CLASSES``); :func:`impair_for` gives one class's :class:`ClassImpair`, e.g.
``impair_for(scenario, "kv_transfer").loss``.
"""
from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from typing import Any, Callable

from trafficgen.schema import CLASSES

from .dist import CONSTANT, UNIFORM, Dist, parse_dist
from .keys import Key, allows, float_in, per_class, section

ClassImpair = namedtuple("ClassImpair", "loss burst before_tap ecn jitter reorder duplicate")
ClassImpair.__doc__ = """One class's impairments: loss probability, mean loss burst, share of
losses before the tap, share of RoCEv2 data marked CE, jitter (a ``Dist`` of ns), reorder and
duplicate probabilities."""


def _prob(hi: float):
    return float_in(0, hi)


_burst = float_in(1, 1000)  # mean loss burst, packets


@allows("a duration (uniform from 0 to it) or a distribution of durations, up to 1s")
def _jitter(v) -> Dist:
    d = parse_dist(v, "duration", positive=False)
    if d.top() > 1e9:
        raise ValueError(f"jitter must stay within 1s, got {v!r}")
    if d.kind == CONSTANT and d.a > 0:  # one duration: jitter up to it
        d = Dist(UNIFORM, a=0.0, b=d.a, lo=0.0, hi=d.a)
    return d


def _per_class(item: Callable[[Any], Any], dist_like: bool = False) -> Callable[[Any], dict]:
    return per_class(item, CLASSES, dist_like)


IMPAIR_KEYS = (
    Key("loss", _per_class(_prob(0.5)), {"default": 0}, "probability that a packet is lost"),
    Key("burst", _per_class(_burst), {"default": 1},
        "mean loss burst length in packets (1: Bernoulli; more: Gilbert-Elliott)"),
    Key("before_tap", _per_class(_prob(1.0)), {"default": 0},
        "share of the losses upstream of the capture point (never captured)"),
    Key("ecn", _per_class(_prob(1.0)), {"default": 0}, "share of RoCEv2 data marked CE"),
    Key("jitter", _per_class(_jitter, dist_like=True), {"default": 0},
        "the path's extra delay per packet: a duration (uniform up to it) or a distribution"),
    Key("reorder", _per_class(_prob(0.5)), {"default": 0},
        "probability that a packet is held back behind the next ones of its direction"),
    Key("duplicate", _per_class(_prob(0.5)), {"default": 0},
        "probability that the path delivers a packet twice"),
)
IMPAIR = section(IMPAIR_KEYS)


@dataclass(frozen=True)
class Impair:
    """The validated ``[network.impair]`` section: per-class tuples indexed by class code
    (``schema.CLASSES``)."""

    loss: tuple
    burst: tuple
    before_tap: tuple
    ecn: tuple
    jitter: tuple  # a Dist (ns) per class
    reorder: tuple
    duplicate: tuple

    @property
    def any(self) -> bool:
        """Whether any class has an impairment (jitter a constant 0 is none)."""
        return bool(any(self.loss) or any(self.ecn) or any(self.reorder) or any(self.duplicate)
                    or any(d.top() > 0 for d in self.jitter))

    def of(self, cls: str) -> ClassImpair:
        """One class's impairments."""
        c = CLASSES.index(cls)
        return ClassImpair(self.loss[c], self.burst[c], self.before_tap[c], self.ecn[c],
                           self.jitter[c], self.reorder[c], self.duplicate[c])


def _defaults() -> dict:
    return {k.name: k.parse(k.default) for k in IMPAIR_KEYS}


def build_impair(values: dict) -> Impair:
    """Parsed values (by key; a key left out takes its default) -> :class:`Impair`."""
    base = _defaults()
    full = {k: {**base[k], **values.get(k, {})} for k in IMPAIR}
    return Impair(**{k: tuple(full[k].get(c, full[k]["default"]) for c in CLASSES)
                     for k in IMPAIR})


@allows("a table of: " + ", ".join(IMPAIR), returns="Impair")
def parse_impair(v) -> Impair:
    """The ``network.impair`` table -> :class:`Impair` (unknown keys and bad values name their key)."""
    if not isinstance(v, dict):
        raise ValueError(f"expected a table with keys of: {', '.join(IMPAIR)}, got {v!r}")
    values = {}
    for k, x in v.items():
        if k not in IMPAIR:
            raise ValueError(f"unknown key {k!r} (allowed: {', '.join(IMPAIR)})")
        try:
            values[k] = IMPAIR[k].parse(x)
        except ValueError as e:
            raise ValueError(f"{k}: {e}") from None
    return build_impair(values)


NO_IMPAIR = build_impair({})


def impair_for(scenario, cls: str) -> ClassImpair:
    """Class ``cls``'s impairments in ``scenario`` (a ``Scenario``, or its ``Network``)."""
    net = getattr(scenario, "network", scenario)
    return net.impair.of(cls)


SITE_KEYS = ("loss", "burst", "before_tap", "jitter", "reorder", "duplicate")  # not ecn (RoCEv2)


@allows("a table of: " + ", ".join(SITE_KEYS) + " (one value each)")
def parse_site_impair(v) -> tuple:
    """A site's ``impair`` table -> ((key, value), ...): each key one value for every class,
    which replaces ``[network.impair]``'s for the paths of the site's clients."""
    if not isinstance(v, dict):
        raise ValueError(f"expected a table with keys of: {', '.join(SITE_KEYS)}, got {v!r}")
    out = []
    for k, x in v.items():
        if k not in SITE_KEYS:
            raise ValueError(f"unknown key {k!r} (allowed: {', '.join(SITE_KEYS)})")
        try:
            parsed = IMPAIR[k].parse(x)
        except ValueError as e:
            raise ValueError(f"{k}: {e}") from None
        if set(parsed) != {"default"}:
            raise ValueError(f"{k}: a site's impairment is one value for its paths, not a table by class")
        out.append((k, parsed["default"]))
    return tuple(out)


def site_impair(base: ClassImpair, site_values: tuple) -> ClassImpair:
    """A class's impairments on the paths of a site with ``impair`` values ``site_values``."""
    return base._replace(**dict(site_values))
