"""The statistics a user checks a traffic model with: arrival burstiness across time scales
(coefficient of variation of the gaps, index of dispersion of counts, a Hurst estimate) and the
per-class summary of a request table (``trafficgen inspect requests.parquet --stats``).

Index of dispersion of counts, IDC(s) = Var(N_s) / E(N_s) for counts N_s per window of s
seconds: 1 for Poisson at every scale; a renewal process tends to cv**2 as s grows; real LLM
request streams keep growing with s (long-range dependence). The Hurst exponent H comes from the
aggregated-variance method: the variance of the mean count over blocks of m bins falls as
m**(2H - 2); H = 0.5 without memory, above 0.5 with long-range dependence.
"""
from __future__ import annotations

import math

import numpy as np

IDC_SCALES_S = (1, 10, 60)
HURST_BIN_S = 0.1
# counts of at most this many windows are held at once (128 MiB): a longer span has no IDC at
# that scale, and its Hurst estimate counts per wider bins (a trace of years at 0.1 s asked 13 GiB)
MAX_WINDOWS = 1 << 24


def gap_cv(times_ns: np.ndarray) -> float | None:
    """Coefficient of variation of the gaps between sorted arrival times."""
    if times_ns.shape[0] < 3:
        return None
    gaps = np.diff(times_ns).astype(np.float64)
    mean = gaps.mean()
    return float(gaps.std() / mean) if mean > 0 else None


def counts(times_ns: np.ndarray, scale_s: float, t0: int | None = None,
           t1: int | None = None) -> np.ndarray:
    """Arrivals per whole window of ``scale_s`` seconds from ``t0`` (a partial last window is
    left out); none (an empty array) beyond :data:`MAX_WINDOWS` windows."""
    t0 = int(times_ns[0]) if t0 is None else t0
    t1 = int(times_ns[-1]) + 1 if t1 is None else t1
    width = int(round(scale_s * 1e9))
    n = (t1 - t0) // width
    if n <= 0 or n > MAX_WINDOWS:
        return np.zeros(0, np.int64)
    idx = (times_ns[(times_ns >= t0) & (times_ns < t0 + n * width)] - t0) // width
    return np.bincount(idx.astype(np.int64), minlength=n)


def idc(times_ns: np.ndarray, scale_s: float, min_windows: int = 5, **span) -> float | None:
    """Index of dispersion of counts per ``scale_s`` window (None with fewer than
    ``min_windows`` whole windows or no arrivals)."""
    if times_ns.shape[0] < 2:
        return None
    c = counts(times_ns, scale_s, **span)
    if c.shape[0] < min_windows or c.mean() == 0:
        return None
    return float(c.var(ddof=1) / c.mean())


def hurst(times_ns: np.ndarray, bin_s: float = HURST_BIN_S, **span) -> float | None:
    """Aggregated-variance Hurst estimate of the counts per ``bin_s``, over aggregation levels
    from 1 bin to a tenth of the series (None if the series is too short)."""
    if times_ns.shape[0] < 10:
        return None
    t0, t1 = span.get("t0"), span.get("t1")
    width_ns = ((int(times_ns[-1]) + 1 if t1 is None else t1) - (int(times_ns[0]) if t0 is None else t0))
    bin_s = max(bin_s, width_ns / 1e9 / MAX_WINDOWS * 1.001)  # at most MAX_WINDOWS bins
    x = counts(times_ns, bin_s, **span).astype(np.float64)
    if x.shape[0] < 200 or x.var() == 0:
        return None
    ms, vs = [], []
    m = 1
    while x.shape[0] // m >= 10:
        k = x.shape[0] // m
        agg = x[: k * m].reshape(k, m).mean(axis=1)
        v = agg.var(ddof=1)
        if v > 0:
            ms.append(math.log(m))
            vs.append(math.log(v))
        m = max(m + 1, int(m * 1.6))
    if len(ms) < 4:
        return None
    slope = np.polyfit(ms, vs, 1)[0]
    return float(min(max(1 + slope / 2, 0.0), 1.5))


def arrival_stats(times_ns: np.ndarray, **span) -> dict:
    """Rate, gap cv, IDC at 1/10/60 s and a Hurst estimate of sorted arrival times."""
    t = np.sort(np.asarray(times_ns, np.int64))
    n = t.shape[0]
    dur = float(t[-1] - t[0]) / 1e9 if n > 1 else 0.0
    return {"arrivals": int(n), "span_s": dur, "rate_per_s": n / dur if dur > 0 else None,
            "gap_cv": gap_cv(t),
            "idc": {f"{s}s": idc(t, s, **span) for s in IDC_SCALES_S},
            "hurst": hurst(t, **span)}


def _q(x: np.ndarray, q: float):
    return float(np.quantile(x, q)) if x.shape[0] else None


def request_stats(cols: dict[str, np.ndarray]) -> dict:
    """Per class: request count, token medians and p90s, bytes up and down, arrival statistics
    of the class's first kind of call (LLM calls; a retrieval's embed calls; transfers), and
    for sessions with turns the calls of each kind per turn. ``cols``: numpy columns of a
    request table (class and kind as strings)."""
    from trafficgen.schema import KINDS
    out = {}
    for name in sorted(set(cols["class"].tolist())):
        sel = cols["class"] == name
        kinds = [k for k in KINDS if (sel & (cols["kind"] == k)).any()]
        llm = sel & (cols["kind"] == "llm")
        head = sel & (cols["kind"] == kinds[0]) if kinds else llm
        row = {"requests": int(sel.sum()), "llm_calls": int(llm.sum()),
               "kinds": {k: int((sel & (cols["kind"] == k)).sum()) for k in kinds}}
        for tok in ("prompt_tokens", "output_tokens"):
            x = cols[tok][head]
            row[tok] = {"median": _q(x, 0.5), "p90": _q(x, 0.9), "mean": float(x.mean()) if x.size else None}
        if "reasoning_tokens" in cols and cols["reasoning_tokens"][llm].any():
            x = cols["reasoning_tokens"][llm]
            share = x / np.maximum(cols["output_tokens"][llm], 1)
            row["reasoning_tokens"] = {"median": _q(x, 0.5), "p90": _q(x, 0.9),
                                       "mean_share": float(share.mean())}
        if "images" in cols and cols["images"][sel].any():
            x = cols["images"][sel]
            row["images"] = {"mean": float(x.mean()), "share_with": float((x > 0).mean())}
        for b in ("bytes_up", "bytes_down"):
            x = cols[b][sel]
            row[b] = {"total": int(x.sum()), "median": _q(x, 0.5), "p90": _q(x, 0.9)}
        row["arrivals_of"] = kinds[0] if kinds else None
        row["arrivals"] = arrival_stats(cols["start_ns"][head]) if head.any() else None
        turn_key = cols["session_id"][sel] * (1 << 20) + cols["turn"][sel]
        if turn_key.shape[0]:
            turns = np.unique(turn_key).shape[0]
            per_kind = {k: float((cols["kind"][sel] == k).sum() / turns) for k in kinds}
            row["per_turn"] = {"turns": int(turns), "llm_calls": per_kind.get("llm", 0.0),
                               "tool_calls": per_kind.get("tool", 0.0)}
            if set(kinds) - {"llm", "tool"}:
                row["per_turn"]["calls"] = per_kind
        if "status" in cols:  # (a table of another tool may have status without retries)
            retries = cols["retries"][sel] if "retries" in cols else np.zeros(int(sel.sum()), np.int64)
            row["status"] = status_rates(cols["status"][sel], retries)
        out[name] = row
    return out


def status_rates(status: np.ndarray, retries: np.ndarray) -> dict:
    """How a class's requests ended: each status's share of its requests (attempts: a call
    answered 429 and retried is two rows), and the share of rows that are retries."""
    from trafficgen.schema import STATUSES
    n = max(status.shape[0], 1)
    return {"shares": {s: float((status == s).sum() / n) for s in STATUSES},
            "retried": float((retries > 0).sum() / n)}


def format_request_stats(stats: dict) -> list[tuple[str, str]]:
    """``name: value`` rows for the text report."""
    def num(v, fmt="{:,.0f}"):
        return "-" if v is None else fmt.format(v)

    rows = []
    for name, r in stats.items():
        kinds = ", ".join(f"{n:,} {k}" for k, n in r["kinds"].items())
        rows.append((f"{name} requests", f"{r['requests']:,} ({kinds})"))
        for tok in ("prompt_tokens", "output_tokens"):
            t = r[tok]
            if not t["mean"]:
                continue
            rows.append((f"{name} {tok.replace('_', ' ')}",
                         f"median {num(t['median'])}, p90 {num(t['p90'])}, mean {num(t['mean'], '{:,.1f}')}"))
        if r.get("reasoning_tokens"):
            t = r["reasoning_tokens"]
            rows.append((f"{name} reasoning tokens", f"median {num(t['median'])}, p90 {num(t['p90'])}, "
                                                     f"mean share of output {t['mean_share']:.2f}"))
        if r.get("images"):
            rows.append((f"{name} images", f"{r['images']['mean']:.2f} per request "
                                           f"({r['images']['share_with']:.0%} with any)"))
        rows.append((f"{name} bytes up / down",
                     f"{r['bytes_up']['total']:,} / {r['bytes_down']['total']:,} "
                     f"(median per request {num(r['bytes_up']['median'])} / {num(r['bytes_down']['median'])})"))
        a = r["arrivals"]
        if a:
            idcs = ", ".join(f"{k} {num(v, '{:.2f}')}" for k, v in a["idc"].items())
            rows.append((f"{name} arrivals" + (f" ({r['arrivals_of']})" if r["arrivals_of"] != "llm" else ""),
                         f"{num(a['rate_per_s'], '{:.2f}')}/s, gap cv {num(a['gap_cv'], '{:.2f}')}, "
                         f"IDC {idcs}, Hurst {num(a['hurst'], '{:.2f}')}"))
        if r.get("status"):
            shares = ", ".join(f"{k} {v:.1%}" for k, v in r["status"]["shares"].items() if v > 0)
            rows.append((f"{name} status", f"{shares}; retries {r['status']['retried']:.1%} of requests"))
        if r.get("per_turn"):
            p = r["per_turn"]
            if "calls" in p:
                calls = ", ".join(f"{v:.2f} {k}" for k, v in p["calls"].items())
            else:
                calls = f"{p['llm_calls']:.2f} LLM calls, {p['tool_calls']:.2f} tool calls"
            rows.append((f"{name} per turn", f"{calls} ({p['turns']:,} turns)"))
    return rows


PACKET_STATS_COLUMNS = ("class", "payload_len", "retransmit", "lost", "gap")
PATH_COLUMNS = ("reordered", "duplicate")  # counted where the table has them (since 2026-12)


def packet_stats(cols: dict[str, np.ndarray]) -> dict:
    """Per class of a packet table: frames, data frames (with payload), retransmitted ones
    and their share of the data frames, frames lost after the tap, gaps (frames after new
    bytes lost before the tap) and the share of frames lost (after the tap, plus one per gap:
    a lower bound, as a burst before the tap or a lost pure ACK there leaves no more trace)."""
    out = {}
    for name in sorted(set(cols["class"].tolist())):
        sel = cols["class"] == name
        data = sel & (cols["payload_len"] > 0)
        nd = int(data.sum())
        retx = int((data & cols["retransmit"]).sum())
        lost = int((sel & (cols["lost"] > 0)).sum())
        gaps = int((sel & cols["gap"]).sum())
        out[name] = {"frames": int(sel.sum()), "data_frames": nd, "retransmits": retx,
                     "retransmit_rate": retx / nd if nd else None, "lost_after_tap": lost,
                     "gaps": gaps, "loss_rate": (lost + gaps) / (int(sel.sum()) + gaps)}
        for k in PATH_COLUMNS:
            if k in cols:
                out[name][k] = int((sel & cols[k]).sum())
    return out


def format_packet_stats(stats: dict) -> list[tuple[str, str]]:
    """``name: value`` rows for the text report of :func:`packet_stats`."""
    rows = []
    for name, r in stats.items():
        pct = "-" if r["retransmit_rate"] is None else f"{r['retransmit_rate']:.2%}"
        loss = "-" if r["loss_rate"] is None else f"{r['loss_rate']:.2%}"
        rows.append((f"{name} frames", f"{r['frames']:,} ({r['data_frames']:,} with data)"))
        rows.append((f"{name} retransmissions", f"{r['retransmits']:,} ({pct} of data frames)"))
        rows.append((f"{name} losses", f"{r['lost_after_tap']:,} after the tap, {r['gaps']:,} gaps "
                                       f"before it (loss {loss})"))
        if "reordered" in r:
            rows.append((f"{name} path", f"{r['reordered']:,} frames held back (reordered), "
                                         f"{r['duplicate']:,} duplicate copies captured"))
    return rows
