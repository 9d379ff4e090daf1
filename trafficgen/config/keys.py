"""Scenario keys, each declared once: a :class:`Key` holds a key's name, its parser (which is
its type and the values it allows), its default, and a line of help.

A section is a tuple of keys, composed by concatenation (``CHAT_KEYS + ENDPOINT_KEYS``); its
validation (:func:`parse_section`), defaults, optional keys, the allowed-key lists in errors,
the dataclass of its values (:func:`params_class`) and its reference table (:func:`key_table`)
are all read off the tuple. Parsers take a TOML value and return the run's value, or raise
``ValueError`` saying what is allowed; the caller adds the file and the dotted key.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

from trafficgen.errors import ConfigError

from .dist import Dist, parse_dist
from .units import format_duration, parse_duration, parse_size


class Marker:
    """A default that is not a value: :data:`REQUIRED` or :data:`OPTIONAL`."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


REQUIRED = Marker("required")  # leaving the key out is an error
OPTIONAL = Marker("optional")  # left out, the key stays out (its section reads it with .get)


@dataclass(frozen=True)
class Key:
    """One key of a section.

    Parameters
    ----------
    name : str
        The key as written in TOML.
    parse : callable
        TOML value -> the run's value; raises ``ValueError`` saying what is allowed. Its return
        annotation is the field's type, its ``allowed`` attribute (see :func:`allows`) the values
        the key table lists.
    default : Any
        A TOML value taken (and written into the scenario) where the key is left out, or
        :data:`REQUIRED` or :data:`OPTIONAL`.
    help : str
        One line: what the key means.
    """

    name: str
    parse: Callable[[Any], Any]
    default: Any = REQUIRED
    help: str = ""

    @property
    def type(self) -> str:
        """The parsed value's type, as annotated on the parser ("Any" where it is not)."""
        hint = getattr(self.parse, "__annotations__", {}).get("return", "Any")
        return hint if isinstance(hint, str) else getattr(hint, "__name__", repr(hint))

    @property
    def allowed(self) -> str:
        return getattr(self.parse, "allowed", "")


def allows(text: str, returns: str | None = None) -> Callable[[Callable], Callable]:
    """Decorate a parser with the values it allows, in words (for :func:`key_table`), and the
    type it returns where its annotation cannot say (it is made at run time)."""
    def mark(parse: Callable) -> Callable:
        parse.allowed = text
        if returns is not None:
            parse.__annotations__["return"] = returns
        return parse
    return mark


def section(*groups: Iterable[Key]) -> Mapping[str, Key]:
    """Key groups -> a read-only name -> :class:`Key` mapping, in order; a name given twice is
    a declaration error."""
    out: dict[str, Key] = {}
    for key in (k for group in groups for k in group):
        if key.name in out:
            raise ValueError(f"key {key.name!r} is declared twice")
        out[key.name] = key
    return MappingProxyType(out)


def optional(keys: Iterable[Key]) -> tuple[Key, ...]:
    """The same keys with no default: left out, they stay out."""
    return tuple(dataclasses.replace(k, default=OPTIONAL) for k in keys)


def with_defaults(keys: Iterable[Key], **defaults: Any) -> tuple[Key, ...]:
    """The same keys, those named taking another default."""
    keys = tuple(keys)
    unknown = set(defaults) - {k.name for k in keys}
    if unknown:
        raise ValueError(f"no key {sorted(unknown)[0]!r} in the group")
    return tuple(dataclasses.replace(k, default=defaults[k.name]) if k.name in defaults else k
                 for k in keys)


def parse_section(data: dict, name: str, keys: Mapping[str, Key], where: str) -> dict:
    """Check ``data[name]`` against its keys; return key -> parsed value.

    Every key left out that has a default is written into ``data[name]`` (so the scenario's
    dict holds what was run); an ``OPTIONAL`` key left out is absent from the result.

    Raises
    ------
    ConfigError
        Naming ``where``, the dotted key and what is allowed.
    """
    raw = data.get(name)
    if not isinstance(raw, dict):
        raise ConfigError(where, name, "missing table" if raw is None else "expected a table")
    for given in raw:
        if given not in keys:
            raise ConfigError(where, f"{name}.{given}",
                              f"unknown key (allowed: {', '.join(sorted(keys))})")
    values = {}
    for key in keys.values():
        if key.name not in raw:
            if key.default is OPTIONAL:
                continue
            if key.default is REQUIRED:
                raise ConfigError(where, f"{name}.{key.name}", "missing (required)")
            raw[key.name] = copy.deepcopy(key.default)
        try:
            values[key.name] = key.parse(raw[key.name])
        except ValueError as e:
            raise ConfigError(where, f"{name}.{key.name}", str(e)) from None
    return values


def subtable(keys: tuple[Key, ...], ptype: type) -> Callable[[Any], Any]:
    """A parser of a table of named keys (``multimodal.voice``) into ``ptype``; keys left out
    take their defaults. A bad value names its key."""
    names = ", ".join(k.name for k in keys)

    @allows(f"a table of: {names}", returns=ptype.__name__)
    def conv(v):
        if not isinstance(v, dict):
            raise ValueError(f"expected a table with keys of: {names}, got {v!r}")
        for k in v:
            if k not in {key.name for key in keys}:
                raise ValueError(f"unknown key {k!r} (allowed: {names})")
        out = {}
        for key in keys:
            try:
                out[key.name] = key.parse(v.get(key.name, key.default))
            except ValueError as e:
                raise ValueError(f"{key.name}: {e}") from None
        return ptype(**out)
    return conv


def params_class(name: str, keys: Iterable[Key], doc: str, module: str, *, base: type = object,
                 init_defaults: tuple[str, ...] = ()) -> type:
    """The frozen dataclass of a section's values: one field per key, in order, after
    ``base``'s. An ``OPTIONAL`` key left out is None. The keys named in ``init_defaults`` take
    their parsed default as the constructor's default too (they must come last)."""
    keys = tuple(keys)
    fields: list = []
    for k in keys:
        if k.default is OPTIONAL:  # left out, None (a keyword argument, so anywhere in order)
            fields.append((k.name, f"{k.type} | None", dataclasses.field(default=None, kw_only=True)))
        elif k.name in init_defaults:
            fields.append((k.name, k.type, dataclasses.field(default=k.parse(k.default))))
        else:
            fields.append((k.name, k.type))
    lines = [doc, "", "Attributes", "----------"]
    for k in keys:
        lines += [f"{k.name} : {k.type}", f"    {k.help}"]
    namespace = {"__module__": module, "__qualname__": name, "__doc__": "\n".join(lines)}
    bases = () if base is object else (base,)
    return dataclasses.make_dataclass(name, fields, bases=bases, namespace=namespace, frozen=True)


def toml_value(v: Any) -> str:
    """A default as TOML writes it inline ("required" or "optional" where there is none)."""
    if isinstance(v, Marker):
        return v.name
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(map(toml_value, v)) + "]"
    return json.dumps(v)


def key_table(keys: Iterable[Key], prefix: str = "") -> str:
    """A markdown table of keys: name, default, allowed values and meaning."""
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for k in keys:
        cells = (f"`{prefix}{k.name}`", f"`{toml_value(k.default)}`", k.allowed, k.help)
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


# --- parsers shared by the sections ---------------------------------------------------------

def int_in(lo: int, hi: int) -> Callable[[Any], int]:
    """A whole number from ``lo`` to ``hi``."""
    @allows(f"{lo} to {hi}")
    def conv(v) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected a whole number from {lo} to {hi}, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"must be from {lo} to {hi}, got {v}")
        return v
    return conv


def float_in(lo: float, hi: float) -> Callable[[Any], float]:
    """A finite number from ``lo`` to ``hi``."""
    @allows(f"{lo:g} to {hi:g}")
    def conv(v) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"expected a number from {lo:g} to {hi:g}, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"must be from {lo:g} to {hi:g}, got {v:g}")
        return float(v)
    return conv


def bounded(parse: Callable[[Any], Any], lo, hi, show: Callable[[Any], str]) -> Callable[[Any], Any]:
    """``parse`` (a unit parser), its result from ``lo`` to ``hi`` (shown by ``show``)."""
    @allows(f"{show(lo)} to {show(hi)}", returns=parse.__annotations__.get("return", "Any"))
    def conv(v):
        x = parse(v)
        if not lo <= x <= hi:
            raise ValueError(f"must be from {show(lo)} to {show(hi)}, got {v!r}")
        return x
    return conv


def text(choices: tuple[str, ...] | None = None, pattern: str | None = None) -> Callable[[Any], str]:
    """A string: one of ``choices``, or matching ``pattern``, or any."""
    @allows(", ".join(choices) if choices else f"/{pattern}/" if pattern else "a string")
    def conv(v) -> str:
        if not isinstance(v, str):
            raise ValueError(f"expected a string, got {v!r}")
        if choices is not None and v not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {v!r}")
        if pattern is not None and not re.fullmatch(pattern, v):
            raise ValueError(f"got {v!r}")
        return v
    return conv


def one_of(allowed: tuple[int, ...]) -> Callable[[Any], int]:
    """One of the whole numbers ``allowed``."""
    @allows(", ".join(map(str, allowed)))
    def conv(v) -> int:
        if isinstance(v, bool) or v not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}, got {v!r}")
        return int(v)
    return conv


def size_in(lo: int, hi: int) -> Callable[[Any], int]:
    """A size in bytes (``"64KiB"``) from ``lo`` to ``hi``."""
    return bounded(parse_size, lo, hi, str)


_UNIT_NOUNS = {"count": "numbers", "duration": "durations", "bytes": "sizes"}
# The largest value a distribution of each unit may reach (its max, its last value, a constant;
# a lognormal without a max: its p90): a delay of a day keeps every timestamp of a run inside
# pcap's 32-bit seconds; ten million tokens and a GiB keep a request's packets within memory.
DIST_MAX = {"count": 10**7, "duration": 86_400 * 10**9, "bytes": 1 << 30}
_SHOW_MAX = {"count": "10000000", "duration": "1d", "bytes": "1GiB"}
_WHY_MAX = {"count": "a request's packets must fit in memory",
            "duration": "timestamps must stay within pcap's 32-bit seconds",
            "bytes": "a request's packets must fit in memory"}


def dist(unit: str, positive: bool = True) -> Callable[[Any], Dist]:
    """A distribution of ``unit`` ("count", "duration" or "bytes"), above zero if ``positive``,
    reaching at most :data:`DIST_MAX` of its unit."""
    @allows(f"a distribution of {_UNIT_NOUNS[unit]} up to {_SHOW_MAX[unit]}"
            + ("" if positive else ", 0 allowed"))
    def conv(v) -> Dist:
        d = parse_dist(v, unit, positive)
        if d.top() > DIST_MAX[unit]:
            raise ValueError(f"values must be at most {_SHOW_MAX[unit]} ({_WHY_MAX[unit]}), "
                             f"got {v!r}")
        return d
    return conv


def dist_within(lo: float, hi: float) -> Callable[[Any], Dist]:
    """A distribution of plain numbers (a share, a count) whose values lie in [lo, hi]."""
    @allows(f"a distribution within {lo:g} to {hi:g}")
    def conv(v) -> Dist:
        d = parse_dist(v, "count", positive=False)
        if d.lo < lo or d.hi > hi:
            raise ValueError(f"values must lie from {lo:g} to {hi:g}")
        return d
    return conv



@allows("true, false")
def boolean(v) -> bool:
    """A TOML true or false (not 0 or 1, not a string)."""
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def duration_or_zero(hi: int) -> Callable[[Any], int]:
    """0 (off) or a duration from 1 ms to ``hi`` ns."""
    @allows(f"0 (off) or 1ms to {hi // 10**9}s")
    def conv(v) -> int:
        ns = 0 if v == 0 else parse_duration(v)
        if not (ns == 0 or 10**6 <= ns <= hi):
            raise ValueError(f"expected 0 (off) or a duration from 1ms to {hi // 10**9}s, got {v!r}")
        return ns
    return conv


def seconds(ns) -> str:
    """Nanoseconds shown as a duration in its largest exact unit (``"1ms"``, ``"30d"``), as
    ``parse_duration`` reads it back."""
    return format_duration(int(ns))


def per_class(item: Callable[[Any], Any], classes: Iterable[str], dist_like: bool = False) -> Callable[[Any], dict]:
    """A value for every class, or a table of class name (or ``default``) -> value. Where a
    value may itself be a table (a distribution), a table is per class only if every key is a
    class name or ``default``."""
    names = tuple(classes)

    @allows(f"{item.allowed}, or a table by class name (or default)")
    def conv(v) -> dict:
        if not isinstance(v, dict) or (dist_like and not (
                bool(v) and all(k == "default" or k in names for k in v))):
            return {"default": item(v)}
        out = {}
        for k, x in v.items():
            if k != "default" and k not in names:
                raise ValueError(f"unknown class {k!r} (allowed: default, {', '.join(names)})")
            try:
                out[k] = item(x)
            except ValueError as e:
                raise ValueError(f"{k}: {e}") from None
        return out
    return conv
