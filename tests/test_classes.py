"""The flow classes beyond chat, each against its targets: token tables and arrivals against the
real traces where there are some, the published figures where there are not, and the wire shape
each class puts on the wire."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import trafficgen as tg
from trafficgen.stats import arrival_stats

from .test_chat_model import traces_dir
from .test_stats import _trace_times

S = 10**9


def requests_of(sc) -> np.ndarray:
    parts = [b.requests for b in tg.batches(sc, frames=False)]
    return np.concatenate(parts)


def _trace_tokens(name):
    path = traces_dir() / name
    if not path.exists():
        pytest.skip(f"{path} not present (set TRAFFICGEN_TRACES to the traces folder)")
    return np.loadtxt(path, delimiter=",", skiprows=1, usecols=(1, 2))


@pytest.fixture(scope="module")
def coding_hour():
    """An hour of the built-in coding scenario at the code trace's rate, seeds 1-4."""
    return [requests_of(tg.load_scenario("coding", ["coding.rate=2.45/s"], duration="1h", seed=s))
            for s in (1, 2, 3, 4)]


def test_coding_tokens_match_the_azure_code_trace(coding_hour):
    trace = _trace_tokens("azure-llm-2023-code.csv")
    req = np.concatenate(coding_hour)
    for i, column in enumerate(("prompt_tokens", "output_tokens")):
        ks = stats.ks_2samp(req[column], trace[:, i]).statistic
        assert ks < 0.04, f"{column}: KS distance {ks:.3f} from the Azure code trace"
    assert np.median(req["output_tokens"]) == pytest.approx(13, abs=1)  # MODELS.md: 13 / 55
    assert np.quantile(req["output_tokens"], 0.9) == pytest.approx(55, rel=0.1)
    # negative control: the conversation trace's prompts are another population
    conv = _trace_tokens("azure-llm-2023-conv.csv")
    assert stats.ks_2samp(req["prompt_tokens"], conv[:, 0]).statistic > 0.1


def test_coding_arrivals_are_as_bursty_as_the_code_trace(coding_hour):
    """models/coding.toml's fit: the median over four seeds of gap cv, IDC at 1/10/60 s and
    Hurst, against the trace (an on/off source: one hour of it varies a lot by seed)."""
    trace = arrival_stats(_trace_times("azure-llm-2023-code.csv"))
    ours = [arrival_stats(np.sort(r["start_ns"])) for r in coding_hour]
    med = lambda f: float(np.median([f(a) for a in ours]))  # noqa: E731
    assert med(lambda a: a["rate_per_s"]) == pytest.approx(trace["rate_per_s"], rel=0.3)
    assert med(lambda a: a["gap_cv"]) == pytest.approx(trace["gap_cv"], rel=0.3)
    for scale in ("1s", "10s", "60s"):
        assert med(lambda a: a["idc"][scale]) == pytest.approx(trace["idc"][scale], rel=0.4), scale
    assert med(lambda a: a["hurst"]) == pytest.approx(trace["hurst"], abs=0.08)
    # negative control: the same sessions without the on/off gate are nowhere near as bursty
    flat = requests_of(tg.load_scenario(
        "coding", ["coding.rate=2.45/s", 'coding.arrivals={process="gamma", cv=1.5}'],
        duration="1h", seed=1))
    assert arrival_stats(np.sort(flat["start_ns"]))["gap_cv"] < trace["gap_cv"] / 3
