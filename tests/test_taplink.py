"""The tap's link shared by every flow (engine/tap.py, kernels/taplink.py): no two frames in
one direction closer than the first one's serialization, each flow's order and its reactions'
gaps kept, the same packets out whatever the pieces the stream comes in; and a capture read
back by dpkt shows it."""
from __future__ import annotations

import ipaddress
import os

import dpkt
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import trafficgen as tg
from trafficgen.engine.core import FlowAttrs
from trafficgen.engine.tap import TapLink, state_columns, tap_ns_per_byte
from trafficgen.kernels.taplink import HORIZON, IFG_BYTES
from trafficgen.schema import SCHED_DTYPE

NS_PER_BYTE = 8.0  # 1 Gb/s


def _stream(draw_flows, seed):
    """Packets of ``draw_flows`` flows (time, flow, direction, length), in the stream's order."""
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(draw_flows):
        t = int(rng.integers(0, 200_000))
        for _ in range(int(rng.integers(1, 40))):
            t += int(rng.choice([1, 500, 3_000, 20_000, 400_000]) * rng.random()) + 1
            rows.append((t, f, int(rng.integers(0, 2)), int(rng.choice([54, 66, 590, 1514]))))
    rows.sort(key=lambda r: (r[0], r[1]))
    out = np.zeros(len(rows), SCHED_DTYPE)
    for i, (t, f, d, w) in enumerate(rows):
        out[i]["ts_ns"], out[i]["flow_id"], out[i]["direction"], out[i]["wire_len"] = t, f, d, w
    return out


def _attrs(n_flows, side):
    a = FlowAttrs()
    a.cols = {"side": np.full(n_flows, side, np.uint8), **state_columns(n_flows)}
    return a


def _run(rows, n_flows, bounds, side=0):
    """The pass over ``rows`` cut at ``bounds`` (each piece: the rows before it)."""
    rows = rows.copy()  # (the pass writes the link's times into the rows it is given)
    tap, attrs, out, lo = TapLink(NS_PER_BYTE), _attrs(n_flows, side), [], 0
    for b in list(bounds) + [None]:
        hi = rows.shape[0] if b is None else int(np.searchsorted(rows["ts_ns"], b, "left"))
        out.append(tap.queue(rows[lo:hi], attrs, b))
        lo = hi
    return np.concatenate(out)


@settings(max_examples=int(os.environ.get("TAP_EXAMPLES", 60)), deadline=None)
@given(st.integers(1, 12), st.integers(0, 2**32 - 1), st.lists(st.integers(0, 3_000_000), max_size=6))
def test_frames_wait_for_the_link_and_keep_their_flows(n_flows, seed, cuts):
    rows = _stream(n_flows, seed)
    got = _run(rows, n_flows, sorted(cuts))
    assert got.shape == rows.shape
    # the same packets, and the same order and times whatever the pieces
    assert np.array_equal(_run(rows, n_flows, []), got)
    t = got["ts_ns"]
    assert np.all(np.diff(t) >= 0)
    for d in (0, 1):  # one direction of the link: a frame starts once the one before it ended
        m = got["direction"] == d
        gap, ser = np.diff(t[m]), np.floor((got["wire_len"][m][:-1] + IFG_BYTES) * NS_PER_BYTE)
        assert np.all(gap >= ser)
    for f in range(n_flows):  # a flow: its order, nothing earlier than it was, reactions' gaps
        a, b = rows[rows["flow_id"] == f], got[got["flow_id"] == f]
        assert np.array_equal(a[["direction", "wire_len"]], b[["direction", "wire_len"]])
        assert np.all(b["ts_ns"] >= a["ts_ns"])
        turn = np.flatnonzero(np.diff(a["direction"].astype(int)) != 0)
        g_orig = a["ts_ns"][turn + 1] - a["ts_ns"][turn]
        g_new = b["ts_ns"][turn + 1] - b["ts_ns"][turn]
        assert np.all(g_new >= np.minimum(g_orig, HORIZON)), f


def test_a_lone_flow_is_untouched():
    """One flow whose frames are already spaced: nothing waits."""
    rows = _stream(1, 7)
    rows = rows[np.concatenate(([True], np.diff(rows["ts_ns"]) > 20_000))]
    assert np.array_equal(_run(rows, 1, [100_000]), rows)


def _frames(pcap):
    with open(pcap, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            yield int(ts * 10**9), len(buf), ip.src  # (a Decimal: exact nanoseconds)


def test_a_capture_never_shows_frames_closer_than_the_link_allows(tmp_path):
    """Chat at 100 calls/s on a 100 Mb/s access link seen at the clients' end: many flows
    meet there. dpkt reads each frame's time and length; per direction (from the clients, to
    them), each frame starts after the one before it has been serialized."""
    sc = tg.load_scenario("chat", ["chat.rate=100/s", "topology.bandwidth=100Mbps"], duration="3s",
                          seed=5)
    tg.generate(sc, pcap=tmp_path / "c.pcap")
    ns_per_byte = tap_ns_per_byte(sc)
    assert ns_per_byte == 80.0
    clients = sc.topology.clients
    frames = list(_frames(tmp_path / "c.pcap"))
    assert len(frames) > 5000
    up = np.array([ipaddress.ip_address(src) in clients for _, _, src in frames])
    ts = np.array([t for t, _, _ in frames], np.int64)
    ln = np.array([n for _, n, _ in frames], np.int64)
    tight = 0
    for m in (up, ~up):
        gap, ser = np.diff(ts[m]), np.floor((ln[m][:-1] + IFG_BYTES) * ns_per_byte)
        assert np.all(gap >= ser), (gap - ser).min()
        tight += int(np.sum(gap == ser))
    assert tight > 50  # frames queued back to back: the link was busy, and they waited
