"""The public library surface, as imported from ``trafficgen``: the names in ``__all__`` (and
only they, in ``dir``), imported on first use so that ``import trafficgen`` loads no numba,
LLVM or pyarrow, and arguments refused with trafficgen's own errors. (What the functions make:
test_engine.py; the sinks: test_sinks.py; Replay: test_replay.py; the README's examples:
test_readme.py.)"""
from __future__ import annotations

import subprocess
import sys

import pytest

import trafficgen as tg
from trafficgen import TrafficgenError

from .helpers import listing

HEAVY = ("numba", "llvmlite", "pyarrow")


def test_import_loads_nothing_heavy_until_a_name_is_used():
    """Run in a fresh interpreter: after ``import trafficgen``, its version, ``__all__`` and
    ``dir`` no heavy module is loaded; the first use of a public function loads what it needs."""
    code = f"""
import sys
import trafficgen
loaded = lambda: sorted(m for m in {HEAVY!r} if m in sys.modules)
assert trafficgen.__version__ and trafficgen.__all__ and dir(trafficgen), "empty"
print(loaded())
trafficgen.generate
print(loaded())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.splitlines()
    assert before == "[]", f"import trafficgen loaded {before}"
    assert after != "[]", "generate was resolved without its engine: is the check still live?"


def test_every_public_name_resolves():
    """Each name is the object itself, whatever was used before it: a subpackage of the same
    name (``trafficgen.replay``) must not take the function's place once it is imported."""
    for name in tg.__all__:
        value = getattr(tg, name)
        assert value is not None, name
        if name != "__version__":
            assert getattr(value, "__name__", None) == name and not isinstance(value, type(tg)), \
                f"trafficgen.{name} is {value!r}"
            assert value.__module__.startswith("trafficgen."), name
    assert len(set(tg.__all__)) == len(tg.__all__)
    with pytest.raises(AttributeError, match="no_such_name"):
        tg.no_such_name  # noqa: B018


def test_dir_lists_the_public_names():
    assert dir(tg) == sorted(tg.__all__)
    assert {"generate", "batches", "load_scenario", "Replay", "PcapSink", "ConfigError"} <= set(dir(tg))


def test_library_refuses_bad_arguments_with_trafficgen_errors(tmp_path):
    with pytest.raises(TrafficgenError, match="batch_packets"):
        list(tg.batches("chat", batch_packets=0))
    with pytest.raises(TrafficgenError, match="window"):
        tg.generate("chat", pcap=tmp_path / "x.pcap", window=5)
    assert listing(tmp_path) == []
