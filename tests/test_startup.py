"""Start-up and the first run (issue 16): the quick commands load nothing heavy, a first run
compiles its kernels ahead and says so, the compile plans are current, and a run works
where no cache folder can be written."""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import write_pcap

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numba", "llvmlite", "pyarrow")


def python(code: str, env: dict | None = None, timeout: int = 600, cwd=None) -> subprocess.CompletedProcess:
    """``python -c CODE`` in a fresh process, by default from the folder ``env`` puts first on
    the path (the working folder comes before PYTHONPATH)."""
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd or _first(env))


def trafficgen(*args, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trafficgen", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          cwd=_first(env))


def _first(env: dict | None) -> str:
    return (env or os.environ).get("PYTHONPATH", str(ROOT)).split(os.pathsep)[0] or str(ROOT)


def base_env(**extra) -> dict:
    """This environment with the worktree's package first and no cache settings of the
    caller's (tests that set them say so)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "TRAFFICGEN_NO_KERNEL_CACHE",
                        "TRAFFICGEN_COMPILE_LOG")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env.update({k: str(v) for k, v in extra.items()})
    return env


# --- the quick commands -----------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["models"], ["models", "--json"],
                                  ["generate", "--help"]], ids=" ".join)
def test_quick_commands_load_no_numba_llvm_or_arrow(argv):
    done = python(f"""
import contextlib, io, sys
from trafficgen.cli.main import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        rc = main({argv!r})
    except SystemExit as e:
        rc = e.code
assert out.getvalue().strip(), "printed nothing"
print(rc, sorted(m for m in {HEAVY!r} if m in sys.modules))
""", env=base_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "0 []"


def test_import_trafficgen_is_light_until_a_name_is_used():
    done = python(f"""
import sys
import trafficgen as tg
print(tg.__version__, sorted(m for m in {HEAVY!r} if m in sys.modules))
tg.generate
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
""", env=base_env())
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.endswith(" []")
    assert second == str(sorted(HEAVY))  # the check above can see them


def test_the_command_line_loads_numba_without_scipys_blas():
    """numba's BLAS probe imports scipy.linalg (0.2 s of every run's start-up where SciPy is
    installed): the command line skips it, and the module still imports afterwards; OpenBLAS
    starts no threads."""
    pytest.importorskip("scipy")
    env = base_env()
    env.pop("OPENBLAS_NUM_THREADS", None)
    done = python("""
import sys
from trafficgen.cli.compiling import import_numba
import_numba()
import numba.np.arraymath as am
import os
print(am._HAVE_BLAS, "scipy.linalg" in sys.modules, "numba" in sys.modules, os.environ["OPENBLAS_NUM_THREADS"])
import scipy.linalg.cython_blas
print("scipy.linalg" in sys.modules)
""", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "True", "1", "True"]


@pytest.mark.parametrize("argv", [["--help"], ["models"]], ids=" ".join)
def test_quick_commands_take_under_half_a_second(argv):
    env = base_env()
    times = []
    for _ in range(5):  # the best of five: a busy machine slows some, never all
        t0 = time.perf_counter()
        done = trafficgen(*argv, env=env)
        times.append(time.perf_counter() - t0)
        assert done.returncode == 0, done.stderr
    assert min(times) < 0.5, f"trafficgen {' '.join(argv)}: {min(times):.2f} s at best"


def test_models_lists_what_the_scenarios_hold():
    import trafficgen as tg
    from trafficgen.config.catalog import SEEN_AT, describe_builtins
    from trafficgen.config.scenario import CLASS_SECTIONS
    assert tuple(SEEN_AT) == tuple(CLASS_SECTIONS)  # the same generation order
    rows = describe_builtins()
    assert len(rows) >= 8
    for row in rows:
        sc = tg.load_scenario(row["name"])
        assert row == {"name": row["name"], "classes": list(sc.classes), "description": sc.description}


# --- the decorators ---------------------------------------------------------------------------

def _without_entry_point() -> dict[str, set[str]]:
    """Kernel module -> its helper and inline functions (no Python entry point)."""
    out: dict[str, set[str]] = {}
    for path in (ROOT / "trafficgen" / "kernels").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and any(
                    isinstance(d, ast.Name) and d.id in ("helper", "inline") for d in node.decorator_list):
                out.setdefault(f"trafficgen.kernels.{path.stem}", set()).add(node.name)
    return out


def python_uses_of(source: str, private: dict[str, set[str]]) -> list[str]:
    tree = ast.parse(source)
    modules, hits = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                if a.name in private.get(node.module, ()):
                    hits.append(f"{node.lineno}: {node.module}.{a.name}")
                if f"{node.module}.{a.name}" in private:
                    modules[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in private and a.asname:
                    modules[a.asname] = a.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.attr in private.get(modules.get(node.value.id, ""), ())):
            hits.append(f"{node.lineno}: {modules[node.value.id]}.{node.attr}")
    return hits


def test_no_helper_or_inline_function_is_used_from_python():
    """They have no Python entry point: a call from Python would crash the interpreter."""
    private = _without_entry_point()
    assert "put16" in private["trafficgen.kernels.wire"]
    assert python_uses_of("from trafficgen.kernels import wire as w\nw.put16(b, 0, 1)\n", private)
    kernels = ROOT / "trafficgen" / "kernels"
    files = [p for p in (ROOT / "trafficgen").rglob("*.py") if kernels not in p.parents]
    files += list((ROOT / "tests").rglob("*.py")) + list((ROOT / "bench").glob("*.py"))
    hits = [f"{p.relative_to(ROOT)}:{h}" for p in files for h in python_uses_of(p.read_text(), private)]
    assert not hits, "helper/inline functions used from Python (make them kernels):\n" + "\n".join(hits)


def test_a_helper_compiles_once_whatever_literals_it_is_called_with():
    done = python("""
from numba import njit
from trafficgen.kernels.jit import helper, kernel

def make(decorate):
    @decorate
    def add(a, b):
        return a + b
    @kernel
    def caller(n):
        cur = 0
        for i in range(n):
            cur = add(cur, 1) + add(i, 2)
        return cur
    return add, caller

for name, decorate in (("helper", helper), ("njit", njit)):
    add, caller = make(decorate)
    assert caller(3) == 12
    print(name, len(add.signatures), any("Literal" in str(s) for s in add.signatures))
""", env=base_env(TRAFFICGEN_NO_KERNEL_CACHE=1))
    assert done.returncode == 0, done.stderr
    ours, numbas = done.stdout.splitlines()
    assert ours == "helper 1 False"
    assert numbas.split()[1] != "1"  # plain numba: one compile per literal (what this prevents)


def test_the_quicker_compiler_flags_read_as_numbas_own():
    from numba.core.compiler import Flags
    from numba.core.targetconfig import TargetConfig

    import trafficgen.kernels.jit  # noqa: F401 (installs it)
    assert TargetConfig.values.__module__ == "trafficgen.kernels.jit"
    flags = [Flags()]
    for name, value in (("nrt", True), ("boundscheck", True), ("error_model", "numpy"),
                        ("release_gil", True), ("no_cpython_wrapper", True)):
        f = Flags()
        setattr(f, name, value)
        flags.append(f)
    for f in flags:
        assert f.values() == {k: getattr(f, k) for k in type(f).options}
    assert flags[0] != flags[1] and flags[0] == Flags() and hash(flags[0]) == hash(Flags())


# --- the compile plans ------------------------------------------------------------------------

def test_every_plan_entry_reads_back_as_written():
    from trafficgen.engine import signatures as sg
    from trafficgen.engine.compile import decode
    m = sg.manifest()
    assert m["entries"] and set(m["scenarios"]) >= {"chat", "agentic", "kv-transfer"}
    entries = decode(m["entries"])
    assert len(entries) == len(m["entries"])  # nothing dropped: every function and type exists
    for e in entries:
        assert [sg.spec_of(t) for t in e.args] == e.specs, e.name


@pytest.mark.slow
def test_the_plans_hold_what_each_builtin_compiles():
    """kernels.json is current: every kernel a built-in scenario calls, with the argument
    types it is called with, is in the plan of that scenario's classes (else: python -m
    trafficgen.engine.compile --record)."""
    done = python("""
import json
import trafficgen as tg
from trafficgen.engine import signatures as sg
from trafficgen.engine.compile import kernel_plan
from trafficgen.kernels.jit import set_compile_hook
seen = sg.Recorder()
set_compile_hook(seen)
planned, missing = set(), []
for name in ("chat", "coding", "reasoning", "multimodal", "agentic", "rag", "kv-transfer",
             "enterprise-mix"):
    sc = tg.load_scenario(name, duration="5s" if name != "kv-transfer" else "120s", seed=3)
    planned |= {json.dumps([e.name, e.specs]) for e in kernel_plan(sc)}
    for batch in tg.batches(sc):
        pass
    missing += [f"{name}: {e[0]} {e[1]}" for e in seen.entries
                if e[2] and json.dumps(e[:2]) not in planned]
    seen.entries.clear()
print(json.dumps(missing))
""", env=base_env())
    assert done.returncode == 0, done.stderr
    missing = json.loads(done.stdout.splitlines()[-1])
    assert not missing, "not in kernels.json (python -m trafficgen.engine.compile --record):\n" + \
        "\n".join(missing)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Chat's compile plan compiled into a fresh cache folder, once for the tests below, from a
    folder holding another ``trafficgen`` (a checkout, say): the helper process must still
    import this one. Returns the folder, the run's outcome and its compile log."""
    tmp = tmp_path_factory.mktemp("compiled")
    log = tmp / "log"
    decoy = tmp / "elsewhere"
    (decoy / "trafficgen").mkdir(parents=True)
    (decoy / "trafficgen" / "__init__.py").write_text("")
    done = python(f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
import trafficgen as tg
from trafficgen.engine.compile import compile_plan, kernel_plan
plan = kernel_plan(tg.load_scenario("chat"))
calls = []
first = compile_plan(plan, progress=lambda d, t: calls.append((d, t)))
cached = all(e.cached() for e in plan if e.top)
again = compile_plan(plan, progress=lambda d, t: calls.append("again"))
print(json.dumps([first["compiled"], calls[-1], cached, again["compiled"], "again" in calls]))
""", env=base_env(NUMBA_CACHE_DIR=tmp / "cache", TRAFFICGEN_COMPILE_LOG=log), cwd=decoy)
    return tmp / "cache", done, log


def one_kernel_short(compiled, tmp: Path, kernel: str = "encode_tcp") -> Path:
    """A copy of ``compiled``'s cache without ``kernel``'s files: the next run compiles it."""
    cache = tmp / "cache"
    shutil.copytree(compiled[0], cache)
    gone = [f for f in cache.rglob(f"*.{kernel}-*") if f.is_file()]
    assert gone, f"no cached {kernel} in {sorted(p.name for p in cache.rglob('*.nbi'))}"
    for f in gone:
        f.unlink()
    return cache


@pytest.mark.slow
def test_two_processes_compile_each_function_once(compiled):
    _, done, log = compiled
    assert done.returncode == 0, done.stderr
    n, last, cached, again, called_again = json.loads(done.stdout.splitlines()[-1])
    assert n > 30 and last[0] == last[1] >= n and cached and again == 0 and not called_again
    events = [line.split() for line in log.read_text().splitlines()]
    compiled_names = [e[4] for e in events if e[2] == "compile"]
    assert len(compiled_names) == len(set(compiled_names)) == n  # each once, by one process or the other
    assert len({e[1] for e in events}) == (2 if (os.cpu_count() or 1) > 1 else 1)


@pytest.mark.slow
def test_a_first_run_says_it_is_compiling_and_the_next_does_not(compiled, tmp_path):
    """One kernel missing from the cache is a first run; the plan's cache, then, is all a
    ``generate`` needs."""
    cache = one_kernel_short(compiled, tmp_path)
    env = base_env(NUMBA_CACHE_DIR=cache)
    out = tmp_path / "c.pcap"
    first = trafficgen("generate", "chat", "--duration", "2s", "-o", out, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("compiling kernels (first run only) ...") == 1
    assert "Traceback" not in first.stderr and out.stat().st_size > 1000
    assert list(cache.rglob("*.encode_tcp-*.nbi"))
    again = trafficgen("generate", "chat", "--duration", "2s", "-o", out, env=env)
    assert again.returncode == 0 and "compiling" not in again.stderr, again.stderr


@pytest.mark.slow
def test_the_library_compiles_without_a_word(compiled, tmp_path):
    """A library user gets nothing printed, though a kernel compiles (the CLI's run with no
    cache at all, below, shows that compiling every kernel warns of nothing)."""
    cache = one_kernel_short(compiled, tmp_path)
    done = python(f"""
import trafficgen as tg
tg.generate(tg.load_scenario("chat", duration="2s"), pcap={str(tmp_path / "c.pcap")!r})
""", env=base_env(NUMBA_CACHE_DIR=cache))
    assert done.returncode == 0, done.stderr
    assert done.stdout == done.stderr == ""
    assert (tmp_path / "c.pcap").stat().st_size > 1000
    assert list(cache.rglob("*.encode_tcp-*.nbi"))


# --- where compiled kernels are cached --------------------------------------------------------

def package_copy(tmp: Path, writable: bool = False) -> Path:
    """The package and its scenarios copied under ``tmp``; unless ``writable``, a plain file
    stands where numba would make its cache folder beside the kernels (nobody, root
    included, can cache there)."""
    root = tmp / "site"
    shutil.copytree(ROOT / "trafficgen", root / "trafficgen",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(ROOT / "models", root / "models")
    if not writable:
        (root / "trafficgen" / "kernels" / "__pycache__").write_text("not a folder")
    return root


def copy_env(root: Path, **extra) -> dict:
    """Run the copy, with HOME where nothing can be made (a path through a file)."""
    env = base_env(HOME="/dev/null/home", **extra)
    env["PYTHONPATH"] = str(root)
    return env


WHERE = """
import sys, warnings
warnings.simplefilter("always")
import trafficgen.kernels.jit
from trafficgen.kernels import cache_dir
import os
print(cache_dir(), os.environ.get("NUMBA_CACHE_DIR"), os.environ.get("TRAFFICGEN_NO_KERNEL_CACHE"))
"""


def test_the_users_numba_cache_dir_comes_first(tmp_path):
    root = package_copy(tmp_path)
    done = python(WHERE, env=copy_env(root, NUMBA_CACHE_DIR=tmp_path / "mine"))
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert done.stdout.split() == [str(tmp_path / "mine")] * 2 + ["None"]


def test_an_unwritable_numba_cache_dir_falls_back_beside_the_package(tmp_path):
    root = package_copy(tmp_path, writable=True)
    done = python(WHERE, env=copy_env(root, NUMBA_CACHE_DIR="/dev/null/cache"))
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert done.stdout.split()[0] == str(root / "trafficgen" / "kernels" / "__pycache__")


def test_an_unwritable_package_falls_back_to_the_users_cache_folder(tmp_path):
    root = package_copy(tmp_path)
    done = python(WHERE, env=copy_env(root, XDG_CACHE_HOME=tmp_path / "xdg"))
    assert done.returncode == 0 and not done.stderr, done.stderr
    own = str(tmp_path / "xdg" / "trafficgen" / "numba")
    assert done.stdout.split() == [own, own, "None"]


def test_nothing_writable_runs_uncached_with_one_warning(tmp_path):
    root = package_copy(tmp_path)
    done = python(WHERE, env=copy_env(root))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None", "1"]
    assert done.stderr.count("KernelCacheWarning") == 1
    assert "no writable folder to cache compiled kernels" in done.stderr
    asked = python(WHERE, env=copy_env(root, TRAFFICGEN_NO_KERNEL_CACHE=1))  # on purpose: silent
    assert asked.stdout.split()[0] == "None" and not asked.stderr, asked.stderr


def test_a_capture_is_read_with_the_fallback_cache(tmp_path):
    root = package_copy(tmp_path)
    cap = tmp_path / "one.pcap"
    write_pcap(cap, [bytes(60)], [1_000_000_000])
    done = trafficgen("inspect", cap, env=copy_env(root, XDG_CACHE_HOME=tmp_path / "xdg"))
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
    assert list((tmp_path / "xdg" / "trafficgen" / "numba").rglob("*.nbi"))


@pytest.mark.slow
def test_no_writable_home_or_package_still_makes_a_pcap(tmp_path):
    root = package_copy(tmp_path)
    out = tmp_path / "chat.pcap"
    done = trafficgen("generate", "chat", "--duration", "2s", "-o", out, "-q", env=copy_env(root))
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: no writable folder to cache compiled "
                                                   "kernels"), done.stderr
    assert out.read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") and out.stat().st_size > 1000
