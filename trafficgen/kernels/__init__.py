"""numba kernels: arrays and scalars in, caller-allocated arrays filled, row counts out.

Owns: every jitted function, and where their compiled code is cached. May import: numpy,
numba and each other, nothing else of trafficgen (the ``kernels`` contract in pyproject.toml):
the codes they write (labels, TCP flags, protocols) are in ``codes``, header layouts in
``headers``, the decorators (``kernel``, ``helper``, ``inline``) in ``jit``. A kernel's tables
travel as a few named values (namedtuples of arrays and scalars, e.g. ``chat.ChatParams``,
``frames.PacketRows``), built once per model by ``trafficgen.classes``.

Where numba caches the compiled kernels is decided here (:func:`cache_dir`), before a kernel
is defined: the user's ``NUMBA_CACHE_DIR``, else numba's own place beside these files, else a
per-user folder (``$XDG_CACHE_HOME/trafficgen/numba``, by default
``~/.cache/trafficgen/numba``); with none writable, kernels compile on every run (one
warning). ``TRAFFICGEN_NO_KERNEL_CACHE=1`` asks for that on purpose.
"""
from __future__ import annotations

import os
import sys
import tempfile
import warnings

NO_CACHE_ENV = "TRAFFICGEN_NO_KERNEL_CACHE"
_decided: list = []  # [the folder, or None: uncached], once decided


class KernelCacheWarning(RuntimeWarning):
    """No folder to cache compiled kernels in: every run compiles them again."""


def writable(path: str) -> bool:
    """Whether compiled kernels can be cached in ``path`` (created if missing), as numba
    checks it: a file can be made there."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def user_cache_dir() -> str:
    """The per-user folder: ``$XDG_CACHE_HOME/trafficgen/numba`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "trafficgen", "numba")


def cache_dir() -> str | None:
    """The folder the kernels' compiled code is cached in, or None (not cached: compiled in
    every process). Decided once per process, before numba compiles anything; a folder other
    than numba's default is passed on in ``NUMBA_CACHE_DIR`` (worker processes inherit it)."""
    if not _decided:
        _decided.append(_decide())
    return _decided[0]


def _decide() -> str | None:
    if os.environ.get(NO_CACHE_ENV, "") not in ("", "0"):
        return None
    tried = []
    user = os.environ.get("NUMBA_CACHE_DIR")
    if user:
        if writable(user):
            return user
        tried.append(f"NUMBA_CACHE_DIR={user}")
    beside = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")
    if writable(beside):  # numba's default (after a user's folder it cannot write to)
        return beside
    tried.append(beside)
    own = user_cache_dir()
    if writable(own):
        _use(own)
        return own
    tried.append(own)
    os.environ[NO_CACHE_ENV] = "1"  # processes started from this one: the same, silently
    warnings.warn(f"no writable folder to cache compiled kernels in (tried {', '.join(tried)}): "
                  "every run compiles them again; set NUMBA_CACHE_DIR to a writable folder",
                  KernelCacheWarning, stacklevel=2)
    return None


def _use(path: str) -> None:
    os.environ["NUMBA_CACHE_DIR"] = path
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba already imported (by the user): it read the old setting
        config.CACHE_DIR = path
