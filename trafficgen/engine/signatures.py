"""The kernels a run compiles, with their argument types, as data: what ``engine.compile``
compiles ahead of a run, in two processes.

A *plan* is a list of entries ``(function, argument types, top, cost)``: every jitted function
of ``trafficgen.kernels`` a run compiled, in the order the compiles finished (a function's
callees before it); ``top`` when it was called from Python, and then ``cost`` the seconds of
CPU its compile took with the callees compiled on its account (what ``engine.compile`` shares
the work out by). The plans of the built-in scenarios are
recorded in ``kernels.json`` beside this file (``python -m trafficgen.engine.compile
--record``; ``tests/test_startup.py`` checks they are current). Types are written as JSON:
``"int64"``, ``{"array": dtype, "ndim": 1, "layout": "C", ...}``, ``{"namedtuple":
"trafficgen.kernels.tcp.Conns", "items": [...]}``, ``{"tuple": [...]}``, a record dtype as its
fields and offsets.
"""
from __future__ import annotations

import importlib
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
from numba.core import sigutils, types
from numba.np import numpy_support

MANIFEST = Path(__file__).with_name("kernels.json")
_loaded: list = []


def spec_of(t) -> object:
    """A numba type as JSON-able data (ValueError for a kind of type kernels never take)."""
    if isinstance(t, types.Array):
        return {"array": spec_of(t.dtype), "ndim": t.ndim, "layout": t.layout,
                "readonly": not t.mutable, "aligned": t.aligned}
    if isinstance(t, types.Record):
        d = numpy_support.as_dtype(t)
        return {"record": {"names": list(d.names), "formats": [d.fields[n][0].str for n in d.names],
                           "offsets": [d.fields[n][1] for n in d.names], "itemsize": d.itemsize},
                "aligned": d.isalignedstruct}
    if isinstance(t, types.BaseTuple):
        items = [spec_of(x) for x in t.types]
        cls = getattr(t, "instance_class", tuple)
        if cls is tuple:
            return {"tuple": items}
        return {"namedtuple": f"{cls.__module__}.{cls.__qualname__}", "items": items}
    if isinstance(t, (types.Integer, types.Float, types.Boolean)):
        return str(np.dtype(numpy_support.as_dtype(t)))
    raise ValueError(f"no spec for the type {t}")


def type_of(spec):
    """The numba type of a :func:`spec_of` spec (ValueError if it names nothing importable)."""
    if isinstance(spec, str):
        return numpy_support.from_dtype(np.dtype(spec))
    if "array" in spec:
        return types.Array(type_of(spec["array"]), spec["ndim"], spec["layout"],
                           readonly=spec["readonly"], aligned=spec["aligned"])
    if "record" in spec:
        return numpy_support.from_dtype(np.dtype(spec["record"], align=spec["aligned"]))
    if "tuple" in spec:
        return types.BaseTuple.from_types([type_of(x) for x in spec["tuple"]])
    if "namedtuple" in spec:
        module, _, name = spec["namedtuple"].rpartition(".")
        cls = getattr(importlib.import_module(module), name, None)
        if not isinstance(cls, type) or not issubclass(cls, tuple):
            raise ValueError(f"no namedtuple {spec['namedtuple']}")
        return types.BaseTuple.from_types([type_of(x) for x in spec["items"]], cls)
    raise ValueError(f"not a type spec: {spec!r}")


def name_of(dispatcher) -> str:
    return f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}"


def dispatcher_of(name: str):
    """The jitted function a plan names (ValueError if it is gone)."""
    module, _, attr = name.rpartition(".")
    if not module.startswith("trafficgen.kernels."):
        raise ValueError(f"not a kernel: {name}")
    d = getattr(importlib.import_module(module), attr, None)
    if d is None or not hasattr(d, "overloads"):
        raise ValueError(f"no kernel {name}")
    return d


def args_of(sig) -> tuple:
    """The argument types of a signature as numba's ``compile`` takes it."""
    return tuple(sigutils.normalize_signature(sig)[0])


def manifest() -> dict:
    """``kernels.json``: ``{"entries": [[function, [arg specs], top, cost], ...], "scenarios":
    {built-in name: [entry positions]}, "outputs": {"pcapng": [...], "tables": [...]}}`` (what
    those outputs add to chat's); {} if missing."""
    if not _loaded:
        try:
            _loaded.append(json.loads(MANIFEST.read_text()))
        except (OSError, ValueError):
            _loaded.append({})
    return _loaded[0]


class Recorder:
    """A compile hook (``kernels.jit.set_compile_hook``) that lists what is compiled, or
    loaded from the cache, as plan entries, in the order each finishes."""

    def __init__(self):
        self.entries: list = []
        self._depth = threading.local()

    def __call__(self, dispatcher, sig, compile_):
        args = args_of(sig)
        if args in dispatcher.overloads:
            return compile_(sig)
        depth = getattr(self._depth, "n", 0)
        self._depth.n = depth + 1
        t0 = time.thread_time()
        try:
            entry = compile_(sig)
        finally:
            self._depth.n = depth
        cost = round(time.thread_time() - t0, 2) if depth == 0 else 0
        try:
            self.entries.append([name_of(dispatcher), [spec_of(a) for a in args], depth == 0, cost])
        except ValueError as e:  # a plan without it: that function compiles when first called
            print(f"not recorded: {name_of(dispatcher)}: {e}", file=sys.stderr)
        return entry
