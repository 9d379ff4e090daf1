"""Handshakes that DPI engines believe: tshark dissects every ClientHello and ServerHello of a
run with every TCP class and client profile (SNI, ALPN, groups, key shares; the hybrid hello
reassembled from two segments, nothing malformed), and nDPI (through nfstream) reports each
flow's server name as the scenario says, its JA4 as the profile documents, and the public AI
services in its AI category."""
from __future__ import annotations

import ipaddress
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

import trafficgen as tg
from trafficgen.wire.profiles import PROFILES

from .helpers import TSHARK_PROBLEMS, nfstream_module, run_tshark
from .profiles_ja4 import PROFILE_OF_JA4

# every TCP class at the servers' end (realtime voice over WebSocket/TLS too); chat's clients
# on three profiles in equal shares, so each profile shows in a short run
DPI_RUN = dict(overrides=["topology.capture=server", "chat.rate=3/s",
                          "chat.client_profiles={chrome=1, firefox=1, okhttp=1}",
                          "multimodal.voice_rate=0.5/s", "multimodal.voice.rtp_share=0",
                          "multimodal.video_rate=0"],
               duration="10s", seed=2)
PUBLIC_AI = {"chatgpt.com", "claude.ai", "gemini.google.com", "api.openai.com"}  # nDPI: AI


@pytest.fixture(scope="module")
def dpi_run(tmp_path_factory, make_run):
    sc = tg.load_scenario("enterprise-mix", DPI_RUN["overrides"], duration=DPI_RUN["duration"],
                          seed=DPI_RUN["seed"])
    return make_run(tmp_path_factory.mktemp("dpi_run"), sc)


def expected(sc) -> dict:
    """(class, server address, port) -> (SNI, the JA4s of the class's profiles)."""
    out = {}
    for cls, p in sc.params.items():
        if not hasattr(p, "client_profiles"):
            continue
        names = {name for name, _ in p.client_profiles}
        ja4s = {j for j, name in PROFILE_OF_JA4.items() if name in names}
        topo = sc.topology_of(cls)
        services = [(topo.servers, topo.server_port, getattr(p, "sni", ""))]
        for svc in ("tools", "embed", "search", "rerank"):
            if hasattr(p, svc):
                s = getattr(p, svc)
                services.append((s.servers, s.port, s.sni))
        for servers, port, sni in services:
            for a in servers:
                out[(cls, int(a), port)] = (sni, ja4s)
    return out


def flows_of(run) -> dict:
    """(client ip, client port, server ip, server port) -> (class, expected SNI, JA4s)."""
    t = pq.read_table(run.flows)
    classes = t.column("class").to_pylist()
    f = {k: t.column(k).to_pylist() for k in ("src_ip", "src_port", "dst_ip", "dst_port")}
    want = expected(run.scenario)
    return {(f["src_ip"][i], f["src_port"][i], f["dst_ip"][i], f["dst_port"][i]):
            (classes[i], *want[(classes[i], int(ipaddress.IPv4Address(f["dst_ip"][i])),
                                f["dst_port"][i])])
            for i in range(len(classes))}


def test_tshark_dissects_every_handshake(tshark, dpi_run):
    flows = flows_of(dpi_run)
    ports = sorted({k[3] for k in flows} - {443})
    decode = [a for p in ports for a in ("-d", f"tcp.port=={p},tls")]
    assert run_tshark(tshark, dpi_run.pcap, *decode, "-o", "tcp.check_checksum:TRUE",
                      "-o", "ip.check_checksum:TRUE", "-Y", TSHARK_PROBLEMS,
                      "-T", "fields", "-e", "frame.number").split() == []
    out = run_tshark(tshark, dpi_run.pcap, *decode, "-Y", "tls.handshake.type == 1", "-T", "fields",
                     "-E", "separator=|", "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst",
                     "-e", "tcp.dstport", "-e", "tls.handshake.extensions_server_name",
                     "-e", "tls.handshake.extensions_alpn_str",
                     "-e", "tls.handshake.extensions_supported_group",
                     "-e", "tls.handshake.extensions_key_share_group", "-e", "tcp.segment.count")
    rows = [r.split("|") for r in out.splitlines()]
    assert len(rows) == len(flows), "a flow without a dissected ClientHello (or two)"
    seen_split = 0
    for src, sport, dst, dport, sni, alpn, groups, shares, segments in rows:
        cls, want_sni, _ = flows[(src, int(sport), dst, int(dport))]
        assert sni == want_sni, (cls, sni)
        assert alpn in ("h2,http/1.1", "http/1.1"), alpn
        assert "0x001d" in groups.split(",") or "29" in groups.split(",")
        hybrid = "4588" in shares.split(",")  # X25519MLKEM768 = 0x11ec
        if hybrid:  # 1,216 bytes of share: the hello spans two segments, reassembled
            assert int(segments or 1) >= 2
            seen_split += 1
    assert seen_split > 0
    out = run_tshark(tshark, dpi_run.pcap, *decode, "-Y", "tls.handshake.type == 2", "-T", "fields",
                     "-e", "tls.handshake.extensions_key_share_group",
                     "-e", "tls.handshake.extensions.supported_version")
    server = Counter(tuple(r.split("\t")) for r in out.splitlines())
    assert sum(server.values()) == len(flows)
    assert set(server) <= {("4588", "0x0304"), ("29", "0x0304")}, server


def test_ndpi_reads_sni_ja4_and_category(dpi_run):
    nfstream = nfstream_module()
    flows = flows_of(dpi_run)
    df = nfstream.NFStreamer(str(dpi_run.pcap), statistical_analysis=False, n_dissections=20,
                             idle_timeout=3600, active_timeout=7200).to_pandas()
    got = {}
    for r in df.itertuples():
        key = (r.src_ip, int(r.src_port), r.dst_ip, int(r.dst_port))
        if key in flows:
            got[key] = (r.requested_server_name, r.client_fingerprint, r.application_category_name)
    assert set(got) == set(flows), "nDPI saw other flows than the flow table"
    ja4_seen = Counter()
    for key, (sni, ja4, category) in got.items():
        cls, want_sni, ja4s = flows[key]
        assert sni == want_sni, (cls, sni, want_sni)
        assert ja4 in ja4s, (cls, ja4, ja4s)
        ja4_seen[PROFILE_OF_JA4[ja4]] += 1
        if want_sni in PUBLIC_AI:
            assert category == "ArtifIntelligence", (want_sni, category)
    # every profile the scenario names is seen, with the JA4 its table documents
    wanted = {n for p in dpi_run.scenario.params.values() for n, _ in getattr(p, "client_profiles", ())}
    assert set(ja4_seen) == wanted, (ja4_seen, wanted)
    assert wanted == set(PROFILES)


def test_profiles_follow_clients(dpi_run):
    """A client machine keeps its TLS stack: every connection of one client address in one
    class has one profile's JA4, full or resumed (the profile is drawn per client, not per
    connection)."""
    nfstream = nfstream_module()
    df = nfstream.NFStreamer(str(dpi_run.pcap), statistical_analysis=False).to_pandas()
    flows = flows_of(dpi_run)
    per = {}
    for r in df.itertuples():
        cls = flows[(r.src_ip, int(r.src_port), r.dst_ip, int(r.dst_port))][0]
        per.setdefault((cls, r.src_ip), set()).add(PROFILE_OF_JA4.get(r.client_fingerprint, r.client_fingerprint))
    assert all(len(v) == 1 for v in per.values()), per
    assert np.mean([len(v) for v in per.values()]) == 1


def test_server_hello_echoes_the_session_id(tshark, dpi_run):
    """RFC 8446 4.1.3: the ServerHello's legacy_session_id_echo is the ClientHello's session
    id, connection by connection (32 bytes from the seed: every profile here sends one), and
    the connections' session ids differ."""
    flows = flows_of(dpi_run)
    ports = sorted({k[3] for k in flows} - {443})
    decode = [a for p in ports for a in ("-d", f"tcp.port=={p},tls")]
    out = run_tshark(tshark, dpi_run.pcap, *decode, "-Y", "tls.handshake.type == 1 || "
                     "tls.handshake.type == 2", "-T", "fields", "-E", "separator=|",
                     "-e", "tcp.stream", "-e", "tls.handshake.type", "-e", "tls.handshake.session_id")
    sid: dict[tuple[str, str], str] = {}
    for line in out.splitlines():
        stream, kind, value = line.split("|")
        assert (stream, kind) not in sid, line
        sid[(stream, kind)] = value
    streams = {s for s, _ in sid}
    assert len(streams) == len(flows)
    for s in streams:
        client, server = sid[(s, "1")], sid[(s, "2")]
        assert len(bytes.fromhex(client.replace(":", ""))) == 32, client
        assert server == client, (s, client, server)
    assert len({sid[(s, "1")] for s in streams}) == len(streams)
