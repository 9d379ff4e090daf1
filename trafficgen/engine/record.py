"""Record ``kernels.json``: the plan of every built-in scenario (see ``engine.signatures``).

    python -m trafficgen.engine.compile --record

Each built-in scenario runs (at its own duration, to a pcap) in a process of its own with an
empty numba cache, so every function it uses is compiled and listed; then chat once more to a
pcapng and once with the Parquet tables, and enterprise-mix (its ``[network]`` section), for
what those add. About three minutes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from trafficgen.kernels.jit import set_compile_hook

from .signatures import MANIFEST, Recorder

BUILTINS = ("chat", "coding", "reasoning", "multimodal", "agentic", "rag", "kv-transfer")
OUTPUTS = {"pcapng": ["--pcapng"], "tables": ["--tables"]}
NETWORK = ("enterprise-mix", ("chat", "coding", "reasoning", "multimodal", "agentic", "rag"))


def record_one(argv: list[str]) -> int:
    """``--record-one NAME OUT.json [--pcapng] [--tables]``: run NAME here, list its compiles."""
    name, out = argv[0], argv[1]
    recorder = Recorder()
    set_compile_hook(recorder)
    from trafficgen.config.scenario import load_scenario
    from trafficgen.sinks.outputs import open_sinks

    from .build import make_engine
    from .core import DEFAULT_BATCH_PACKETS, DEFAULT_WINDOW_NS
    scenario = load_scenario(name)
    with tempfile.TemporaryDirectory() as d:  # what api.generate does in one process
        outputs = {"capture": f"{d}/c.pcapng" if "--pcapng" in argv else f"{d}/c.pcap"}
        if "--tables" in argv:
            outputs.update(flows=f"{d}/f.parquet", requests=f"{d}/r.parquet", packets=f"{d}/p.parquet")
        with open_sinks(scenario, outputs) as sinks:
            for batch in make_engine(scenario, True, DEFAULT_BATCH_PACKETS, DEFAULT_WINDOW_NS):
                sinks.write(batch)
            sinks.finish()
    set_compile_hook(None)
    Path(out).write_text(json.dumps(recorder.entries))
    return 0


def _run(name: str, flags: list[str]) -> list:
    with tempfile.TemporaryDirectory(prefix="trafficgen-record-") as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(d, "cache"))
        env.pop("TRAFFICGEN_NO_KERNEL_CACHE", None)
        out = os.path.join(d, "plan.json")
        subprocess.run([sys.executable, "-m", "trafficgen.engine.compile", "--record-one", name, out,
                        *flags], env=env, check=True)
        return json.loads(Path(out).read_text())


def record_all() -> dict:
    """The manifest: every entry once (``entries``), and per built-in scenario and output the
    positions of its entries, in the order they were compiled."""
    entries: list = []
    index: dict = {}

    def positions(plan: list) -> list[int]:
        out = []
        for name, specs, top, cost in plan:
            key = json.dumps([name, specs])
            if key not in index:
                index[key] = len(entries)
                entries.append([name, specs, False, 0])
            e = entries[index[key]]
            e[2], e[3] = e[2] or top, max(e[3], cost)  # top-level in one scenario or another
            if index[key] not in out:  # (two threads may have asked for it at once)
                out.append(index[key])
        return out

    scenarios = {}
    for name in BUILTINS:
        print(f"recording {name}", file=sys.stderr)
        scenarios[name] = positions(_run(name, []))
    outputs = {}
    base = set(scenarios["chat"])
    for what, flags in OUTPUTS.items():
        print(f"recording chat with {what}", file=sys.stderr)
        outputs[what] = [i for i in positions(_run("chat", flags)) if i not in base]
    name, classes = NETWORK  # a [network] section: what it adds to its classes' own
    print(f"recording {name} (its [network] section)", file=sys.stderr)
    base = {i for c in classes for i in scenarios[c]}
    outputs["network"] = [i for i in positions(_run(name, [])) if i not in base]
    return {"entries": entries, "scenarios": scenarios, "outputs": outputs}


def dumps(m: dict) -> str:
    """One entry a line: a changed kernel signature is a one-line diff."""
    lines = ["{", '"entries": [']
    lines += [json.dumps(e) + ("," if i < len(m["entries"]) - 1 else "") for i, e in enumerate(m["entries"])]
    lines += ["],", '"scenarios": ' + json.dumps(m["scenarios"]) + ",",
              '"outputs": ' + json.dumps(m["outputs"]), "}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if argv[0] == "--record-one":
        return record_one(argv[1:])
    MANIFEST.write_text(dumps(record_all()))
    print(f"wrote {MANIFEST}", file=sys.stderr)
    return 0
