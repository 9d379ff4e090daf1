"""compare and plot on real files: the Azure traces and a generated run (PNGs checked for size
and content; a person looks at them before a release)."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from scipy import stats as sps

import trafficgen as tg
from trafficgen.analysis.compare import compare, ks_distance

from .helpers import cli, real_trace

mpl_image = pytest.importorskip("matplotlib.image")


def check_png(path, size=(850, 1300)):
    img = mpl_image.imread(path)
    assert img.shape[:2] == size
    gray = img[..., :3].mean(axis=2)
    assert gray.std() > 0.05  # not blank
    colours = np.unique((img[..., :3] * 15).astype(int).reshape(-1, 3), axis=0)
    assert colours.shape[0] > 20  # lines of several colours, text, grid


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("plotrun")
    sc = tg.load_scenario("enterprise-mix", duration="20s", seed=5)
    paths = {"pcap": d / "mix.pcapng", "flows": d / "f.parquet", "requests": d / "r.parquet",
             "packets": d / "p.parquet"}
    tg.generate(sc, **paths)
    return paths


def test_ks_distance_agrees_with_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(5, 1, 3000).round(), rng.lognormal(5.1, 1, 2000).round()
    assert ks_distance(a, b) == pytest.approx(sps.ks_2samp(a, b).statistic)
    assert ks_distance(a, a) == 0


def test_compare_real_traces(tmp_path):
    code, conv = real_trace("azure-llm-2023-code.csv"), real_trace("azure-llm-2023-conv.csv")
    same = compare(code, code)
    assert same["ks"]["prompt_tokens"] == 0 and same["a"] == same["b"]
    diff = compare(code, conv)
    assert diff["ks"]["output_tokens"] > 0.5  # code answers are short (negative control)
    assert diff["a"]["requests"] == 8819 and diff["b"]["requests"] == 19366
    assert diff["a"]["gap_cv"] == pytest.approx(13.15, rel=0.01)
    assert diff["b"]["idc"]["60s"] == pytest.approx(16.4, rel=0.02)
    out = tmp_path / "c.png"
    done = cli("compare", code, conv, "--json", "--plot", out)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ks"] == pytest.approx(diff["ks"])
    check_png(out)
    text = cli("compare", code, conv).stdout
    assert "IDC 60s" in text and "KS distance" in text and "8,819" in text


def test_compare_trace_with_a_generated_table(tmp_path):
    code = real_trace("azure-llm-2023-code.csv")
    r = tmp_path / "r.parquet"
    assert cli("generate", "coding", "--trace", code, "--duration", "5m", "--requests", r, "-q").returncode == 0
    c = compare(code, r)
    assert c["b"]["format"] == "requests"
    assert c["ks"]["prompt_tokens"] < 0.1 and c["b"]["requests"] > 500
    # the trace-driven table is the trace's first 5 minutes: same gaps
    five = compare(code, r)["b"]
    assert five["span_s"] < 300


@pytest.mark.parametrize("which", ["pcap", "packets", "flows", "requests"])
def test_plot_each_input(small_run, tmp_path, which):
    from trafficgen.analysis.plot import plot_file
    out = tmp_path / f"{which}.png"
    if which == "pcap":  # one through the command line
        done = cli("plot", small_run[which], "-o", out)
        assert done.returncode == 0, done.stderr
    else:
        plot_file(small_run[which], out)
    check_png(out)


def test_check_png_catches_a_blank_picture(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(13, 8.5))
    fig.savefig(tmp_path / "blank.png", dpi=100)
    plt.close(fig)
    with pytest.raises(AssertionError):
        check_png(tmp_path / "blank.png")


def test_plot_errors(small_run, tmp_path, monkeypatch):
    bad = cli("plot", small_run["packets"], "-o", tmp_path / "x.jpg")
    assert bad.returncode == 2 and ".png" in bad.stderr and bad.stderr.count("\n") == 1
    junk = tmp_path / "j.parquet"
    junk.write_bytes(b"nope")
    from trafficgen.analysis import plot
    with pytest.raises(tg.TrafficgenError, match="not a pcap"):
        plot.plot_file(junk, tmp_path / "y.png")
    assert not (tmp_path / "y.png").exists()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(tg.TrafficgenError, match=r"trafficgen-ai\[plot\]"):
        plot.plot_file(small_run["requests"], tmp_path / "z.png")
