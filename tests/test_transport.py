"""The transport simulation's hosts and links (issue 15), read back by independent readers:
frames spaced by their serialization time and no response before its cause arrived (the pcap,
parsed with struct and dpkt), handshake delays that vary, TCP timestamps and windows that a
stack would send, request labels on every packet of a request's span (the Parquet packet
table) and the flow table's ``rtt_ns`` against tshark's initial RTT."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import trafficgen as tg
from tests.helpers import batch_tables, generate_run, read_capture, run_tshark
from trafficgen.kernels import stacks

SYN_WINDOWS = {int(stacks.syn_window(o, 1460, 1, 0)) for o in range(len(stacks.OS_NAMES))}


@pytest.fixture(scope="module")
def chat_client(tmp_path_factory):
    """5 s of chat at the client tap: pcap and tables."""
    sc = tg.load_scenario("chat", duration="5s", seed=3)
    return generate_run(tmp_path_factory.mktemp("transport"), sc)


def _flows_of(cap):
    """Per frame: its connection (the client's address and port) and its direction (0 up)."""
    up = cap.dport == 443
    client = np.where(up, cap.src * 65536 + cap.sport, cap.dst * 65536 + cap.dport)
    return client, np.where(up, 0, 1)


def test_serialization_spacing_and_causality(chat_client):
    """At the client tap both directions cross the client's 1 Gb/s access link: two frames of a
    connection in one direction are at least (L + 24) x 8 ns apart, and no frame shares a
    timestamp with the frame it answers (each side answers after the frame finished
    arriving, plus its kernel's turnaround)."""
    cap = read_capture(chat_client.pcap)
    assert not cap.decode_errors
    assert chat_client.scenario.topology.bandwidth_bps == 1e9
    conn, d = _flows_of(cap)
    order = np.lexsort((cap.ts_ns, d, conn))
    c, dd, ts, ln = conn[order], d[order], cap.ts_ns[order], cap.origlen[order]
    same = (c[1:] == c[:-1]) & (dd[1:] == dd[:-1])
    gaps, need = (ts[1:] - ts[:-1])[same], ((ln[:-1] + 24) * 8)[same]
    assert same.sum() > 1000
    assert (gaps >= need).all(), f"{(gaps < need).sum()} frames closer than their serialization"
    # two frames of one connection at one time (rare: opposite directions of a full-duplex
    # link) are never a cause and its effect: neither acknowledges the other's bytes
    order = np.lexsort((cap.ts_ns, conn))
    c, ts = conn[order], cap.ts_ns[order]
    tied = np.flatnonzero((c[1:] == c[:-1]) & (ts[1:] == ts[:-1]))
    assert len(tied) <= cap.n // 10_000
    for j in tied:
        a, b = order[j], order[j + 1]
        assert d[a] != d[b]
        for x, y in ((a, b), (b, a)):
            end = (cap.seq[x] + cap.plen[x] + (1 if cap.flags[x] & 0x03 else 0)) & 0xFFFFFFFF
            assert not (cap.flags[y] & 0x10 and cap.ack[y] == end and end != cap.seq[x]), (x, y)
    # the client's ACK comes after the SYN/ACK finished arriving (66 + 20 bytes at 1 Gb/s)
    syn_ack = np.flatnonzero(cap.flags == 0x12)
    for i in syn_ack[:50]:
        nxt = np.flatnonzero((conn == conn[i]) & (cap.ts_ns > cap.ts_ns[i]))[0]
        assert cap.flags[nxt] & 0x10 and cap.ts_ns[nxt] - cap.ts_ns[i] > (cap.origlen[i] + 24) * 8


def test_handshake_delays_vary(tmp_path):
    """At the server tap, SYN -> SYN/ACK is the server kernel's turnaround (drawn per event):
    over 100 flows at least 20 distinct values, none zero."""
    sc = tg.load_scenario("chat", ["chat.rate=80/s", "topology.capture=server"], duration="4s", seed=2)
    cap = read_capture(generate_run(tmp_path, sc, tables=False).pcap)
    conn, _ = _flows_of(cap)
    syn = {int(conn[i]): cap.ts_ns[i] for i in np.flatnonzero(cap.flags == 0x02)}
    gaps = [cap.ts_ns[i] - syn[int(conn[i])] for i in np.flatnonzero(cap.flags == 0x12)
            if int(conn[i]) in syn]
    assert len(gaps) >= 100
    assert min(gaps) > 0
    assert len(set(gaps[:100])) >= 20
    assert 5_000 < np.median(gaps) < 100_000  # tens of microseconds


def test_timestamps_and_windows():
    """The schedule's TCP timestamp and window columns (until the encoder writes them):
    TSval never goes back per side; TSecr echoes a TSval the peer sent earlier (0 on a SYN);
    the right edge a side advertises (ack + window) never moves left; SYNs carry their stack's
    SYN window (``stacks.syn_window``), and windows grow past it as data arrives."""
    sc = tg.load_scenario("chat", duration="3s", seed=4)
    (pk,) = batch_tables(sc, "packets")
    pk = pk[np.lexsort((pk["ts_ns"], pk["flow_id"]))]
    grew = 0
    for f in np.unique(pk["flow_id"])[:40]:
        rows = pk[pk["flow_id"] == f]
        seen = [set(), set()]
        for r in rows:
            d = int(r["direction"])
            if r["tcp_flags"] & 0x02 and not r["tcp_flags"] & 0x10:
                assert r["tsecr"] == 0 and int(r["win"]) in SYN_WINDOWS
            else:
                assert int(r["tsecr"]) in seen[1 - d], "TSecr echoes no TSval of the peer's"
            seen[d].add(int(r["tsval"]))
        for d in (0, 1):
            side = rows[(rows["direction"] == d) & ((rows["tcp_flags"] & 0x02) == 0)]
            assert (np.diff(side["tsval"].astype(np.int64)) >= 0).all()
            edge = side["ack"].astype(np.int64) + side["win"]
            assert (np.diff(edge) >= 0).all(), "a window shrank"
            grew += int(side["win"].max() > 64240)
    assert grew > 0


def _label_errors(packets, requests):
    """Packets inside a request's span on its flow that carry another request, by kind."""
    p, r = pq.read_table(packets).to_pandas(), pq.read_table(requests).to_pandas()
    wrong = []
    for q in r.itertuples():
        m = (p.flow_id == q.flow_id) & (p.ts_ns >= q.start_ns) & (p.ts_ns <= q.end_ns)
        w = p[m & (p.request_id != q.request_id)]
        wrong += [(x.phase, x.direction, x.payload_len > 0) for x in w.itertuples()]
    return wrong, len(p)


@pytest.mark.parametrize("name", ["chat", "multimodal"])
def test_packets_in_a_request_span_carry_it(tmp_path, name):
    """The packet table: every packet inside a request's span on its flow carries that request
    (the server's ACKs of an upload used to say handshake, request -1), except the server's
    session ticket (TLS handshake data, not the request's bytes)."""
    run = generate_run(tmp_path, tg.load_scenario(name, duration="5s", seed=1), pcap=False)
    wrong, n = _label_errors(run.packets, run.requests)
    assert n > 1000
    others = [w for w in wrong if not (w[0] == "handshake" and w[1] == "down" and w[2])]
    assert not others, f"{len(others)} packets in a request's span labelled otherwise: {others[:5]}"
    assert len(wrong) < 0.01 * n


@pytest.mark.parametrize("name", ["chat", "rag"])
def test_rtt_ns_matches_tshark(tmp_path, tshark, name):
    """tshark's initial RTT (SYN -> the client's ACK, at the client's tap: rag's is the
    gateway, its client, with paths of a few hundred microseconds) is within 10% of the flow
    table's ``rtt_ns`` for every flow."""
    run = generate_run(tmp_path, tg.load_scenario(name, duration="4s", seed=3))
    flows = pq.read_table(run.flows).to_pandas()
    ports = set(flows.dst_port.astype(int))  # the servers' ports
    out = run_tshark(tshark, run.pcap, "-Y", "tcp.analysis.initial_rtt", "-T", "fields",
                     "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport",
                     "-e", "tcp.analysis.initial_rtt")
    irtt = {}
    for line in out.splitlines():
        src, sport, dst, dport, rtt = line.split("\t")
        client = (src, int(sport)) if int(dport) in ports else (dst, int(dport))
        irtt.setdefault(client, float(rtt) * 1e9)
    assert len(flows) >= 20 and (flows.rtt_ns > 0).all()
    for f in flows.itertuples():
        seen = irtt.get((str(f.src_ip), int(f.src_port)))
        assert seen is not None and abs(seen - f.rtt_ns) <= 0.1 * f.rtt_ns, (f.flow_id, seen, f.rtt_ns)


@pytest.mark.parametrize("client_os", ["linux", "windows"])
def test_header_lengths_by_stack(monkeypatch, client_os):
    """Header lengths by stack (``STACK_HEADERS``), every client made one OS: the SYN is 54 +
    the client OS's option bytes, the SYN/ACK 54 + 20 with timestamps (Linux client) or 54 + 12
    without (Windows), every later segment 54 + 12 with timestamps and at most MSS - 12 payload
    bytes; no timestamps without them."""
    from trafficgen.classes import chat as cchat
    from trafficgen.classes import common
    from trafficgen.kernels.stacks import OS_NAMES

    code = OS_NAMES.index(client_os)
    real = cchat.schedule_from_sim

    def with_os(*a, **kw):
        n = a[7]["session"].shape[0]
        kw["c_os"] = np.tile(np.array([code, 0], np.int64), (n, 1))
        return real(*a, **kw)

    assert common.STACK_HEADERS
    monkeypatch.setattr(cchat, "schedule_from_sim", with_os)
    sc = tg.load_scenario("chat", duration="2s", seed=6)
    (pk,) = batch_tables(sc, "packets")
    ts_on = client_os == "linux"
    syn = (pk["tcp_flags"] & 0x12) == 0x02
    synack = (pk["tcp_flags"] & 0x12) == 0x12
    rest = ~syn & ~synack
    assert syn.sum() > 5
    assert (pk["wire_len"][syn] == (74 if ts_on else 66)).all()
    assert (pk["wire_len"][synack] == (74 if ts_on else 66)).all()
    hdr = 66 if ts_on else 54
    assert (pk["wire_len"][rest] == hdr + pk["payload_len"][rest]).all()
    assert pk["payload_len"].max() == sc.topology.mss - (12 if ts_on else 0)
    assert (pk["tsval"][rest] != 0).any() == ts_on


@pytest.mark.parametrize("key, value, says", [
    ("hosts.server_turnaround", "-5us", "hosts.server_turnaround"),
    ("hosts.fabric_bandwidth", "1bps", "must be from"),
    ("hosts.nagle", "1", "unknown key"),
])
def test_hosts_keys_are_checked(key, value, says):
    """``[hosts]`` keys are declared once and validated: a bad value is a one-line error."""
    with pytest.raises(tg.ConfigError) as e:
        tg.load_scenario("chat", [f"{key}={value}"])
    assert says in str(e.value) and "\n" not in str(e.value)


def test_hosts_defaults_are_written_out():
    """A scenario without ``[hosts]`` runs with its defaults, written into ``to_dict()``."""
    d = tg.load_scenario("chat").to_dict()
    assert d["hosts"]["fabric_bandwidth"] == "25Gbps"
    assert d["hosts"]["server_turnaround"]["median"] == "15us"


def test_timestamps_on_the_wire(chat_client):
    """In the pcap, read with dpkt: a connection whose client offers timestamps in its SYN (every
    stack but Windows) carries them on every segment, one without on none; TSval never goes
    back per side and TSecr echoes a TSval the peer sent before (0 on the SYN)."""
    import dpkt

    cap = read_capture(chat_client.pcap)
    conn, d = _flows_of(cap)
    last, seen, offered = {}, {}, {}
    for i, buf in enumerate(cap.frames):
        opts = dict(dpkt.tcp.parse_opts(dpkt.ethernet.Ethernet(buf).data.data.opts))
        has = dpkt.tcp.TCP_OPT_TIMESTAMP in opts
        k = int(conn[i])
        if cap.flags[i] == 0x02:
            offered[k] = has
        assert has == offered[k], f"frame {i + 1}: timestamps {'on' if has else 'off'} mid-connection"
        if not has:
            continue
        tsval, tsecr = np.frombuffer(opts[dpkt.tcp.TCP_OPT_TIMESTAMP], ">u4")
        side = int(d[i])
        if cap.flags[i] == 0x02:
            assert tsecr == 0
        else:
            assert int(tsecr) in seen.get((k, 1 - side), set()), f"frame {i + 1}: TSecr echoes nothing"
        assert tsval >= last.get((k, side), 0)
        last[(k, side)] = int(tsval)
        seen.setdefault((k, side), set()).add(int(tsval))
    assert sum(offered.values()) > 0 and not all(offered.values()), "both kinds of stack expected"
