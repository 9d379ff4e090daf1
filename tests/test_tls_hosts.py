"""The TLS hosts as tshark sees them: handshake delays drawn per connection around the scenario's
figures (client and server taps), repeat connections resumed with a PSK and an abbreviated
flight (and only those, and only for stacks that resume), Chrome's JA3 varying per connection
while its JA4 (tests/ja4ref.py, an independent parser) stays the profile's."""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest

import trafficgen as tg
from trafficgen.wire.hello import client_hello
from trafficgen.wire.profiles import PROFILES
from trafficgen.wire.tls import ticket_identity

from . import ja4ref
from .helpers import TSHARK_PROBLEMS, run_tshark

FIELDS = ("frame.time_epoch", "tcp.stream", "ip.src", "tcp.srcport", "tcp.flags", "tcp.len",
          "tls.handshake.type", "tls.record.content_type", "tls.handshake.extension.type",
          "tls.handshake.extensions_key_share_group", "tls.handshake.ja3", "tcp.reassembled.data",
          "tcp.payload")
SHORT = ["chat.rate=20/s", "chat.ticket_lifetime=10s"]  # few clients come back within 10 s: full handshakes


def _ns(epoch: str) -> int:
    sec, _, frac = epoch.partition(".")
    return int(sec) * 10**9 + int((frac + "000000000")[:9])


def streams(tshark, path) -> dict:
    """tcp.stream -> its packets as dicts (time in ns, ``up``: sent by the SYN's sender)."""
    out = run_tshark(tshark, path, "-T", "fields", "-E", "separator=|", *sum((["-e", f] for f in FIELDS), []))
    s = defaultdict(list)
    for line in out.splitlines():
        v = dict(zip(FIELDS, line.split("|")))
        p = {"t": _ns(v["frame.time_epoch"]), "src": (v["ip.src"], v["tcp.srcport"]),
             "flags": int(v["tcp.flags"], 16), "len": int(v["tcp.len"] or 0),
             "hs": v["tls.handshake.type"].split(","), "ct": v["tls.record.content_type"].split(","),
             "ext": v["tls.handshake.extension.type"].split(","),
             "shares": v["tls.handshake.extensions_key_share_group"].split(","),
             "ja3": v["tls.handshake.ja3"],
             "hello": v["tcp.reassembled.data"] or v["tcp.payload"]}
        s[int(v["tcp.stream"])].append(p)
    for pk in s.values():
        for p in pk:
            p["up"] = p["src"] == pk[0]["src"]
    return s


def events(pk) -> dict | None:
    """A stream's handshake: its packets' indices and times (None if it has no full one)."""
    try:
        ack = next(i for i, p in enumerate(pk) if p["up"] and p["len"] == 0 and not p["flags"] & 2)
        ch = next(i for i, p in enumerate(pk) if "1" in p["hs"])
        sh = next(i for i, p in enumerate(pk) if "2" in p["hs"])
        fin = next(i for i in range(sh + 1, len(pk)) if pk[i]["up"] and "20" in pk[i]["ct"])
        req = next(i for i in range(fin + 1, len(pk)) if pk[i]["up"] and pk[i]["len"] > 0)
        ticket = next(i for i in range(fin + 1, len(pk)) if not pk[i]["up"] and pk[i]["len"] > 0)
    except StopIteration:
        return None
    first_up = next(i for i, p in enumerate(pk) if p["up"] and p["len"] > 0)
    flight_end = max(i for i in range(sh, fin) if not pk[i]["up"] and pk[i]["len"] > 0)
    flight_bytes = sum(p["len"] for p in pk[sh:fin] if not p["up"])
    first_down = next(i for i in range(ch + 1, len(pk)) if not pk[i]["up"] and pk[i]["len"] > 0)
    at = {k: pk[i]["t"] for k, i in dict(ack=ack, first_up=first_up, ch=ch, fin=fin, req=req,
                                          ticket=ticket, flight_end=flight_end,
                                          first_down=first_down).items()}
    return dict(t=at, flight_bytes=flight_bytes, hybrid="4588" in pk[ch]["shares"],
                psk_ch="41" in pk[ch]["ext"], psk_sh="41" in pk[sh]["ext"], ja3=pk[ch]["ja3"],
                ja4=ja4ref.ja4(bytes.fromhex(pk[ch]["hello"].replace(":", ""))))


def gap(ev, a, b, keep=lambda e: True) -> list[int]:
    """Per stream: time of event ``b`` less time of event ``a`` (ns)."""
    return [e["t"][b] - e["t"][a] for e in ev if keep(e)]


@pytest.fixture(scope="module")
def taps(tmp_path_factory, make_run, tshark):
    """Chat for 8 s at 20 calls/s, seen at the client and at the server: (scenario, events)."""
    out = {}
    for side in ("client", "server"):
        sc = tg.load_scenario("chat", SHORT + [f"topology.capture={side}"], duration="8s", seed=3)
        run = make_run(tmp_path_factory.mktemp(side), sc, tables=False)
        assert run_tshark(tshark, run.pcap, "-Y", TSHARK_PROBLEMS, "-T", "fields",
                          "-e", "frame.number").split() == []
        ev = [e for e in map(events, streams(tshark, run.pcap).values()) if e]
        out[side] = (sc, ev)
    return out


def _expected_median(*dists) -> float:
    """Median of the sum of lognormals given by (median, p90) (a Monte Carlo of 40,000)."""
    rng = np.random.default_rng(0)
    total = np.zeros(40_000)
    for d in dists:
        med, p90 = d.quantile(0.5), d.quantile(0.9)
        total += med * np.exp(math.log(p90 / med) / 1.2815515655 * rng.standard_normal(total.shape))
    return float(np.median(total))


def _check(name, vals, want):
    vals = np.asarray(vals)
    assert len(vals) >= 100, (name, len(vals))
    assert len(set(vals.tolist())) >= 20, (name, "too few distinct delays")
    med = float(np.median(vals))
    assert abs(med - want) <= 0.2 * want, (name, med, want)


def test_handshake_delays_are_drawn_around_the_figures(taps):
    sc, ev = taps["client"]
    p = sc.chat
    h = sc.hosts  # a delay that follows an arrival starts once the host's kernel has it
    # client tap: the client's own delays (its kernel's turnaround first where a frame came in)
    _check("client_hello", gap(ev, "ack", "first_up"), _expected_median(p.client_hello_delay))
    _check("finished", gap(ev, "flight_end", "fin"),
           _expected_median(p.client_finished_delay, h.client_turnaround))
    _check("request", gap(ev, "fin", "req"), _expected_median(p.request_delay))
    # server tap: its compute between the ClientHello in and its flight out, by key exchange
    sc, ev = taps["server"]
    full = [e for e in ev if not e["psk_ch"]]
    hyb = gap(full, "ch", "first_down", lambda e: e["hybrid"])
    _check("server hybrid", hyb, _expected_median(p.server_kex_delay, p.server_mlkem_delay,
                                                  p.server_sign_delay, h.server_turnaround))
    classic = gap(full, "ch", "first_down", lambda e: not e["hybrid"])
    assert len(classic) >= 10 and len(set(classic)) >= 10
    assert np.median(classic) < np.median(hyb)  # no ML-KEM encapsulation
    _check("ticket", gap(ev, "fin", "ticket"), _expected_median(p.ticket_delay, h.server_turnaround))


def test_chrome_ja3_varies_and_ja4_holds(taps):
    _sc, ev = taps["client"]
    by = defaultdict(list)
    for e in ev:
        if not e["psk_ch"]:  # a resumption's hello has one more extension: its own JA4
            by[e["ja4"]].append(e["ja3"])
    chrome, firefox = by[PROFILES["chrome"].ja4], by[PROFILES["firefox"].ja4]
    assert set(by) <= {PROFILES[n].ja4 for n in ("chrome", "firefox", "okhttp")}, set(by)
    assert len(chrome) >= 60 and len(set(chrome)) >= len(chrome) // 3, (len(chrome), len(set(chrome)))
    assert len(firefox) >= 10 and len(set(firefox)) == 1


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, make_run, tshark):
    """Chat whose connections close after 1 s idle and whose turns come seconds apart: most
    turns open a repeat connection. Python's clients never resume."""
    sc = tg.load_scenario("chat", ["chat.keepalive=1s", 'chat.think_time={median="3s",p90="8s",max="60s"}',
                                   "chat.client_profiles={chrome=1, firefox=1, python=1}"],
                          duration="20s", seed=4)
    run = make_run(tmp_path_factory.mktemp("resumed"), sc)
    assert run_tshark(tshark, run.pcap, "-Y", TSHARK_PROBLEMS, "-T", "fields",
                      "-e", "frame.number").split() == []
    return run, streams(tshark, run.pcap)


def test_repeat_connections_resume(resumed):
    """Every repeat connection resumes, of the session's or of the client's earlier session
    (a ticket lives 18 h): the flow table's client ids say which; Python's never. Clients
    whose earlier session fell before the capture resume too: with 2,000 clients nearly every
    client has one within 18 h."""
    run, s = resumed
    t = pq.read_table(run.flows).to_pydict()
    first_of_session, seen_client = {}, set()
    client_before = {}  # first flow of a session -> whether its client had a session earlier
    for i in np.argsort(t["start_ns"], kind="stable"):
        sid = t["session_id"][i]
        if sid not in first_of_session:
            first_of_session[sid] = (t["src_ip"][i], t["src_port"][i])
            client_before[sid] = t["client_id"][i] in seen_client
            seen_client.add(t["client_id"][i])
    n_resumed = n_repeat = n_first = n_first_resumed = 0
    py = PROFILES["python"].ja4
    full_bytes, resumed_bytes = [], []
    for pk in s.values():
        e = events(pk)
        assert e is not None
        assert e["psk_ch"] == e["psk_sh"]  # the server accepts every PSK offered, only those
        key = (pk[0]["src"][0], int(pk[0]["src"][1]))
        i = next(k for k in range(len(t["src_port"])) if (t["src_ip"][k], t["src_port"][k]) == key)
        sid = t["session_id"][i]
        repeat = first_of_session[sid] != key or client_before[sid]
        is_python = e["ja4"] == py
        if is_python:
            assert not e["psk_ch"]
        elif repeat:
            assert e["psk_ch"], ("a repeat of the session or of the client's did not resume", key)
            n_repeat += 1
        else:
            n_first += 1
            n_first_resumed += e["psk_ch"]
        n_resumed += e["psk_ch"]
        (resumed_bytes if e["psk_ch"] else full_bytes).append(e["flight_bytes"])
    assert n_repeat >= 30 and n_first >= 10
    assert n_first_resumed >= 0.9 * n_first  # their clients came within 18 h before the capture
    assert max(resumed_bytes) * 2 < min(full_bytes)  # no certificate chain
    # a resumed Chrome hello: pre_shared_key last, its own JA4 (one more extension)
    want = ja4ref.ja4(client_hello(PROFILES["chrome"], "chatgpt.com", psk=ticket_identity(500))[0])
    assert want.startswith("t13d1517h2_")
