"""Pictures of a run: ``trafficgen plot FILE -o out.png`` and ``compare A B --plot out.png``.

A capture (pcap, pcapng) is read in chunks by the same scan kernels as ``inspect`` and reduced
as it goes (bytes per second by transport, a packet-size histogram, bytes and first packet
per flow), so memory is bounded by the flows, not the packets. A capture has no class labels:
its throughput is split by transport (TCP, UDP, other); a packet table (``--packets``) has
them. Parquet tables are read a record batch at a time. matplotlib draws, headless (Agg); it
is the ``plot`` extra (``pip install 'trafficgen-ai[plot]'``). The PNG is written under a
temporary name and renamed when whole.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from trafficgen.errors import TrafficgenError

from .figures import NS, capture_figures, table_figures

MAX_POINTS = 600


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise TrafficgenError("plotting needs matplotlib: pip install 'trafficgen-ai[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, out) -> None:
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise TrafficgenError(f"{out}: the plot is a PNG: name it .png")
    from trafficgen.sinks import check_writable
    check_writable(out)
    tmp = out.with_name(f".{out.name}.part")
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def _rebin(per_s: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-second values -> at most MAX_POINTS bins (mean per second over each); bin width s."""
    w = max(1, -(-per_s.shape[-1] // MAX_POINTS))
    n = -(-per_s.shape[-1] // w)
    pad = np.zeros(per_s.shape[:-1] + (n * w,))
    pad[..., :per_s.shape[-1]] = per_s
    return pad.reshape(per_s.shape[:-1] + (n, w)).mean(axis=-1), float(w)


def _time_axis(ax, n_bins: int, width_s: float):
    x = (np.arange(n_bins) + 0.5) * width_s
    if x.shape[0] and x[-1] > 3 * 3600:
        ax.set_xlabel("time from start (h)")
        return x / 3600
    if x.shape[0] and x[-1] > 600:
        ax.set_xlabel("time from start (min)")
        return x / 60
    ax.set_xlabel("time from start (s)")
    return x


def _ccdf(ax, values, label):
    v = np.sort(np.asarray(values, np.float64))
    v = v[v > 0]
    if v.shape[0] == 0:
        return
    ax.step(v, 1.0 - np.arange(v.shape[0]) / v.shape[0], where="post", label=label)


def _cdf(ax, values, label, **kw):
    v = np.sort(np.asarray(values, np.float64))
    if v.shape[0] == 0:
        return
    ax.step(np.maximum(v, 0.5), np.arange(1, v.shape[0] + 1) / v.shape[0], where="post",
            label=label, **kw)


def _figure(plt, title):
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    fig.suptitle(title, fontsize=13)
    return fig, axes


def _mantissa(v: float) -> int:
    return int(round(v / 10 ** np.floor(np.log10(v)))) if v > 0 else 0


def _short_number(v: float) -> str:
    """1500 -> 1.5k, 2e6 -> 2M, 0.01 -> 0.01: tick labels that never crowd."""
    if v <= 0:
        return "0"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def _finish_ax(ax, title, ylabel=None, legend=True):
    from matplotlib.ticker import FuncFormatter, NullFormatter
    for axis, lim, scale in ((ax.xaxis, ax.get_xlim(), ax.get_xscale()),
                             (ax.yaxis, ax.get_ylim(), ax.get_yscale())):
        if scale != "log" or lim[0] <= 0:
            continue
        axis.set_major_formatter(FuncFormatter(lambda v, _: _short_number(v)))
        if lim[1] / lim[0] > 300:  # several decades: label those only
            axis.set_minor_formatter(NullFormatter())
        else:  # within two decades: label the 2s and 5s too, compactly
            axis.set_minor_formatter(FuncFormatter(
                lambda v, _: _short_number(v) if _mantissa(v) in (2, 5) else ""))
    ax.set_title(title, fontsize=11)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3, which="both")
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=9)


def _empty(ax, title, why):
    ax.set_title(title, fontsize=11)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def _throughput(ax, per_s_bytes: dict, title):
    names = [k for k, v in per_s_bytes.items() if v.sum() > 0]
    if not names:
        return _empty(ax, title, "no bytes")
    n = max(per_s_bytes[k].shape[0] for k in names)
    stack = np.zeros((len(names), n))
    for i, k in enumerate(names):
        stack[i, :per_s_bytes[k].shape[0]] = per_s_bytes[k]
    binned, w = _rebin(stack * 8 / 1e6)
    x = _time_axis(ax, binned.shape[1], w)
    ax.stackplot(x, binned, labels=names, step="mid", alpha=0.85)
    _finish_ax(ax, title + (f" ({w:g} s bins)" if w > 1 else " (1 s bins)"), "Mbit/s")


def _arrivals(ax, per_s_counts: dict, title, unit):
    names = [k for k, v in per_s_counts.items() if v.sum() > 0]
    if not names:
        return _empty(ax, title, f"no {unit}")
    n = max(per_s_counts[k].shape[0] for k in names)
    for k in names:
        c = np.zeros(n)
        c[:per_s_counts[k].shape[0]] = per_s_counts[k]
        b, w = _rebin(c)
        ax.plot(_time_axis(ax, b.shape[0], w), b, label=k, lw=1)
    _finish_ax(ax, title, f"{unit} per second")


def plot_file(path, out) -> dict:
    """Plot a capture or one of our Parquet tables into ``out`` (PNG); returns what was drawn."""
    path = Path(path)
    from .report import inspect_capture
    info = inspect_capture(path)  # checks the file and says what it is (one-line errors)
    plt = _plt()
    if info.get("format") in ("pcap", "pcapng"):
        figs = capture_figures(path)
        size_title, size_unit = "packet sizes", "bytes on the wire"
    else:
        figs = table_figures(path)
        size_title = figs["size_title"]
        size_unit = "tokens" if figs["table"] == "requests" else "bytes on the wire"
    fig, ax = _figure(plt, f"{path.name}: {info.get('format', '')} {figs.get('table', '')}".strip())
    _throughput(ax[0, 0], figs["throughput"], f"throughput by {figs['by'].split(' (')[0]}")
    if "(" in figs["by"]:
        ax[0, 0].annotate(figs["by"].split(" (", 1)[1].rstrip(")"), (0, -0.16), fontsize=8,
                          xycoords="axes fraction", color="0.35")
    for name, v in figs["sizes"].items():
        _cdf(ax[0, 1], v, name)
    ax[0, 1].set_xscale("log")
    ax[0, 1].set_xlabel(size_unit + " (log)")
    _finish_ax(ax[0, 1], size_title + " (CDF)", "share at or below")
    for name, v in figs["flow_bytes"].items():
        _ccdf(ax[1, 0], v, name)
    ax[1, 0].set_xscale("log")
    ax[1, 0].set_yscale("log")
    what = "request" if figs.get("table") == "requests" else "flow"
    ax[1, 0].set_xlabel(f"bytes per {what}, both directions (log)")
    _finish_ax(ax[1, 0], f"{what} sizes (CCDF, log-log)", "share larger")
    _arrivals(ax[1, 1], figs["arrivals"], f"{figs['arrival_unit']} over time", figs["arrival_unit"])
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)
    return {"file": str(path), "output": str(out), "panels": 4}


def plot_compare(ta, tb, out) -> None:
    """Two request sets (``Trace``) side by side: token CDFs, arrivals over time, IDC by scale."""
    from .stats import idc
    plt = _plt()
    na, nb = Path(ta.path).name, Path(tb.path).name
    if na == nb:
        na, nb = f"A: {na}", f"B: {nb}"
    fig, ax = _figure(plt, f"{na} vs {nb}")
    drawn = False  # any index of dispersion (a few requests have none: no log axes then)
    for tr, name in ((ta, na), (tb, nb)):
        _cdf(ax[0, 0], tr.prompt, name)
        _cdf(ax[0, 1], tr.output, name)
        c = np.bincount((tr.times_ns - tr.times_ns[0]) // NS).astype(np.float64)
        b, w = _rebin(c)
        ax[1, 0].plot(_time_axis(ax[1, 0], b.shape[0], w), b, label=name, lw=1)
        scales = np.array([0.1, 0.3, 1, 3, 10, 30, 60, 120, 300])
        vals = [idc(tr.times_ns, s) for s in scales]
        keep = [v is not None and v > 0 for v in vals]  # a log axis: 0 is nowhere on it
        drawn = drawn or any(keep)
        ax[1, 1].plot(scales[keep], [v for v, k in zip(vals, keep) if k], "o-", label=name)
    if drawn:
        ax[1, 1].axhline(1, color="0.5", ls="--", lw=1, label="Poisson (1)")
    for a, t in ((ax[0, 0], "prompt tokens"), (ax[0, 1], "output tokens")):
        a.set_xscale("log")
        a.set_xlabel(f"{t} per request (log)")
        _finish_ax(a, f"{t} (CDF)", "share at or below")
    _finish_ax(ax[1, 0], "requests over time" + (f" ({w:g} s bins)" if w > 1 else " (1 s bins)"),
               "requests per second")
    title = "burstiness: index of dispersion of counts"
    if drawn:  # log axes of nothing: "Data cannot be log-scaled" (an unexpected ValueError)
        ax[1, 1].set_xscale("log")
        ax[1, 1].set_yscale("log")
        ax[1, 1].set_xlabel("counting window (s, log)")
        _finish_ax(ax[1, 1], title, "Var / mean of counts (log)")
    else:
        _empty(ax[1, 1], title, "too few requests: no window scale has 5 whole windows")
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)
