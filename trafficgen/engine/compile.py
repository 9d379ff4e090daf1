"""Compile the kernels a run needs before it starts, on two cores, with a count to show.

numba compiles a kernel the first time it is called with new argument types and caches the
machine code (``trafficgen.kernels.cache_dir``): later runs load it in milliseconds, but the
first run of a scenario compiles some 60 functions, one after another (about 13 s of CPU for
``generate chat``). :func:`compile_kernels` does that work up front, from the scenario's plan
(``engine.signatures``: the functions its classes use, callees first):

- nothing to do when the plan's entry points are cached (every run after the first);
- otherwise this process and a helper process (``python -m trafficgen.engine.compile
  FOLDER``) each take the next entry point nobody has taken, costliest first (the recorded
  compile times), and compile it with its callees; each function is compiled once, by
  whichever process claims it first (a file per function in a scratch folder), and the other
  waits for it and loads it from the cache when it needs it (about 40% less wall time for
  ``generate chat`` when the second core is free, for some 2 s more CPU: bench/RESULTS.md);
- ``progress(done, total)`` counts the functions compiled by either.

Whatever the plan misses (a network option the built-ins leave out, a trace-driven run)
compiles when first called, as before; nothing here changes what a kernel computes.

    python -m trafficgen.engine.compile --record    # rewrite kernels.json (about 3 minutes)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from trafficgen.kernels import cache_dir
from trafficgen.kernels.jit import set_compile_hook

from . import signatures as sg
from .lifeline import die_with_parent

BUILTIN_OF_CLASS = {"chat": "chat", "coding": "coding", "reasoning": "reasoning",
                    "multimodal": "multimodal", "agentic": "agentic", "rag": "rag",
                    "kv_transfer": "kv-transfer"}  # config.sections.CLASS_SECTIONS' built-ins
POLL_S = 0.005
LOG_ENV = "TRAFFICGEN_COMPILE_LOG"  # a file: each process appends "time pid event function key"


def _log(event: str, entry_name: str, key: str) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a") as f:
            f.write(f"{time.time():.3f} {os.getpid()} {event} {entry_name} {key}\n")


@dataclass
class Entry:
    dispatcher: object
    args: tuple
    top: bool
    cost: float
    name: str
    specs: list

    @property
    def key(self) -> str:
        """The entry's claim file name (the same in every process)."""
        text = json.dumps([self.name, self.specs])
        return hashlib.sha1(text.encode()).hexdigest()[:20]

    def cached(self) -> bool:
        """Whether numba's cache holds this signature (False when that cannot be told)."""
        cache = getattr(self.dispatcher, "_cache", None)
        try:  # numba's own cache index, read as Dispatcher.compile reads it
            index = cache._cache_file._load_index()
            return cache._index_key(self.args, self.dispatcher.targetctx.codegen()) in index
        except Exception:  # noqa: BLE001 - a numba without these internals: assume not cached
            return False


def decode(raw: list) -> list[Entry]:
    """Plan entries from their JSON form; entries naming what no longer exists are left out
    (a plan a little out of date costs time, never correctness)."""
    out, seen = [], {}
    for name, specs, top, cost in raw:
        key = json.dumps([name, specs])
        if key in seen:  # the same function and types: once, at its first place
            seen[key].top, seen[key].cost = seen[key].top or bool(top), max(seen[key].cost, cost)
            continue
        try:
            seen[key] = Entry(sg.dispatcher_of(name), tuple(sg.type_of(s) for s in specs), bool(top),
                              float(cost), name, specs)
        except (ValueError, ImportError, KeyError, TypeError):
            continue
        out.append(seen[key])
    return out


def work_order(todo: list[Entry]) -> list[Entry]:
    """The entry points to compile, costliest first (each with the callees not compiled yet):
    two processes taking the next one free in this order finish close together."""
    return sorted((e for e in todo if e.top), key=lambda e: -e.cost)


def kernel_plan(scenario, *, pcapng: bool = False, tables: bool = False) -> list[Entry]:
    """The entries a run of ``scenario`` compiles: the recorded plans of the built-in
    scenarios of its classes, and what its ``[network]`` section and outputs beyond the pcap
    add; [] for a trace-driven run (other models)."""
    if getattr(scenario, "trace", None) is not None:
        return []
    m = sg.manifest()
    entries, at = m.get("entries", []), []
    for cls in scenario.classes:
        at += m.get("scenarios", {}).get(BUILTIN_OF_CLASS.get(cls, cls), [])
    network = getattr(scenario, "network", None)
    for flag, what in ((pcapng, "pcapng"), (tables, "tables"),
                       (network is not None and not network.plain, "network")):
        if flag:
            at += m.get("outputs", {}).get(what, [])
    return decode([entries[i] for i in at if 0 <= i < len(entries)])


class Claims:
    """Who compiles what: a scratch folder shared by the two processes, a claim file per
    entry (created once, by the first to ask) and a ``.done`` file when it is compiled; or,
    with no folder, this process alone."""

    def __init__(self, folder: str | None, keys: dict, other_alive):
        self.folder, self.keys, self.other_alive = folder, keys, other_alive
        self.names = {key: name for (name, _), key in keys.items()}
        self.mine: set = set()
        self.finished: set = set()

    def claim(self, key: str) -> bool:
        if key in self.mine:
            return True
        if self.folder is not None:
            try:
                os.close(os.open(os.path.join(self.folder, key), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return False
        self.mine.add(key)
        _log("compile", self.names.get(key, "?"), key)
        return True

    def finish(self, key: str) -> None:
        self.finished.add(key)
        if self.folder is not None:
            open(os.path.join(self.folder, key + ".done"), "w").close()
        _log("done", self.names.get(key, "?"), key)

    def done(self, key: str) -> bool:
        return key in self.finished or (
            self.folder is not None and os.path.exists(os.path.join(self.folder, key + ".done")))

    def count_done(self) -> int:
        if self.folder is None:
            return len(self.finished)
        return sum(name.endswith(".done") for name in os.listdir(self.folder))

    def __call__(self, dispatcher, sig, compile_):
        """The compile hook: a planned signature is compiled by the process that claims it;
        the other waits for it and loads it from the cache."""
        args = sg.args_of(sig)
        if args in dispatcher.overloads:
            return compile_(sig)
        key = self.keys.get((sg.name_of(dispatcher), args))
        if key is None:
            return compile_(sig)
        if self.claim(key):
            try:
                return compile_(sig)
            finally:
                if not self.done(key):
                    self.finish(key)
        _log("wait", self.names.get(key, "?"), key)
        while not self.done(key) and self.other_alive():
            time.sleep(POLL_S)
        _log("waited", self.names.get(key, "?"), key)
        return compile_(sig)  # from the cache (compiled here if the other process stopped)


def _compile(entry: Entry, claims: Claims) -> None:
    try:
        entry.dispatcher.compile(entry.args)
    except Exception:  # noqa: BLE001 - an outdated entry: the run compiles what it calls
        pass
    finally:
        if not claims.done(entry.key):
            claims.finish(entry.key)


def compile_kernels(scenario, *, pcapng: bool = False, tables: bool = False, progress=None,
                    helper: bool = True) -> dict:
    """Compile what a run of ``scenario`` needs and is not cached yet (see the module's doc).

    ``pcapng``/``tables``: the run writes a pcapng capture / Parquet tables. ``progress(done,
    total)``: called as functions are compiled, from this thread and a watcher thread; not
    called at all when everything is cached. ``helper``: compile half in a helper process
    (when the machine has two cores or more and there is a cache to share through).
    Returns ``{"compiled": how many functions, "seconds": ...}``."""
    return compile_plan(kernel_plan(scenario, pcapng=pcapng, tables=tables), progress=progress,
                        helper=helper)


def compile_plan(plan: list[Entry], *, progress=None, helper: bool = True) -> dict:
    """:func:`compile_kernels` for the entries of a plan."""
    if not plan or all(e.cached() for e in plan if e.top):
        return {"compiled": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    todo = [e for e in plan if not e.cached()]
    folder = child = None
    if helper and cache_dir() is not None and (os.cpu_count() or 1) > 1:
        try:
            folder = tempfile.mkdtemp(prefix="trafficgen-compile-")
        except OSError:  # no scratch space: this process alone
            folder = None
    stop = threading.Event()
    try:
        if folder is not None:
            child = _start_helper(folder, todo)
        claims = Claims(folder, {(e.name, e.args): e.key for e in todo},
                        lambda: child is not None and child.poll() is None)
        watcher = None
        if progress is not None:
            progress(0, len(todo))
            watcher = threading.Thread(target=_watch, args=(claims, len(todo), progress, stop),
                                       daemon=True, name="trafficgen-compile-progress")
            watcher.start()
        previous = set_compile_hook(claims)
        try:
            waiting = []
            for e in work_order(todo):
                if claims.claim(e.key):
                    _compile(e, claims)
                else:
                    waiting.append(e)
            for e in waiting:  # the helper's: wait for them (or do them, if it stopped)
                while not claims.done(e.key) and claims.other_alive():
                    time.sleep(POLL_S)
                if not claims.done(e.key):
                    _compile(e, claims)
        finally:
            set_compile_hook(previous)
        if progress is not None:
            stop.set()
            watcher.join()
            progress(len(todo), len(todo))  # (a callee of an entry point cached already: not needed)
        return {"compiled": claims.count_done(), "seconds": round(time.perf_counter() - t0, 3)}
    finally:
        stop.set()
        if child is not None:
            _stop(child)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def on_compile(callback):
    """Call ``callback(function name)`` whenever numba starts compiling a function of
    ``trafficgen.kernels`` from now on (not cached, not compiled ahead: a function the plan
    missed); returns the numba event listener (``numba.core.event.unregister`` it to stop)."""
    from numba.core import event

    class Listener(event.Listener):
        def on_start(self, ev):
            func = getattr(ev.data.get("dispatcher"), "py_func", None)
            if func is not None and func.__module__.startswith("trafficgen.kernels."):
                callback(f"{func.__module__}.{func.__qualname__}")

        def on_end(self, ev):
            pass

    listener = Listener()
    event.register("numba:compile", listener)
    return listener


def _watch(claims: Claims, total: int, progress, stop: threading.Event) -> None:
    while not stop.wait(0.2):
        progress(claims.count_done(), total)


def _start_helper(folder: str, todo: list[Entry]):
    Path(folder, "plan.json").write_text(json.dumps([[e.name, e.specs, e.top, e.cost] for e in todo]))
    # this trafficgen, whatever the path and the working folder say (python -m looks in the
    # working folder first: another checkout there would be imported instead)
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    log = os.environ.get(LOG_ENV)
    try:
        with open(log + ".helper", "a") if log else open(os.devnull, "w") as err:
            return subprocess.Popen([sys.executable, "-m", "trafficgen.engine.compile", folder],
                                    env=env, cwd=root, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err)
    except OSError:
        return None


def _stop(child) -> None:
    if child.poll() is None:
        child.terminate()
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def helper_main(folder: str) -> int:
    """The helper process: in the same order as the run's own, each entry point nobody has
    claimed yet."""
    parent = os.getppid()
    die_with_parent(parent)  # a killed run takes its helper with it
    todo = decode(json.loads(Path(folder, "plan.json").read_text()))
    claims = Claims(folder, {(e.name, e.args): e.key for e in todo}, lambda: os.getppid() == parent)
    set_compile_hook(claims)
    for e in work_order(todo):
        if os.getppid() != parent:
            break
        if claims.claim(e.key):
            _compile(e, claims)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--record"] or sys.argv[1:2] == ["--record-one"]:
        from .record import main as record_main
        raise SystemExit(record_main(sys.argv[1:]))
    raise SystemExit(helper_main(sys.argv[1]))
