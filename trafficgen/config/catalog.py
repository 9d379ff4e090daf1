"""The built-in scenarios as files: where they are, their names, and what ``trafficgen
models`` lists (name, classes, description), read with ``tomllib`` alone: no numba, pyarrow
or config machinery, so the listing takes a fraction of a second. The capture points and the
classes each one sees live here for the same reason (``topology`` re-exports them).
``tests/test_startup.py`` checks the listing against the full loader's ``Scenario``.
"""
from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

CAPTURE_POINTS = ("client", "server", "gateway", "fabric", "dci")
_FRONT = {"client": 0, "server": 1, "gateway": 1}
# class -> {capture point: the end of its connections the capture is on (0 client, 1 server)},
# in generation order (``sections.CLASS_SECTIONS``)
SEEN_AT = {"chat": _FRONT, "coding": _FRONT, "reasoning": _FRONT, "multimodal": _FRONT,
           "agentic": _FRONT, "rag": {"server": 1, "gateway": 0, "fabric": 1},
           "kv_transfer": {"server": 1, "fabric": 0, "dci": 0}}


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
    """The built-in scenarios' names (``models/*.toml``), sorted."""
    return sorted(p.name[:-5] for p in builtin_dir().iterdir() if p.name.endswith(".toml"))


def _tables(name: str, seen: tuple = ()) -> dict:
    """A built-in scenario's tables merged over its base's (as ``scenario.resolve_base``)."""
    data = tomllib.loads((builtin_dir() / f"{name}.toml").read_text(encoding="utf-8"))
    base = data.get("scenario", {}).get("base")
    if not isinstance(base, str) or base in seen or base not in builtin_names():
        return data
    out = _tables(base, seen + (name,))
    for key, value in data.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def describe_builtins() -> list[dict]:
    """Per built-in scenario: ``name``, ``classes`` (configured and seen at its capture point,
    in generation order) and ``description``."""
    rows = []
    for name in builtin_names():
        data = _tables(name)
        capture = data.get("topology", {}).get("capture")
        rows.append({"name": name,
                     "classes": [c for c in SEEN_AT if c in data and capture in SEEN_AT[c]],
                     "description": data.get("scenario", {}).get("description", "")})
    return rows
