"""The path's jitter, reordering and duplication (``[network.impair]`` ``jitter``, ``reorder``,
``duplicate``; ``kernels.path``) and the SACK blocks the receivers send.

tshark's TCP analysis is the judge: the frames it calls retransmissions or out of order are
exactly those whose bytes the tap had seen before, and each of them is, by the packet table, a
retransmission, a duplicate the path made or a frame it held back; "previous segment not
captured" appears only ahead of a held-back frame. Every SACK block tshark reads lies within
the bytes the tap saw before its ACK, and every D-SACK names a segment the tap saw. The shares
of held-back and duplicated frames match the configured ones, and jitter adds to the handshake
what two draws of its distribution add."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import stats

import trafficgen as tg

from .helpers import TSHARK_CHECKSUMS, generate_run, read_pcap, run_tshark, seen_before

# image uploads seen at the servers' tap: the clients' bulk data has crossed the path before it
PATHY = {"multimodal.rate": "4/s", "topology.capture": "server", "network.impair.reorder": 0.03,
         "network.impair.duplicate": 0.02, "network.impair.jitter": "2ms"}
FIELDS = ("tcp.analysis.retransmission", "tcp.analysis.fast_retransmission",
          "tcp.analysis.spurious_retransmission", "tcp.analysis.out_of_order",
          "tcp.analysis.lost_segment", "tcp.analysis.ack_lost_segment", "_ws.malformed",
          "ip.checksum.status", "tcp.checksum.status", "tcp.options.sack_le", "tcp.options.sack_re")
M32 = 2**32


@pytest.fixture(scope="module")
def pathy(tmp_path_factory):
    sc = tg.load_scenario("multimodal", PATHY, duration="4s", seed=5)
    run = generate_run(tmp_path_factory.mktemp("pathy"), sc)
    args = ["-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-o",
            "tcp.relative_sequence_numbers:FALSE", *TSHARK_CHECKSUMS]
    for f in FIELDS:
        args += ["-e", f]
    t = pq.read_table(run.packets).to_pandas()
    t["d"] = (t.direction.astype(str) == "down").astype(int)  # 0 up, 1 down
    return run, t, args


def _tshark(tshark, pathy) -> pd.DataFrame:
    run, _, args = pathy
    out = run_tshark(tshark, run.pcap, *args)
    return pd.read_csv(io.StringIO(out), sep="|", header=None, names=FIELDS, dtype=str)


def _ahead(a, b):
    """Whether sequence number ``a`` is after ``b`` (mod 2**32)."""
    return (a - b + 2**31) % M32 - 2**31 > 0


def test_tshark_flags_exactly_the_frames_the_path_moved(pathy, tshark):
    _, t, _ = pathy
    c = _tshark(tshark, pathy)
    assert len(c) == len(t)
    has = {f: c[f].notna().values for f in FIELDS}
    flagged = (has["tcp.analysis.retransmission"] | has["tcp.analysis.fast_retransmission"]
               | has["tcp.analysis.spurious_retransmission"] | has["tcp.analysis.out_of_order"])
    seen = seen_before(t)
    np.testing.assert_array_equal(flagged, seen)
    moved = t.retransmit.values | t.duplicate.values | t.reordered.values
    assert not (seen & ~moved).any()
    # both kinds show at the tap (the servers': the clients' frames crossed the path before it)
    up = t.d.values == 0
    assert (seen & t.duplicate.values & up).sum() > 50 and (seen & t.reordered.values & up).sum() > 50
    # no loss configured: "previous segment not captured" only where a held-back frame of the
    # flow and direction, with lower bytes, comes after it
    for i in np.flatnonzero(has["tcp.analysis.lost_segment"]):
        f, d, s = t.flow_id.iat[i], t.d.iat[i], int(t.seq.iat[i])
        later = t.iloc[i + 1:]
        late = later[(later.flow_id == f) & (later.d == d) & later.reordered]
        assert any(_ahead(s, int(x)) for x in late.seq), i
    assert not has["tcp.analysis.ack_lost_segment"].any() and not has["_ws.malformed"].any()
    for col in ("ip.checksum.status", "tcp.checksum.status"):
        assert set(c[col].dropna()) == {"1"}, col


def test_sack_blocks_name_bytes_the_tap_saw(pathy, tshark):
    """A SACK block (one per ACK, RFC 2018's first) covers bytes the peer's frames brought
    before the ACK; a D-SACK (below the ACK, RFC 2883) is exactly one segment the tap saw
    twice, or saw once where the path made its copy past the tap."""
    _, t, _ = pathy
    c = _tshark(tshark, pathy)
    rows = np.flatnonzero(c["tcp.options.sack_le"].notna().values)
    assert rows.shape[0] > 100
    assert (t.payload_len.values[rows] == 0).all()
    seq, n = t.seq.values.astype(np.int64), t.payload_len.values.astype(np.int64)
    ack = t.ack.values.astype(np.int64)
    segs: dict = {}  # (flow, direction) -> {(seq, end)} and the highest end, so far
    top: dict = {}
    rows_set, dsack = set(rows.tolist()), 0
    for i in range(len(t)):
        f, d = t.flow_id.iat[i], t.d.iat[i]
        if i in rows_set:
            le, re = int(c["tcp.options.sack_le"].iat[i]), int(c["tcp.options.sack_re"].iat[i])
            peer = (f, 1 - d)
            if _ahead(ack[i] + 1, re):  # at or below the ACK: a D-SACK
                dsack += 1
                assert (le, re) in segs.get(peer, set()), i
            else:
                assert _ahead(le, ack[i]) and not _ahead(re, top[peer]), i
        if n[i] > 0:
            segs.setdefault((f, d), set()).add((int(seq[i]), int((seq[i] + n[i]) % M32)))
            end = (seq[i] + n[i]) % M32
            if (f, d) not in top or _ahead(end, top[(f, d)]):
                top[(f, d)] = end
    assert dsack > 30


def test_the_path_moves_the_configured_shares(pathy):
    """Held back: 3% of the frames that may be (segments and ACKs after the handshake, not the
    FIN exchange); duplicated: 2% of them. The servers' tap captures the copies of the
    clients' frames (made upstream of it), not those of its own (made past it)."""
    _, t, _ = pathy
    ok = (t.tcp_flags.values & 0x07) == 0  # no SYN, FIN or RST
    ok &= t.phase.astype(str).values != "teardown"
    ok &= ~t.duplicate.values
    up = t.d.values == 0
    assert t.reordered[ok].mean() == pytest.approx(0.03, rel=0.2)
    assert not t.duplicate[~up].any()
    assert t.duplicate[up].sum() / (ok & up).sum() == pytest.approx(0.02, rel=0.2)


def test_jitter_adds_two_draws_to_the_handshake(tmp_path):
    """A session's first connection opens at the same time with or without jitter, and its
    handshake RTT at the client gains the SYN's and the SYN/ACK's extra delays: the sum of two
    uniform draws on [0, 2 ms], a triangle on [0, 4 ms] (Kolmogorov-Smirnov)."""
    rtt = []
    for i, over in enumerate(({"chat.rate": "12/s"}, {"chat.rate": "12/s", "network.impair.jitter": "2ms"})):
        sc = tg.load_scenario("chat", over, duration="6s", seed=11)
        tg.generate(sc, flows=tmp_path / f"f{i}.parquet")
        f = pq.read_table(tmp_path / f"f{i}.parquet").to_pandas()
        rtt.append(f.set_index(["session_id", "start_ns"]).rtt_ns)
    both = rtt[0].index.intersection(rtt[1].index)
    assert len(both) > 40
    extra = (rtt[1][both] - rtt[0][both]).values / 2e6  # in units of J = 2 ms
    assert extra.min() >= 0 and extra.max() <= 2
    tri = stats.triang(c=0.5, loc=0, scale=2)
    assert stats.kstest(extra, tri.cdf).pvalue > 0.01
    assert extra.mean() == pytest.approx(1.0, rel=0.1)


def test_pcapng_comments_and_inspect_stats_carry_the_truth(tmp_path, tshark):
    """Each frame's pcapng comment ends with the table's true flags, in order
    (``retransmit=1 lost=1 gap=1 reordered=1 duplicate=1``), and ``inspect --stats`` counts
    the held-back frames and captured copies the table holds."""
    from trafficgen.analysis.report import inspect_file
    over = {**PATHY, "network.impair.loss": 0.01, "network.impair.before_tap": 0.5}
    sc = tg.load_scenario("multimodal", over, duration="2s", seed=8)
    ng, pk = tmp_path / "c.pcapng", tmp_path / "p.parquet"
    tg.generate(sc, pcap=ng, packets=pk)
    t = pq.read_table(pk).to_pandas()
    flags = ("retransmit", "lost", "gap", "reordered", "duplicate")
    assert all(t[k].astype(bool).sum() > 5 for k in flags), t[list(flags)].sum()
    out = run_tshark(tshark, ng, "-T", "fields", "-e", "frame.comment").splitlines()
    assert len(out) == len(t)
    for i, line in enumerate(out):
        got = [w for w in line.split() if w.split("=")[0] in flags]
        assert got == [f"{k}=1" for k in flags if t[k].iat[i]], (i, line)
    r = inspect_file(pk, stats=True)["stats"]["multimodal"]
    assert (r["reordered"], r["duplicate"]) == (t.reordered.sum(), t.duplicate.sum())


SITES = [{"name": "hq", "clients": "10.20.0.0/24", "client_count": 100, "rtt": "20ms",
          "impair": {"loss": 0.03, "reorder": 0.02, "jitter": "1ms"}},
         {"name": "branch", "clients": "10.30.0.0/24", "client_count": 100, "rtt": "40ms"}]


def _site_run(tmp_path, sites, name, **kw):
    sc = tg.load_scenario("chat", {"chat.rate": "12/s", "topology.sites": sites}, duration="4s",
                          seed=3)
    pcap, pk, fl = (tmp_path / f"{name}{x}" for x in (".pcap", "_p.parquet", "_f.parquet"))
    tg.generate(sc, pcap=pcap, packets=pk, flows=fl, **kw)
    p = pq.read_table(pk).to_pandas()
    f = pq.read_table(fl).to_pandas()[["flow_id", "src_ip", "start_ns"]]
    return pcap, p.merge(f, on="flow_id")


def test_a_site_impairs_its_own_clients_paths_only(tmp_path):
    """``impair`` in one site of ``[[topology.sites]]``: its clients' flows lose, resend and
    reorder; the other site's flows carry the same segments as in a run without it (their
    times move by the microseconds the tap's shared link queues them behind other flows); the
    same bytes for any window or worker count."""
    pcap, p = _site_run(tmp_path, SITES, "site")
    hq = p.src_ip.astype(str).str.startswith("10.20.").values
    assert hq.any() and (~hq).any()
    for col in ("retransmit", "lost", "reordered"):
        assert p[col].values[hq].sum() > 20 and not p[col].values[~hq].any(), col
    _, p0 = _site_run(tmp_path, [SITES[0] | {"impair": {}}, SITES[1]], "clean")
    assert not (p0.retransmit | p0.reordered | (p0.lost > 0)).any()
    cols = ["src_ip", "start_ns", "seq", "ack", "tcp_flags", "wire_len"]

    def branch(t):
        t = t[t.src_ip.astype(str).str.startswith("10.30.")][cols]
        return t.sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(branch(p), branch(p0))
    for i, kw in enumerate(({"window": "1s"}, {"workers": 2})):
        again, _ = _site_run(tmp_path, SITES, f"again{i}", **kw)
        assert again.read_bytes() == pcap.read_bytes(), kw


def test_a_quic_packet_the_path_copies_is_the_same_packet_twice(tmp_path):
    """QUIC flows ride the transport and are re-cut into QUIC packets: a path's copy keeps its
    original's packet number, so the servers' tap captures the same frame twice."""
    sc = tg.load_scenario("chat", {"chat.rate": "8/s", "network.quic": 1,
                                   "network.impair.duplicate": 0.05, "topology.capture": "server"},
                          duration="3s", seed=3)
    pcap, pk = tmp_path / "q.pcap", tmp_path / "q.parquet"
    tg.generate(sc, pcap=pcap, packets=pk)
    t = pq.read_table(pk).to_pandas()
    _, frames = read_pcap(pcap)
    quic_dups = np.flatnonzero(t.duplicate.values & (t.tcp_flags.values == 0))
    assert quic_dups.shape[0] > 20
    for i in quic_dups:
        same = t.iloc[:i]
        same = same[(same.flow_id == t.flow_id.iat[i]) & (same.direction == t.direction.iat[i])
                    & ~same.duplicate]
        j = same.index[-1]  # the copy follows its original on the receiver's link
        assert (t.seq.iat[j], t.wire_len.iat[j]) == (t.seq.iat[i], t.wire_len.iat[i]), i
        assert frames[j] == frames[i], i
