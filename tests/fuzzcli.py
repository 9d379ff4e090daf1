"""The readers of the fault suite: each case builds a mutated input (``fuzzing``), runs the
CLI's ``main(argv)`` in this process and checks the promise (:func:`broken`).

In-process runs stop where the reading ends: ``generate`` after the scenario (and trace) are
loaded and checked (``compile_first`` and ``api.generate`` stubbed, unless ``real``), ``replay``
after ``Replay.prepare()`` has read the whole file (the socket on ``lo`` is opened and closed,
nothing is sent). A case is bounded by an interval timer (``Hang``); the campaign's parent also
kills a worker that stops answering.
"""
from __future__ import annotations

import contextlib
import io
import random
import signal
from dataclasses import dataclass
from pathlib import Path

from .fuzzing import (
    TEXT_TRACES,
    Draw,
    compress,
    mutate_bytes,
    mutate_capture,
    mutate_table,
    mutate_text_trace,
    pcap_bytes,
    pcapng_bytes,
)

BUILTINS = ("chat", "coding", "reasoning", "multimodal", "agentic", "rag", "kv-transfer", "enterprise-mix")
# TOML values of wrong types, units and extremes
VALUES = ('"-1s"', '"1e400s"', '"0s"', '"1d"', '"100000d"', '"5x"', '"nan/s"', '"inf/s"', '"1e9/s"', '"-5/s"',
          '"0/s"', '"1e-300/s"', '"1e30B"', '"1GiB"', '"-1B"', '"0.0.0.0/0"', '"10.0.0.0/33"', '"::/0"',
          '"fe80::1"', '"300.1.1.1"', '""', '"x"', "nan", "inf", "-inf", "1e308", "-1e308", "0", "-1", "1",
          "0.5", "9223372036854775807", "-9223372036854775808", "1e19", "true", "false", "[]", '[1, "a"]',
          "[[1, 2], [3]]", '{median = "1s"}', '{median = "-1s", p90 = "1e9d"}', '{median = "1s", p90 = "0.5s"}',
          '{process = "bogus"}', '{process = "gamma", cv = 1e9}', '{dist = "pareto", alpha = 0}',
          "1979-05-27T07:32:00Z", "2200-01-01T00:00:00Z", "07:32:00", '"\\u0000"', "[" * 40 + "]" * 40,
          '{a = {b = {c = 1}}}', '[{name = "a"}]', '"65536"', '"1e6"', "65536", "4294967296")


def section_keys() -> list[tuple[str, str]]:
    from trafficgen.config.sections import SECTIONS
    return [(s, k) for s, keys in SECTIONS.items() for k in keys]


def default_of(section: str, key: str) -> str | None:
    """The key's default as TOML text, scaled or negated (an extreme of the right type)."""
    from trafficgen.config.keys import Marker, toml_value
    from trafficgen.config.sections import SECTIONS
    v = SECTIONS[section][key].default
    return None if isinstance(v, Marker) else toml_value(v)


def scaled(text: str, d: Draw) -> str:
    """Numbers inside a TOML value multiplied by 10**k, negated or zeroed."""
    import re
    k = d.choice(["e9", "e-9", "e18", "e300", "0", "00", "000"])  # also x10..x1000: often still allowed
    f = d.int(0, 3)
    return re.sub(r"(?<![\w.])(\d+(?:\.\d+)?)", lambda m: ("-" + m[1] if f == 0 else "0" if f == 1
                                                          else m[1] + k), text, count=d.int(1, 3))


def toml_value(section: str, key: str, d: Draw) -> str:
    base = default_of(section, key)
    if base is not None and d.int(0, 2) == 0:
        return scaled(base, d)
    return d.choice(VALUES)


def override(d: Draw, keys) -> str:
    """One ``-t KEY=VALUE``: a declared key (or a broken one) with a bad value."""
    s, k = d.choice(keys)
    name = f"{s}.{k}" if d.int(0, 9) else d.choice([f"{s}.{k}.x", f"{s}", f"{s}..{k}", f"{k}", "x.y",
                                                   f"{s}.{k}.median", "scenario.base", ""])
    if d.int(0, 19) == 0:
        return d.choice([name, "=" + name, name + "=="])
    return f"{name}={toml_value(s, k, d)}"


def scenario_text(d: Draw, keys, folder: Path) -> str:
    """A scenario file: a base (built-in, another file, itself, none) and bad keys; its base
    files are written beside it."""
    base = d.choice(list(BUILTINS) + ["", "self", "child", "nope.toml", "../x.toml", "chat.toml"])
    out = {}
    for _ in range(d.int(1, 4)):
        s, k = d.choice(keys)
        out.setdefault(s, {})[k] = toml_value(s, k, d)
    head = ""
    if base == "self":
        head = 'base = "s.toml"\n'
    elif base == "child":
        (folder / "b.toml").write_text('[scenario]\nbase = "' + d.choice(BUILTINS) + '"\n' +
                                       "".join(f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items())
                                               for s, kv in out.items()))
        head, out = 'base = "b.toml"\n', {}
    elif base:
        head = f'base = "{base}"\n'
    text = "[scenario]\n" + head + "".join(
        (f"[{s}]\n" if s != "scenario" else "") + "".join(f"{k} = {v}\n" for k, v in kv.items())
        for s, kv in out.items())
    if d.int(0, 9) == 0:
        text = mutate_bytes(text.encode(), d).decode("utf-8", "replace")
    return text


# --- the readers --------------------------------------------------------------------------------

def capture_input(d: Draw, folder: Path) -> Path:
    kind = d.int(0, 4)
    data = (pcapng_bytes(d.int(0, 5), d.choice([6, 9, 3, 0x80 | 20]), big=d.int(0, 3) == 0) if kind <= 1
            else pcap_bytes(d.int(0, 5), nanos=kind == 2, big=kind == 4))
    path = folder / d.choice(["c.pcap", "c.pcapng", "c.bin"])
    path.write_bytes(mutate_capture(data, d) if d.int(0, 9) else data)
    return path


def table_input(d: Draw, folder: Path, tables: dict) -> Path:
    path = folder / "t.parquet"
    path.write_bytes(mutate_table(tables[d.choice(sorted(tables))], d))
    return path


def trace_input(d: Draw, folder: Path, tables: dict) -> Path:
    if d.int(0, 5) == 0:
        path = folder / d.choice(["r.parquet", "r.csv"])
        path.write_bytes(mutate_table(tables["requests"], d))
        return path
    name = d.choice(sorted(TEXT_TRACES))
    text = mutate_text_trace(TEXT_TRACES[name], d) if d.int(0, 9) else TEXT_TRACES[name]
    data, codec = compress(text.encode("utf-8", "replace"), d)
    path = folder / (name + codec)
    path.write_bytes(data)
    return path


def case_argv(reader: str, d: Draw, folder: Path, tables: dict, keys) -> list[str]:
    """The command line of one case of ``reader`` (its inputs written into ``folder``)."""
    out = str(folder / "out")
    if reader == "inspect":
        f = capture_input(d, folder) if d.int(0, 1) else table_input(d, folder, tables)
        return ["inspect", str(f)] + d.choice([[], ["--json"], ["--stats"]])
    if reader == "plot":
        f = capture_input(d, folder) if d.int(0, 1) else table_input(d, folder, tables)
        return ["plot", str(f), "-o", out + ".png"]
    if reader == "replay":
        return ["replay", str(capture_input(d, folder)), "--iface", "lo", "-q"]
    if reader == "fit":
        fmt = ["--trace-format", d.choice(["azure", "mooncake", "burstgpt", "generic"])] if d.int(0, 4) == 0 else []
        return ["fit", str(trace_input(d, folder, tables)), "-o", out + ".toml", *fmt,
                "--base", d.choice(["chat", "coding", "chat", "rag", "kv-transfer"])]
    if reader == "compare":
        a = trace_input(d, folder, tables)
        b = folder / ("b" + a.name)
        a.rename(b)
        plot = ["--plot", out + ".png"] if d.int(0, 9) == 0 else []  # draws: ten times slower
        return ["compare", str(b), str(trace_input(d, folder, tables)), *plot]
    if reader == "trace":
        return ["generate", d.choice(BUILTINS[:3]), "--trace", str(trace_input(d, folder, tables)),
                "-o", out + ".pcap", "--duration", "5s"]
    if reader == "override":
        ts = [a for _ in range(d.int(1, 3)) for a in ("-t", override(d, keys))]
        return ["generate", d.choice(BUILTINS), *ts, "-o", out + ".pcap", "--duration", "2s"]
    (folder / "s.toml").write_text(scenario_text(d, keys, folder))
    return ["generate", str(folder / "s.toml"), "-o", out + ".pcap", "--duration", "2s"]


# case i's reader is READERS[i % 15]: plot (a PNG drawn: ten times slower) once in 15
READERS = ("inspect", "replay", "fit", "compare", "trace", "override", "scenario") * 2 + ("plot",)


class Hang(BaseException):
    """A case ran past its time."""


class Validated(BaseException):
    """``generate`` got past loading and checking its inputs (the stub of the run itself)."""


@dataclass
class Outcome:
    status: object  # int, or "hang"
    out: str
    err: str


@contextlib.contextmanager
def stubs(real: bool):
    """What an in-process case does not do: compile kernels, run the generation (unless
    ``real``), send frames (``replay`` reads the whole file in ``prepare()``, then stops)."""
    import trafficgen.api as api
    import trafficgen.cli.compiling as compiling
    import trafficgen.cli.replay as replay
    saved = api.generate, compiling.compile_first, replay.run_and_report

    def stopped(*a, **k):
        raise Validated

    def prepared(r, args):
        r.prepare()
        r.iface.close()
        return 0
    if not real:
        api.generate, compiling.compile_first = stopped, (lambda *a, **k: None)
    replay.run_and_report = prepared
    try:
        yield
    finally:
        api.generate, compiling.compile_first, replay.run_and_report = saved


def run_cli(argv: list[str], timeout: float = 30.0, real: bool = False) -> Outcome:
    """``trafficgen.cli.main.main(argv)`` in this process, stdout and stderr captured, bounded
    by ``timeout`` seconds."""
    import warnings

    from trafficgen.cli.main import main

    def alarm(signum, frame):
        raise Hang
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with stubs(real), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings():
            warnings.simplefilter("default")
            try:
                status = main(argv)
            except Validated:
                status = 0
            except SystemExit as e:
                status = e.code
    except Hang:
        status = "hang"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return Outcome(status, out.getvalue(), err.getvalue())


def broken(o: Outcome) -> str | None:
    """What promise ``o`` broke, or None: exit 0 (stderr only ``warning:`` lines) or exit 2 and
    exactly one ``error: ...`` line; no traceback, no "unexpected", no other status."""
    lines = o.err.splitlines()
    if o.status == "hang":
        return "hang"
    for word in ("Traceback", "unexpected", "Exception ignored", "RuntimeWarning", "encountered in"):
        if word in o.err:
            return f"stderr has {word!r}"
    if o.status == 0:  # warnings, and a first run's progress line (helpers.without_compiling)
        bad = [ln for ln in lines if not ln.startswith(("warning: ", "compiling kernels"))]
        return f"exit 0 with stderr lines {bad[:2]}" if bad else None
    if o.status == 2:
        if len(lines) != 1 or not lines[0].startswith("error: ") or len(lines[0]) < 16:
            return f"exit 2 with stderr {lines[:3]}"
        return None
    return f"exit {o.status}"


def run_case(reader: str, d: Draw, folder: Path, tables: dict, keys, real: bool = False):
    """Build and run one case; returns (argv, outcome, what broke or None)."""
    argv = case_argv(reader, d, folder, tables, keys)
    o = run_cli(argv, real=real)
    return argv, o, broken(o)


def seeded(seed: int, case: int) -> Draw:
    return Draw(random.Random(f"{seed}:{case}"))
