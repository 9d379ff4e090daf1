"""Reading a scenario's TOML and its chain of bases, and applying ``-t`` overrides.

A base (``[scenario] base = "chat"``) is a built-in name or a path; a relative path is read
from the folder of the file that names it (from the working directory when it comes from
``-t`` or a dict). A chain holds at most :data:`MAX_BASES` bases and a value nests at most
:data:`MAX_DEPTH` tables or arrays deep: past either, or round a cycle, the scenario is refused
in one line (never a ``RecursionError``).
"""
from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

from trafficgen.errors import ConfigError

from .catalog import builtin_dir, builtin_names
from .network import SECRET_KEYS
from .sections import SECTIONS

MAX_BASES = 32  # bases in one chain
MAX_DEPTH = 32  # tables and arrays nested in a scenario


def check_depth(data: Any, where: str, key: str = "") -> None:
    """Refuse values nested deeper than :data:`MAX_DEPTH` (walked without recursion)."""
    stack = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(where, key, f"tables and arrays nest more than {MAX_DEPTH} deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def _loads(text: str, where: str) -> dict:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(where, "", f"not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(where, "", f"not valid TOML: nested more than {MAX_DEPTH} deep") from None
    check_depth(data, where)
    return data


def _is_path(src: str) -> bool:
    return src.endswith(".toml") or "/" in src or "\\" in src or src not in builtin_names()


def read_toml(src: str | Path, folder: Path | None = None) -> tuple[dict, str]:
    """Read a scenario by built-in name or path (a relative path from ``folder``, else the
    working directory); return (data, where-for-messages)."""
    src = str(src)
    if not _is_path(src):
        where = f"models/{src}.toml"
        return _loads((builtin_dir() / f"{src}.toml").read_text(encoding="utf-8"), where), where
    path = Path(src) if folder is None else folder / src
    where = str(path)
    if not path.is_file():
        known = ", ".join(builtin_names())
        raise ConfigError(where, "", f"no such scenario file or built-in name (built-ins: {known})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(where, "", f"cannot read: {e}") from None
    return _loads(text, where), where


def _folder(src: str, folder: Path | None) -> Path | None:
    """The folder a base named in ``src`` (read from ``folder``) is read from: a built-in's
    own, a file's."""
    if not _is_path(src):
        return builtin_dir()
    return (Path(src) if folder is None else folder / src).parent


def _merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key in SECTIONS:
            out[key] = {**out[key], **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_base(data: dict, where: str, folder: Path | None = None) -> dict:
    """``data`` merged over its ``scenario.base`` (and that one's base, ...), key by key within
    each section; ``folder``: where ``data`` was read from (relative bases are read from there)."""
    chain, seen = [data], []
    while True:
        sc = chain[-1].get("scenario")
        base = sc.get("base") if isinstance(sc, dict) else None
        if base is None:
            break
        if not isinstance(base, str) or "\0" in base:  # a NUL: no path (ValueError from the OS calls)
            raise ConfigError(where, "scenario.base", f"expected a scenario name or path, got {base!r}")
        ref = base if not _is_path(base) else str((Path(base) if folder is None else folder / base).resolve())
        if ref in seen:
            shown = seen if len(seen) <= 4 else seen[:2] + ["..."] + seen[-2:]
            raise ConfigError(where, "scenario.base", f"circular base: {' -> '.join(shown + [ref])}")
        if len(seen) >= MAX_BASES:
            raise ConfigError(where, "scenario.base", f"more than {MAX_BASES} bases in a chain")
        seen.append(ref)
        parent, where = read_toml(base, folder)
        folder = _folder(base, folder)
        chain.append(parent)
    merged = chain.pop()
    while chain:
        merged = _merge(merged, chain.pop())
        merged["scenario"].pop("base", None)
    return merged


def parse_override(text: str) -> tuple[str, Any]:
    """``dotted.key=value``: the value is read as TOML when it parses, else as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+", key):
        shown = f"{key}=<redacted>" if any(k in key for k in SECRET_KEYS) else text
        raise ConfigError("-t", shown, "expected dotted.key=value, e.g. chat.rate=80/s")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    except RecursionError:
        raise ConfigError("-t", key, f"nested more than {MAX_DEPTH} deep") from None
    check_depth(value, "-t", key)
    return key, value


def apply_overrides(data: dict, overrides: dict[str, Any] | list[str] | None) -> dict:
    """A copy of ``data`` with each dotted key set (a dict, or ``-t`` style ``key=value`` strings)."""
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
