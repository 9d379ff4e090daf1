"""The generated statistics of every class beside the published figures and the real traces
they were fitted to: the table in the README ("How close the models are").

    python bench/model_figures.py              # markdown table on stdout (about a minute)
    python bench/model_figures.py --json

Each class runs its built-in scenario, request tables only, for an hour (chat and coding at
the Azure traces' own rates, so arrival burstiness compares like with like); the traces are
the project's (traces/, compressed), or those in $TRAFFICGEN_TRACES where it names a folder that
has them.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

import trafficgen as tg
from trafficgen.analysis.stats import arrival_stats
from trafficgen.traces.read import read_trace

S = 10**9
TRACES = ([Path(os.environ["TRAFFICGEN_TRACES"])] if os.environ.get("TRAFFICGEN_TRACES") else []) \
    + [Path(__file__).resolve().parents[1] / "traces"]


def requests(name: str, over: list[str], duration: str, folder: Path, seed: int = 1) -> dict:
    sc = tg.load_scenario(name, over, duration=duration, seed=seed)
    path = folder / f"{name}-{seed}.parquet"
    tg.generate(sc, requests=path)
    t = pq.read_table(path)
    out = {c: t.column(c).to_numpy() for c in ("start_ns", "prompt_tokens", "output_tokens",
                                                "reasoning_tokens", "images", "session_id",
                                                "turn", "bytes_up", "bytes_down")}
    for c in ("kind", "class"):
        out[c] = np.asarray(t.column(c).cast("string").to_numpy(zero_copy_only=False))
    return out


def azure(name: str):
    """An Azure trace's requests (``name`` uncompressed; found plain or compressed), or None."""
    found = [d / (name + ext) for d in TRACES for ext in ("", ".gz", ".xz", ".bz2")
             if (d / (name + ext)).is_file()]
    if not found:
        return None
    tr = read_trace(found[0])
    return {"start_ns": tr.times_ns, "prompt_tokens": tr.prompt, "output_tokens": tr.output}


def q(x, p):
    return float(np.quantile(x, p)) if len(x) else None


def arrival_rows(cls, ours, trace, source):
    a = arrival_stats(np.sort(ours["start_ns"]))
    b = arrival_stats(trace["start_ns"]) if trace else None
    rows = [(cls, "arrivals: gap cv", a["gap_cv"], b and b["gap_cv"], source)]
    for s in ("1s", "10s", "60s"):
        rows.append((cls, f"arrivals: IDC {s}", a["idc"][s], b and b["idc"][s], source))
    rows.append((cls, "arrivals: Hurst", a["hurst"], b and b["hurst"], source))
    return rows


def token_rows(cls, ours, trace, published, source):
    rows = []
    for col, qs in published.items():
        for p, want in qs:
            got = q(ours[col], p)
            if trace is not None:
                want = q(trace[col], p)
            rows.append((cls, f"{col.replace('_', ' ')} p{int(p * 100)}", got, want, source))
    return rows


def figures(folder: Path) -> list[tuple]:
    rows = []
    conv, code = azure("azure-llm-2023-conv.csv"), azure("azure-llm-2023-code.csv")
    src_conv, src_code = "Azure 2023 conv trace", "Azure 2023 code trace"
    chat = requests("chat", ["chat.rate=5.38/s"], "1h", folder)
    rows += token_rows("chat", chat, conv, {"prompt_tokens": [(0.5, 1020), (0.9, 2735), (0.99, 4142)],
                                            "output_tokens": [(0.5, 129), (0.9, 424), (0.99, 601)]}, src_conv)
    rows += arrival_rows("chat", chat, conv, src_conv)
    coding = [requests("coding", ["coding.rate=2.45/s"], "1h", folder, seed) for seed in (1, 2, 3, 4)]
    pooled = {k: np.concatenate([c[k] for c in coding]) for k in ("prompt_tokens", "output_tokens")}
    rows += token_rows("coding", pooled, code, {"prompt_tokens": [(0.5, 1469), (0.9, 5188)],
                                                "output_tokens": [(0.5, 13), (0.9, 55)]}, src_code)
    stats = [arrival_stats(np.sort(c["start_ns"])) for c in coding]
    tr = arrival_stats(code["start_ns"]) if code else None
    med = lambda f: float(np.median([f(s) for s in stats]))  # noqa: E731
    rows.append(("coding", "arrivals: gap cv (median of 4 seeds)", med(lambda s: s["gap_cv"]), tr and tr["gap_cv"],
                 src_code))
    for s in ("1s", "10s", "60s"):
        rows.append(("coding", f"arrivals: IDC {s} (median of 4)", med(lambda x, s=s: x["idc"][s]),
                     tr and tr["idc"][s], src_code))
    rows.append(("coding", "arrivals: Hurst (median of 4)", med(lambda s: s["hurst"]), tr and tr["hurst"], src_code))

    r = requests("reasoning", ["reasoning.rate=20/s"], "1h", folder)
    sg = "ServeGen (DeepSeek-R1)"
    rows += [("reasoning", "output tokens median", q(r["output_tokens"], 0.5), 792, sg),
             ("reasoning", "output tokens mean", float(r["output_tokens"].mean()), 1527, sg),
             ("reasoning", "output tokens p99", q(r["output_tokens"], 0.99), 12607, sg),
             ("reasoning", "share of outputs >= 8K tokens", float(np.mean(r["output_tokens"] >= 8000)), 0.04, sg),
             ("reasoning", "reasoning share of output, mean",
              float(np.mean(r["reasoning_tokens"] / r["output_tokens"])), 0.70, sg),
             ("reasoning", "prompt tokens median", q(r["prompt_tokens"], 0.5), 208, sg),
             ("reasoning", "prompt tokens p90", q(r["prompt_tokens"], 0.9), 2092, sg)]
    m = requests("multimodal", ["multimodal.rate=10/s"], "1h", folder)
    img = m["images"][m["kind"] == "llm"]
    sq = "ServeGen (Qwen-VL)"
    for k, want in ((1, 0.80), (2, 0.07), (3, 0.08), (4, 0.02)):
        rows.append(("multimodal", f"requests with {k} image{'s' if k > 1 else ''}", float(np.mean(img == k)),
                     want, sq))
    rows.append(("multimodal", "requests with 5+ images", float(np.mean(img >= 5)), 0.03, sq))
    a = requests("agentic", [], "2h", folder)
    llm, tool = a["kind"] == "llm", a["kind"] == "tool"
    turns = np.unique(a["session_id"] * 4096 + a["turn"]).shape[0]
    cp = "Copilot coding agent 2026"
    rows += [("agentic", "LLM calls per turn", llm.sum() / turns, 7.83, cp),
             ("agentic", "tool calls per turn", tool.sum() / turns, 7.3, cp),
             ("agentic", "prompt tokens per LLM call, mean", float(a["prompt_tokens"][llm].mean()), 68000, cp),
             ("agentic", "output tokens per LLM call, mean", float(a["output_tokens"][llm].mean()), 527, cp),
             ("agentic", "bytes up / down of LLM calls", a["bytes_up"][llm].sum() / a["bytes_down"][llm].sum(),
              270 / 150, "MODELS.md (~270 KB up, ~150 KB down)")]
    g = requests("rag", [], "1h", folder)
    search = g["kind"] == "search"
    rows += [("rag", "reranked share of retrievals", (g["kind"] == "rerank").sum() / search.sum(), 0.6,
              "rag.toml (est)"),
             ("rag", "chunk tokens per search, median", q(g["output_tokens"][search], 0.5), 5 * 768,
              "top-k 2-10 x 512-1,024 tokens (MODELS.md)")]
    return rows


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float) and abs(v) < 10:
        return f"{v:.2f}"
    return f"{v:,.0f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tg-figures-") as tmp:
        rows = figures(Path(tmp))
    if args.json:
        print(json.dumps([dict(zip(("class", "figure", "generated", "target", "source"), r)) for r in rows], indent=2))
        return 0
    print("| class | figure | generated | published / trace | source |")
    print("|---|---|---:|---:|---|")
    for cls, name, got, want, src in rows:
        print(f"| {cls} | {name} | {fmt(got)} | {fmt(want)} | {src} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
