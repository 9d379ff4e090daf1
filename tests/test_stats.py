"""The model statistics (gap cv, index of dispersion, Hurst) against processes whose values are
known, against an independent computation on the Azure trace, and `inspect --stats`."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

import trafficgen as tg
from trafficgen.analysis.stats import arrival_stats, counts, gap_cv, hurst, idc
from trafficgen.config.arrivals import BLOCK_NS, parse_arrivals
from trafficgen.kernels.rng import derive, key_of

from .helpers import trace_times

S = 10**9


def poisson(rate, seconds, seed=0):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.exponential(1 / rate, int(rate * seconds * 1.1)) * S).astype(np.int64)


def test_poisson_has_cv_1_idc_1_and_hurst_one_half():
    t = poisson(20, 3600)
    t = t[t < 3600 * S]
    st = arrival_stats(t)
    assert st["gap_cv"] == pytest.approx(1, abs=0.02)
    for v in st["idc"].values():
        assert v == pytest.approx(1, abs=0.25)
    assert st["hurst"] == pytest.approx(0.5, abs=0.06)
    assert st["rate_per_s"] == pytest.approx(20, rel=0.02)


def test_a_periodic_stream_has_no_dispersion():
    t = np.arange(0, 600 * S, S // 4, dtype=np.int64)
    assert gap_cv(t) == 0
    assert idc(t, 1) == 0 and idc(t, 10) == 0


def test_bursty_streams_have_growing_dispersion_and_long_memory():
    sp = parse_arrivals({"process": "poisson", "burst": [["10s", 0.4], ["60s", 0.4], ["10m", 0.5]]})
    t = np.concatenate([sp.times(key_of(1, 2), derive(key_of(1, 3), b), b * BLOCK_NS,
                                 (b + 1) * BLOCK_NS, 10 / S, BLOCK_NS) for b in range(120)])
    st = arrival_stats(t)
    a, b, c = st["idc"]["1s"], st["idc"]["10s"], st["idc"]["60s"]
    assert 1.2 < a < b < c
    assert st["hurst"] > 0.65


def test_counts_and_idc_agree_with_a_plain_computation():
    t = poisson(7, 900, seed=3)
    t = t[t < 900 * S]
    for scale in (1, 10, 60):
        plain = np.bincount((t // (scale * S)).astype(int))[: 900 // scale]
        c = counts(t, scale, t0=0, t1=900 * S)
        assert np.array_equal(c, plain)
        assert idc(t, scale, t0=0, t1=900 * S) == pytest.approx(plain.var(ddof=1) / plain.mean())


@pytest.mark.parametrize("name, cv, idcs", [
    ("azure-llm-2023-conv.csv", 1.09, (1.39, 3.87, 16.4)),
    ("azure-llm-2023-code.csv", 13.2, (13.2, 71.9, 166.9)),
])
def test_azure_traces(name, cv, idcs):
    """The figures a model is fitted to (MODELS.md: conversation ~Gamma-like with cv ~1.1, code
    extremely bursty) as this module computes them."""
    t = trace_times(name)
    st = arrival_stats(t)
    gaps = np.diff(t)
    assert st["gap_cv"] == pytest.approx(gaps.std() / gaps.mean()) == pytest.approx(cv, rel=0.02)
    for (scale, got), want in zip(st["idc"].items(), idcs):
        s = int(scale[:-1])
        whole = (t[-1] + 1 - t[0]) // (s * S)
        plain = np.bincount(((t - t[0]) // (s * S)).astype(int))[:whole]
        assert got == pytest.approx(plain.var(ddof=1) / plain.mean())
        assert got == pytest.approx(want, rel=0.1)  # the figures quoted in the docs
    assert st["hurst"] > 0.6  # both traces have long memory


def test_inspect_stats(tmp_path):
    sc = tg.load_scenario("chat", ["chat.rate=30/s", 'chat.arrivals={process="poisson"}'],
                          duration="4m", seed=2)
    tg.generate(sc, requests=tmp_path / "r.parquet", pcap=tmp_path / "c.pcap")
    done = subprocess.run([sys.executable, "-m", "trafficgen", "inspect", str(tmp_path / "r.parquet"),
                           "--stats", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    st = json.loads(done.stdout)["stats"]["chat"]
    table = pq.read_table(tmp_path / "r.parquet").to_pydict()
    prompt = np.array(table["prompt_tokens"])
    assert st["requests"] == len(prompt) == st["llm_calls"]
    assert st["prompt_tokens"]["median"] == np.median(prompt)
    assert st["output_tokens"]["p90"] == np.quantile(table["output_tokens"], 0.9)
    assert st["bytes_down"]["total"] == sum(table["bytes_down"])
    assert st["arrivals"]["rate_per_s"] == pytest.approx(30, rel=0.1)
    assert st["arrivals"]["gap_cv"] == pytest.approx(1, abs=0.1)
    assert st["per_turn"] == {"turns": len(prompt), "llm_calls": 1.0, "tool_calls": 0.0}
    text = subprocess.run([sys.executable, "-m", "trafficgen", "inspect", str(tmp_path / "r.parquet"),
                           "--stats"], capture_output=True, text=True).stdout
    assert "chat arrivals:" in text and "IDC 1s" in text and "Hurst" in text
    bad = subprocess.run([sys.executable, "-m", "trafficgen", "inspect", str(tmp_path / "c.pcap"),
                          "--stats"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "request table" in bad.stderr


def test_hurst_needs_enough_data():
    assert hurst(np.arange(5, dtype=np.int64)) is None
    assert arrival_stats(np.array([5], np.int64))["gap_cv"] is None


def test_default_chat_matches_the_conversation_trace():
    """models/chat.toml's arrivals, at the trace's rate for an hour, against the trace itself."""
    trace = arrival_stats(trace_times("azure-llm-2023-conv.csv"))
    sc = tg.load_scenario("chat", [f"chat.rate={trace['rate_per_s']:.2f}/s"], duration="1h", seed=1)
    starts = np.concatenate([b.requests["start_ns"] for b in tg.batches(sc, frames=False)])
    ours = arrival_stats(starts)
    assert ours["rate_per_s"] == pytest.approx(trace["rate_per_s"], rel=0.15)
    assert ours["gap_cv"] == pytest.approx(trace["gap_cv"], rel=0.08)
    for scale in ("1s", "10s", "60s"):
        assert ours["idc"][scale] == pytest.approx(trace["idc"][scale], rel=0.3), scale
    assert ours["hurst"] == pytest.approx(trace["hurst"], abs=0.08)
    # negative control: Poisson sessions miss the trace's burstiness by far
    flat = tg.load_scenario("chat", [f"chat.rate={trace['rate_per_s']:.2f}/s",
                                     'chat.arrivals={process="poisson"}'], duration="1h", seed=1)
    starts = np.concatenate([b.requests["start_ns"] for b in tg.batches(flat, frames=False)])
    assert arrival_stats(starts)["idc"]["60s"] < trace["idc"]["60s"] / 4
