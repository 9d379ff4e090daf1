"""Shared fixtures: small generated runs (made once per session) and the external tools.
The functions and constants they are built from are in ``helpers.py``.

And one rule: where ``TRAFFICGEN_REQUIRE_TOOLS`` is set (``.ci/run`` sets it), a test that
would skip fails instead, at collection or at run time, so a missing tool, package, trace or
permission cannot pass CI unseen. No test skips deliberately there; one that must would be
named in ``ALLOWED_SKIPS`` with its reason."""
from __future__ import annotations

import os

import pytest

import trafficgen as tg

from .helpers import Run, generate_run, reference_scenario, require_tool

# node id -> why it may skip even in CI (none: every test runs there)
ALLOWED_SKIPS: dict[str, str] = {}


def _strict() -> bool:
    return bool(os.environ.get("TRAFFICGEN_REQUIRE_TOOLS"))


def _as_failure(report, what: str) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (f"{what} skipped, and TRAFFICGEN_REQUIRE_TOOLS is set (CI runs every "
                       f"test; tests/conftest.py): {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test's skip (in its setup or body) is a failure in CI; an xfail stays an xfail."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and _strict() \
            and item.nodeid not in ALLOWED_SKIPS:
        _as_failure(report, "test")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module that skips as it is collected (``pytest.importorskip``) is an error in CI."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _strict() and collector.nodeid not in ALLOWED_SKIPS:
        _as_failure(report, "module")


# The shared chat run: small enough that tshark and the pure-Python checks stay fast.
CHAT_RUN_ARGS = dict(overrides={"chat.rate": "8/s"}, duration="20s", seed=7)
CHAT_RUN_MAX_PACKETS = 100_000


@pytest.fixture(scope="session")
def chat_run(tmp_path_factory) -> Run:
    """The chat scenario at 8 calls/s for 20 s, seed 7: pcap and all three tables."""
    a = CHAT_RUN_ARGS
    sc = tg.load_scenario("chat", dict(a["overrides"]), duration=a["duration"], seed=a["seed"])
    run = generate_run(tmp_path_factory.mktemp("chat_run"), sc)
    n = run.report["packets"]
    assert 1_000 < n < CHAT_RUN_MAX_PACKETS, (
        f"the shared chat run has {n} packets: retune CHAT_RUN_ARGS to stay well under "
        f"{CHAT_RUN_MAX_PACKETS} (tshark and the Python checks must stay fast)")
    assert run.report["flows"] > 0 and run.report["requests"] > 0
    return run


@pytest.fixture(scope="session")
def server_run(tmp_path_factory) -> Run:
    """A small chat run captured at the server side (``-t topology.capture=server``)."""
    sc = tg.load_scenario("chat", ["chat.rate=4/s", "topology.capture=server"],
                          duration="15s", seed=11)
    assert sc.topology.capture == "server"
    run = generate_run(tmp_path_factory.mktemp("server_run"), sc)
    assert run.report["packets"] > 0 and run.report["flows"] > 0
    return run


# Every TCP flow class at once, on the chat topology: each class section beyond chat takes what
# it leaves out from its built-in scenario (models/<class>.toml).
MIX_RUN_OVERRIDES = ["chat.rate=3/s", "coding.rate=4/s", "reasoning.rate=1/s",
                     "multimodal.rate=0.4/s", "agentic.rate=1.5/s", "rag.rate=3/s",
                     # realtime voice over WebSocket/TLS (RTP and video: tests/test_media.py)
                     "multimodal.voice_rate=0.15/s", "multimodal.voice.rtp_share=0",
                     "multimodal.video_rate=0"]


@pytest.fixture(scope="session")
def mix_run(tmp_path_factory) -> Run:
    """Every TCP class together for 20 s, seed 5: every table and the pcap."""
    sc = tg.load_scenario("chat", MIX_RUN_OVERRIDES, duration="20s", seed=5)
    run = generate_run(tmp_path_factory.mktemp("mix_run"), sc)
    n = run.report["packets"]
    assert 1_000 < n < CHAT_RUN_MAX_PACKETS, f"the mixed run has {n} packets: retune it"
    return run


@pytest.fixture(scope="session")
def tshark() -> str:
    """Path of the tshark binary; tests that need it are skipped when it is not installed."""
    return require_tool("tshark")


@pytest.fixture(scope="session")
def capinfos() -> str:
    """Path of capinfos (it comes with tshark); skipped or failed like ``tshark``."""
    return require_tool("capinfos")


@pytest.fixture(scope="session")
def make_run():
    """``make_run(folder, scenario, pcap=True, tables=True, **generate_kwargs) -> Run``."""
    return generate_run


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> Run:
    """The determinism reference: chat at 6 calls/s for 25 s, seed 5, pcap and all three
    tables (``helpers.reference_scenario``). Runs of the same seed must equal it byte for byte."""
    return generate_run(tmp_path_factory.mktemp("ref"), reference_scenario())
