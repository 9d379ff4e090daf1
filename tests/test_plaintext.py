"""Plaintext HTTP/1.1 (``plaintext = "http1"``): tshark's HTTP dissector shows every request
(method, path, host, a content-length that matches a JSON body) and every response (200,
text/event-stream, chunked) whose SSE events are JSON token deltas, then [DONE]; nothing
malformed, no TLS."""
from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

import trafficgen as tg

from .helpers import TSHARK_PROBLEMS, run_tshark

PLAIN_RUN = ["chat.rate=4/s", "chat.plaintext=http1", "chat.server_port=80",
             # reasoning: a thinking phase with SSE keep-alive comments before the answer
             "reasoning.rate=1/s", "reasoning.plaintext=http1", "reasoning.server_port=80",
             "reasoning.keepalive_every=2s"]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, make_run):
    sc = tg.load_scenario("chat", PLAIN_RUN, duration="4s", seed=4)
    return make_run(tmp_path_factory.mktemp("plain_run"), sc)


def _unescape(field: str) -> str:
    return field.replace("\\r", "\r").replace("\\n", "\n").replace('\\"', '"')


def test_tshark_shows_requests_and_sse_events(tshark, plain_run):
    assert run_tshark(tshark, plain_run.pcap, "-o", "tcp.check_checksum:TRUE", "-Y",
                      TSHARK_PROBLEMS + " || tls", "-T", "fields", "-e", "frame.number").split() == []
    sc = plain_run.scenario
    hosts = {sc.params[c].sni for c in ("chat", "reasoning")}
    out = run_tshark(tshark, plain_run.pcap, "-Y", "http.request", "-T", "fields", "-E",
                     "separator=|", "-e", "http.request.method", "-e", "http.request.uri",
                     "-e", "http.host", "-e", "http.content_length", "-e", "http.file_data")
    reqs = [r.split("|", 4) for r in out.splitlines()]
    n_req = pq.read_table(plain_run.requests).num_rows
    assert len(reqs) == n_req > 0
    for method, uri, host, length, body in reqs:
        assert (method, uri) == ("POST", "/v1/chat/completions") and host in hosts
        body = _unescape(body)
        assert len(body.encode()) == int(length)
        msg = json.loads(body)
        assert msg["stream"] is True and msg["messages"][0]["role"] == "user"
    out = run_tshark(tshark, plain_run.pcap, "-Y", "http.response", "-T", "fields", "-E",
                     "separator=|", "-e", "http.response.code", "-e", "http.content_type",
                     "-e", "http.transfer_encoding", "-e", "http.file_data")
    resps = [r.split("|", 3) for r in out.splitlines()]
    assert len(resps) == n_req
    kept_alive = 0
    for code, ctype, te, body in resps:
        assert (code, te) == ("200", "chunked") and ctype.startswith("text/event-stream")
        events = _unescape(body).split("\n\n")
        assert events[-1] == "" and events[-2] == "data: [DONE]"
        deltas = 0
        for e in events[:-2]:
            if e == ": keep-alive":
                kept_alive += 1
                continue
            assert e.startswith("data: ")
            chunk = json.loads(e[6:])
            assert chunk["object"] == "chat.completion.chunk"
            assert isinstance(chunk["choices"][0]["delta"]["content"], str)
            deltas += 1
        assert deltas > 0
    assert kept_alive > 0


def test_plaintext_is_chosen_per_class_and_checked(tmp_path):
    sc = tg.load_scenario("chat", ["chat.plaintext=http1"])
    assert sc.params["chat"].plaintext == "http1"
    assert tg.load_scenario("chat").params["chat"].plaintext == ""
    done = subprocess.run([sys.executable, "-m", "trafficgen", "generate", "chat", "-t",
                           "chat.plaintext=h2c", "-o", str(tmp_path / "x.pcap")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "chat.plaintext" in done.stderr and "http1" in done.stderr


def test_plaintext_bytes_depend_on_the_seed_alone(tmp_path, plain_run):
    """The text is filled by the encoder from the seed's pool: another window and batch size
    give the same bytes, another seed others."""
    import hashlib
    ref = hashlib.sha256(plain_run.pcap.read_bytes()).hexdigest()
    sc = plain_run.scenario
    tg.generate(sc, pcap=tmp_path / "a.pcap", window="1s", batch_packets=777)
    assert hashlib.sha256((tmp_path / "a.pcap").read_bytes()).hexdigest() == ref
    other = tg.load_scenario("chat", PLAIN_RUN, duration="4s", seed=5)
    tg.generate(other, pcap=tmp_path / "b.pcap")
    assert hashlib.sha256((tmp_path / "b.pcap").read_bytes()).hexdigest() != ref
