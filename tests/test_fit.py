"""Fitting a scenario to a trace: token tables, the arrival search, the daily profile, and the
judged case: fit the Azure code trace, generate hours from the fitted scenario, and get the
trace's medians, rate and burstiness (figures in the README)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import trafficgen as tg
from trafficgen.analysis import fit
from trafficgen.analysis.compare import ks_distance
from trafficgen.config.dist import parse_dist
from trafficgen.kernels.sampling import sample
from trafficgen.traces.read import read_trace
from trafficgen.traces.trace import Trace

from .helpers import real_trace

S = 10**9
SEEDS = range(1, 7)


def test_quantile_points_reproduce_the_sample():
    rng = np.random.default_rng(1)
    x = np.round(rng.lognormal(6, 1.2, 20000)) + 1
    pts = fit.quantile_points(x)
    assert len(pts) == 59 and pts[0][0] == 0 and pts[-1][0] == 1
    d = parse_dist({"dist": "quantiles", "points": pts})
    vec = d.params()
    drawn = np.round([sample(vec, u) for u in (np.arange(20000) + 0.5) / 20000])
    assert ks_distance(drawn, x) < 0.02
    assert ks_distance(drawn, x * 1.3) > 0.05  # negative control (0.089)


def test_search_finds_poisson_for_a_poisson_stream():
    rng = np.random.default_rng(2)
    t = np.cumsum(rng.exponential(0.2, 18000) * S).astype(np.int64)
    want, span = fit.target_stats(t)
    best, got, _ = fit.search(want, span, budget=30)
    assert best.onoff is None and got["gap_cv"] == pytest.approx(1, abs=0.15)
    assert got["idc_60s"] < 3


def test_daily_profile_from_hourly_rates():
    rng = np.random.default_rng(3)
    rate = np.where((np.arange(48) % 24) < 12, 0.5, 2.0)  # per second, by hour, two days
    t = np.sort(np.concatenate([h * 3600 * S + rng.uniform(0, 3600 * S, rng.poisson(r * 3600))
                                for h, r in enumerate(rate)]).astype(np.int64))
    prof = fit.daily_profile(t, absolute=True)
    assert len(prof) == 24 and np.mean(prof) == pytest.approx(1, rel=1e-3)
    assert prof[15] / prof[3] == pytest.approx(4, rel=0.1)
    assert fit.daily_profile(t[t < 20 * 3600 * S], absolute=True) is None  # less than a day


def _generated(path, seed, extra=()):
    sc = tg.load_scenario(str(path), list(extra), duration="1h", seed=seed)
    r = np.concatenate([b.requests for b in tg.batches(sc, frames=False)])
    return r, fit.flat_stats(np.sort(r["start_ns"]))


def test_fit_azure_code_trace_then_generate(tmp_path):
    tr = read_trace(real_trace("azure-llm-2023-code.csv"))
    text, rep = fit.fit_trace(tr, base="coding")
    path = tmp_path / "fitted.toml"
    path.write_text(text)
    want = rep["trace_stats"]
    runs = [_generated(path, s) for s in SEEDS]
    prompt = np.concatenate([r["prompt_tokens"] for r, _ in runs])
    output = np.concatenate([r["output_tokens"] for r, _ in runs])
    assert np.median(prompt) == pytest.approx(np.median(tr.prompt), rel=0.03)
    assert np.median(output) == pytest.approx(np.median(tr.output), rel=0.08)
    assert ks_distance(prompt, tr.prompt) < 0.03 and ks_distance(output, tr.output) < 0.03
    rate = sum(r.shape[0] for r, _ in runs) / (3600 * len(SEEDS))
    assert rate == pytest.approx(want["rate_per_s"], rel=0.2)  # heavy tails: seeds pooled
    med = {k: float(np.median([st[k] for _, st in runs])) for k in fit.STAT_NAMES}
    assert med["gap_cv"] == pytest.approx(want["gap_cv"], rel=0.35)
    assert med["idc_1s"] == pytest.approx(want["idc_1s"], rel=0.35)
    assert med["idc_10s"] == pytest.approx(want["idc_10s"], rel=0.35)
    assert med["idc_60s"] == pytest.approx(want["idc_60s"], rel=0.5)
    assert med["hurst"] == pytest.approx(want["hurst"], abs=0.06)
    # negative control: the fitted rate and tokens with Poisson arrivals miss the burstiness
    _, flat = _generated(path, 1, ['coding.arrivals={process="poisson"}'])
    assert flat["idc_10s"] < want["idc_10s"] / 10 and flat["gap_cv"] < 2


def test_fit_cli(tmp_path):
    out = tmp_path / "f.toml"
    rng = np.random.default_rng(4)
    csv = tmp_path / "t.csv"
    t = np.cumsum(rng.exponential(0.5, 2000))
    csv.write_text("time_s,input_tokens,output_tokens\n" + "".join(
        f"{x:.6f},{int(p)},{int(o)}\n" for x, p, o in zip(t, rng.integers(10, 3000, 2000),
                                                          rng.integers(1, 500, 2000))))
    done = subprocess.run([sys.executable, "-m", "trafficgen", "fit", str(csv), "-o", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    sc = tg.load_scenario(str(out))
    assert sc.chat.rate == pytest.approx(2, rel=0.1) and sc.chat.turns == 1.0
    assert "# Fitted by `trafficgen fit`" in out.read_text()
    bad = subprocess.run([sys.executable, "-m", "trafficgen", "fit", str(csv), "-o", str(tmp_path / "g.toml"),
                          "--base", "kv-transfer"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and not (tmp_path / "g.toml").exists()
    few = Trace("x", "generic", np.arange(5), np.ones(5, np.int64), np.ones(5, np.int64))
    with pytest.raises(tg.TrafficgenError, match="too few"):
        fit.fit_trace(few)
