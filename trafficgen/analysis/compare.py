"""Two request sets side by side: ``trafficgen compare A B [--json] [--plot out.png]``.

Each side is anything ``trafficgen.traces.read_trace`` reads: a trace (Azure, Mooncake,
BurstGPT, generic) or a request table we generated (its LLM calls). Per side: requests, span,
rate, token quantiles and means, and the arrivals' gap cv, index of dispersion at 1/10/60 s and
Hurst estimate (``trafficgen.stats``); between them, two-sample Kolmogorov-Smirnov distances of
the prompt and output token distributions and of the inter-arrival gaps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from trafficgen.traces.read import read_trace
from trafficgen.traces.trace import Trace

from .stats import arrival_stats

QUANTILES = (0.1, 0.5, 0.9, 0.99)


def ks_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return None
    a, b = np.sort(a), np.sort(b)
    x = np.concatenate((a, b))
    fa = np.searchsorted(a, x, "right") / a.shape[0]
    fb = np.searchsorted(b, x, "right") / b.shape[0]
    return float(np.abs(fa - fb).max())


def summary(tr: Trace) -> dict:
    """One side's figures (JSON-ready)."""
    a = arrival_stats(tr.times_ns)
    out = {"file": tr.path, "format": tr.format, "requests": len(tr), "span_s": a["span_s"],
           "rate_per_s": a["rate_per_s"], "gap_cv": a["gap_cv"], "idc": a["idc"],
           "hurst": a["hurst"]}
    for name, x in (("prompt_tokens", tr.prompt), ("output_tokens", tr.output)):
        out[name] = {f"p{round(q * 100)}": float(np.quantile(x, q)) for q in QUANTILES}
        out[name]["mean"] = float(x.mean())
    if tr.cached is not None:
        out["cached_share"] = float(tr.cached.sum() / max(tr.prompt.sum(), 1))
    return out


def compare(a, b) -> dict:
    """Compare two request sets (paths or :class:`Trace`)."""
    ta = a if isinstance(a, Trace) else read_trace(a)
    tb = b if isinstance(b, Trace) else read_trace(b)
    return {"a": summary(ta), "b": summary(tb),
            "ks": {"prompt_tokens": ks_distance(ta.prompt, tb.prompt),
                   "output_tokens": ks_distance(ta.output, tb.output),
                   "gaps": ks_distance(np.diff(ta.times_ns), np.diff(tb.times_ns))}}


def _num(v, fmt="{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def format_compare(c: dict) -> str:
    """The text table."""
    a, b = c["a"], c["b"]
    rows = [("", Path(a["file"]).name, Path(b["file"]).name),
            ("format", a["format"], b["format"]),
            ("requests", _num(a["requests"]), _num(b["requests"])),
            ("span", _num(a["span_s"], "{:,.1f} s"), _num(b["span_s"], "{:,.1f} s")),
            ("rate", _num(a["rate_per_s"], "{:.3f}/s"), _num(b["rate_per_s"], "{:.3f}/s"))]
    for tok in ("prompt_tokens", "output_tokens"):
        label = tok.replace("_", " ")
        for q in [f"p{round(x * 100)}" for x in QUANTILES] + ["mean"]:
            rows.append((f"{label} {q}", _num(a[tok][q]), _num(b[tok][q])))
    rows.append(("gap cv", _num(a["gap_cv"], "{:.2f}"), _num(b["gap_cv"], "{:.2f}")))
    for s in a["idc"]:
        rows.append((f"IDC {s}", _num(a["idc"][s], "{:.2f}"), _num(b["idc"][s], "{:.2f}")))
    rows.append(("Hurst", _num(a["hurst"], "{:.2f}"), _num(b["hurst"], "{:.2f}")))
    if "cached_share" in a or "cached_share" in b:
        rows.append(("cached share of prompt tokens", _num(a.get("cached_share"), "{:.3f}"),
                     _num(b.get("cached_share"), "{:.3f}")))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{r[0]:<{w0}}  {r[1]:>{w1}}  {r[2]:>}" for r in rows]
    ks = c["ks"]
    lines.append(f"{'KS distance':<{w0}}  prompt tokens {_num(ks['prompt_tokens'], '{:.4f}')}, "
                 f"output tokens {_num(ks['output_tokens'], '{:.4f}')}, "
                 f"inter-arrival gaps {_num(ks['gaps'], '{:.4f}')}")
    return "\n".join(lines)
