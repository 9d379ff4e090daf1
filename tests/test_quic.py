"""HTTP/3 over QUIC for a share of the chat flows (``network.quic``): tshark dissects every
packet of those flows as QUIC (long-header Initial and Handshake packets, then short-header
1-RTT ones) with correct UDP checksums and no malformed frame; an independent parse agrees on
headers, connection ids, lengths and packet numbers; the QUIC packets keep the TCP version's
timing; the TCP flows are untouched; the tables add up."""
from __future__ import annotations

import struct
import subprocess
from collections import defaultdict

import numpy as np
import pytest

import trafficgen as tg
from trafficgen.config.network import build_network
from trafficgen.errors import ConfigError
from trafficgen.wire.profiles import PROFILES

from . import ja4ref
from .helpers import TSHARK_CHECKSUMS, NetworkRun, nfstream_module
from .netwalk import walk
from .profiles_ja4 import PROFILE_OF_JA4

QUIC_JA4 = {p.quic_ja4: name for name, p in PROFILES.items() if p.h3}

DECRYPTION_GROUP = 0x0C000000  # tshark cannot decrypt what it has no keys for: expected
CASES = {"client": ["network.quic=0.5"],
         "server_dual_vlan": ["network.quic={chat=0.6}", "network.ip=dual", "network.vlan=30",
                              "topology.capture=server"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {name: NetworkRun(tmp_path_factory.mktemp(name), over) for name, over in CASES.items()}
    out["plain"] = NetworkRun(tmp_path_factory.mktemp("plain"), [])
    return out


def varint(b: bytes, o: int) -> tuple[int, int]:
    """A QUIC variable-length integer at ``o`` (RFC 9000 section 16): (value, next offset)."""
    n = 1 << (b[o] >> 6)
    return int.from_bytes(bytes([b[o] & 0x3F]) + b[o + 1:o + n], "big"), o + n


def _label(secret: bytes, label: bytes, n: int) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
    full = b"tls13 " + label
    return HKDFExpand(hashes.SHA256(), n, struct.pack("!HB", n, len(full)) + full + b"\0").derive(secret)


def open_initial(b: bytes, client_dcid: bytes, server: bool) -> tuple[bytes, bytes]:
    """RFC 9001 section 5, written here from the RFC: remove header protection and decrypt an
    Initial packet; returns (the unprotected header, the plaintext frames)."""
    from cryptography.hazmat.primitives import hashes, hmac
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    h = hmac.HMAC(bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"), hashes.SHA256())
    h.update(client_dcid)
    secret = _label(h.finalize(), b"server in" if server else b"client in", 32)
    key, iv, hp = (_label(secret, b"quic key", 16), _label(secret, b"quic iv", 12),
                   _label(secret, b"quic hp", 16))
    dl = b[5]
    o = 6 + dl + 1 + b[6 + dl] + 1  # token length 0 (one byte)
    pn_at = o + 2  # after the two-byte Length
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    mask = enc.update(b[pn_at + 4:pn_at + 20]) + enc.finalize()
    first = b[0] ^ (mask[0] & 0x0F)
    pn_len = (first & 3) + 1
    header = bytes([first]) + b[1:pn_at] + bytes(x ^ m for x, m in zip(b[pn_at:pn_at + pn_len], mask[1:]))
    pn = int.from_bytes(header[pn_at:], "big")
    nonce = (int.from_bytes(iv, "big") ^ pn).to_bytes(12, "big")
    return header, AESGCM(key).decrypt(nonce, b[pn_at + pn_len:], header)


def quic_header(udp_payload: bytes, client_dcid: bytes | None = None, opened: bool = False) -> dict:
    b = udp_payload
    if b[0] & 0x80 and (b[0] >> 4) & 3 == 0 and not opened:  # Initial: protected for real
        dcid = b[6:6 + b[5]]
        server = client_dcid is not None and dcid != client_dcid
        header, frames = open_initial(b, client_dcid or dcid, server)
        return {**quic_header(header + frames + bytes(16), opened=True), "frames": frames}
    if b[0] & 0x80:
        assert b[0] & 0x40, "fixed bit"
        ptype = (b[0] >> 4) & 3
        (version,) = struct.unpack_from("!I", b, 1)
        dl = b[5]
        dcid = b[6:6 + dl]
        sl = b[6 + dl]
        scid = b[7 + dl:7 + dl + sl]
        o = 7 + dl + sl
        if ptype == 0:
            assert b[o] == 0, "token length"
            o += 1
        (length,) = struct.unpack_from("!H", b, o)
        assert length >> 14 == 1 and (length & 0x3FFF) == len(b) - o - 2, "Length field"
        pn = struct.unpack_from("!H", b, o + 2)[0]
        return {"long": True, "type": ptype, "version": version, "dcid": dcid, "scid": scid, "pn": pn}
    assert b[0] & 0x40, "fixed bit"
    return {"long": False, "dcid": b[1:9], "pn": struct.unpack_from("!H", b, 9)[0]}


@pytest.mark.parametrize("name", list(CASES))
def test_tshark_sees_quic_without_problems(tshark, runs, name):
    run = runs[name]
    out = subprocess.run([tshark, "-n", "-r", str(run.pcap), *TSHARK_CHECKSUMS, "-T", "fields",
                          "-E", "separator=|", "-e", "frame.protocols", "-e", "_ws.malformed",
                          "-e", "_ws.expert.group", "-e", "_ws.expert.severity",
                          "-e", "udp.checksum.status", "-e", "tcp.checksum.status",
                          "-e", "ip.checksum.status"], capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines()]
    assert len(rows) == len(run.frames)
    quic_flows = {int(f) for f, p in zip(run.flows["flow_id"], run.flows["protocol"]) if p == 17}
    assert quic_flows and len(quic_flows) < len(run.flows["flow_id"])
    for i, (chain, malformed, groups, sev, udp, tcp, ip) in enumerate(rows):
        assert not malformed and "0" not in (udp + tcp + ip).split(","), f"frame {i + 1}"
        is_quic = int(run.packets["flow_id"][i]) in quic_flows
        assert (":udp:quic" in chain) if is_quic else (":tcp" in chain), f"frame {i + 1}: {chain}"
        for g, s in zip(groups.split(","), sev.split(",")):
            if g and int(s) >= 0x00600000:  # a warning or worse: only "cannot decrypt", on QUIC
                assert is_quic and int(g) == DECRYPTION_GROUP, f"frame {i + 1}: {groups} {sev}"


@pytest.mark.parametrize("name", list(CASES))
def test_quic_headers_connection_ids_and_packet_numbers(runs, name):
    run = runs[name]
    pk = run.packets
    conns: dict[int, dict] = defaultdict(lambda: {"pn": defaultdict(list), "kinds": [], "crypto": b""})
    for i, frame in enumerate(run.frames):
        w = walk(frame)
        if w.proto != 17:
            continue
        assert w.l4[2:4] == b"\x01\xbb" or w.l4[0:2] == b"\x01\xbb", "UDP 443"
        c = conns[int(pk["flow_id"][i])]
        h = quic_header(w.l4[8:], c.get("dcid0"))
        c.setdefault("dcid0", h["dcid"])
        d = 1 if pk["direction"][i] == "down" else 0
        space = h["type"] if h["long"] else 3
        c["pn"][(d, space)].append(h["pn"])
        assert h["pn"] == pk["seq"][i] and pk["tcp_flags"][i] == 0
        assert len(w.l4) - 8 == pk["payload_len"][i]
        c["kinds"].append((d, space, len(w.l4) - 8, h))
        if "frames" in h and d == 0:
            fr = h["frames"]
            assert fr[0] == 0x06, "client Initial: CRYPTO first"
            off, o = varint(fr, 1)
            ln, o = varint(fr, o)
            assert off == len(c["crypto"]) and fr[o + ln:].strip(b"\0") == b"", "CRYPTO, PADDING"
            c["crypto"] += fr[o:o + ln]
        elif "frames" in h:
            assert h["frames"][:7] == b"\x02\x00\x00\x00\x00\x06\x00", "server Initial: ACK, CRYPTO"
            _ln, o = varint(h["frames"], 7)
            assert h["frames"][o] == 2, "a ServerHello"
            c["server_hello"] = h["frames"][o:]
    assert conns
    for fid, c in conns.items():
        kinds = c["kinds"]
        d0, sp0, n0, h0 = kinds[0]
        assert (d0, sp0) == (0, 0) and n0 >= 1200 and h0["version"] == 1, f"flow {fid}: {kinds[0]}"
        client_cid = h0["scid"]
        server_first = next(k for k in kinds if k[0] == 1)
        assert server_first[1] == 0 and server_first[3]["dcid"] == client_cid, fid
        server_cid = server_first[3]["scid"]
        for d, space, n, h in kinds:
            if d == 0 and space == 0:
                assert n >= 1200, "client Initial datagrams are padded to 1200 bytes"
            want = server_cid if d == 0 else client_cid
            if not (d == 0 and space == 0):
                assert h["dcid"] == want, f"flow {fid}: wrong destination connection id"
        for side in (0, 1):  # no Initial from a side once it has sent 1-RTT packets
            spaces = [k[1] for k in kinds if k[0] == side]
            assert 3 in spaces and 0 not in spaces[spaces.index(3):], f"flow {fid}: {spaces}"
        for (_d, _s), pns in c["pn"].items():
            assert pns == list(range(len(pns))), f"flow {fid}: packet numbers {pns[:8]}"
        hello = c["crypto"]  # the ClientHello, reassembled from the client Initials
        assert hello[0] == 1 and int.from_bytes(hello[1:4], "big") == len(hello) - 4, fid
        assert b"\x00\x10\x00\x05\x00\x03\x02h3" in hello, "ALPN h3"
        check_quic_hello(fid, hello, client_cid, c["server_hello"], kinds)


def check_quic_hello(fid, hello, client_cid, server_hello, kinds):
    """The client profile's QUIC ClientHello (its documented JA4, computed here), no session
    id, the client's connection id as initial_source_connection_id (RFC 9000 7.3), spread
    over client Initials of one size; the ServerHello picks the hybrid group iff offered."""
    h = ja4ref.parse_client_hello(hello)
    assert ja4ref.ja4(hello, "q") in QUIC_JA4, (fid, ja4ref.ja4(hello, "q"))
    assert h["session_id_len"] == 0
    params, o = dict(h["exts"])[0x0039], 0
    found = {}
    while o < len(params):
        pid, o = varint(params, o)
        ln, o = varint(params, o)
        found[pid] = params[o:o + ln]
        o += ln
    assert found[0x0F] == client_cid, fid
    sizes = {n for d, space, n, _h in kinds if (d, space) == (0, 0)}
    hybrid = any(g == 0x11EC for g, _ in ja4ref.details(h)["shares"])
    assert len(sizes) == 1 and (len(hello) > 1200) == hybrid, (fid, sizes, len(hello))
    ext = server_hello[4 + 2 + 32 + 1 + 2 + 1 + 2:]
    assert ext[:6] == b"\x00\x2b\x00\x02\x03\x04"  # supported_versions: TLS 1.3
    assert ext[10:12] == (b"\x11\xec" if hybrid else b"\x00\x1d")  # the key share's group


def test_quic_keeps_the_tcp_timing_and_tcp_flows_are_untouched(runs):
    run, ref = runs["client"], runs["plain"]
    quic = {int(f) for f, p in zip(run.flows["flow_id"], run.flows["protocol"]) if p == 17}
    ref_by_flow = defaultdict(list)
    for i, fid in enumerate(ref.packets["flow_id"]):
        ref_by_flow[int(fid)].append(i)
    got_by_flow = defaultdict(list)
    for i, fid in enumerate(run.packets["flow_id"]):
        got_by_flow[int(fid)].append(i)
    assert set(ref_by_flow) == set(got_by_flow)
    for fid, idx in got_by_flow.items():
        ref_idx = ref_by_flow[fid]
        if fid not in quic:
            assert [run.frames[i] for i in idx] == [ref.frames[i] for i in ref_idx], fid
            continue
        # each QUIC packet is one of the TCP version's, in order, at its time and direction
        # (give or take a wait for the tap's link, whose frames differ in size: microseconds);
        # after the handshake a data packet has its TCP frame's size (min. 74 bytes)
        k = 0
        for i in idx:
            while (abs(int(ref.ts[ref_idx[k]]) - int(run.ts[i])) > 100_000
                   or ref.packets["direction"][ref_idx[k]] != run.packets["direction"][i]):
                k += 1  # raises IndexError if the packet is none of the TCP ones
            j = ref_idx[k]
            k += 1
            if run.packets["phase"][i] != "handshake":
                want = 42 + max(int(ref.packets["payload_len"][j]) + 12, 32)
                assert len(run.frames[i]) == want, f"flow {fid} frame {i + 1}"
        assert len(idx) < len(ref_idx), fid


@pytest.mark.parametrize("name", list(CASES))
def test_tables_add_up(runs, name):
    run = runs[name]
    pk, flows = run.packets, run.flows
    lens = np.array([len(f) for f in run.frames], np.int64)
    assert np.array_equal(pk["wire_len"].astype(np.int64), lens)
    down = pk["direction"] == "down"
    n = int(flows["flow_id"].max()) + 1
    for col, m in (("bytes_up", ~down), ("bytes_down", down)):
        assert np.array_equal(np.bincount(pk["flow_id"][m], lens[m], minlength=n)[flows["flow_id"]],
                              flows[col])
    for col, m in (("packets_up", ~down), ("packets_down", down)):
        assert np.array_equal(np.bincount(pk["flow_id"][m], minlength=n)[flows["flow_id"]], flows[col])
    rq, keep = run.requests, pk["request_id"] >= 0
    n = int(rq["request_id"].max()) + 1
    for col, m in (("bytes_up", keep & ~down), ("bytes_down", keep & down)):
        assert np.array_equal(np.bincount(pk["request_id"][m], lens[m], minlength=n)[rq["request_id"]],
                              rq[col])
    first = {}
    for i, fid in enumerate(pk["flow_id"]):
        first.setdefault(int(fid), int(pk["ts_ns"][i]))
    assert [first[int(f)] for f in flows["flow_id"]] == list(flows["start_ns"])


def test_same_bytes_whatever_the_batching(runs, tmp_path):
    run = runs["server_dual_vlan"]
    again = tmp_path / "a.pcap"
    tg.generate(run.sc, pcap=again, batch_packets=300, window="1s")
    assert again.read_bytes() == run.pcap.read_bytes()


def test_refusals():
    with pytest.raises(ConfigError) as e:
        tg.load_scenario("chat", ["network.quic={kv_transfer=0.5}"])
    assert e.value.key == "network.quic"
    with pytest.raises(ConfigError) as e:
        tg.load_scenario("chat", ["network.quic=0.2", "network.mtu=1000"])
    assert e.value.key == "network.mtu" and "1280" in e.value.problem
    for mtu, ok in ((1824, True), (1825, False), (1827, True)):  # chrome's hello: 1 Initial
        sc = tg.load_scenario("chat", ["network.quic=1", f"network.mtu={mtu}",
                                       "chat.client_profiles=chrome"], duration="1s")
        if ok:
            tg.generate(sc, packets=None)
            continue
        with pytest.raises(tg.TrafficgenError,
                           match="network.mtu: 1825 .* at least 1827, or at most 1824"):
            tg.generate(sc, packets=None)
    net = tg.load_scenario("chat", ["network.quic=0.3"]).network
    assert net.quic[0] == 0.3 and net.quic[-1] == 0.0  # a share for all: the TCP/TLS classes
    assert build_network  # the same checks, called by config


def test_initial_keys_match_rfc9001_appendix_a():
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from trafficgen.wire.quic import SALT_V1, expand_label, hkdf_extract, initial_keys
    dcid = bytes.fromhex("8394c8f03e515708")
    client = expand_label(hkdf_extract(SALT_V1, dcid), b"client in", 32)
    assert expand_label(client, b"quic key", 16).hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert expand_label(client, b"quic iv", 12).hex() == "fa044b2f42a3fd3b46fb255c"
    assert expand_label(client, b"quic hp", 16).hex() == "9f50449e04a0e810283a1e9933adedd2"
    server = expand_label(hkdf_extract(SALT_V1, dcid), b"server in", 32)
    assert expand_label(server, b"quic key", 16).hex() == "cf3a5331653c364c88f0f379b6067e37"
    aead, iv, _hp = initial_keys(dcid, False)
    assert isinstance(aead, AESGCM) and iv.hex() == "fa044b2f42a3fd3b46fb255c"


def test_tshark_decrypts_the_initials(tshark, runs):
    """The Initials are sealed with their real keys: tshark decrypts every one (no warning
    on them), finds CRYPTO frames, and reassembles one HTTP/3 ClientHello per QUIC flow."""
    run = runs["client"]
    out = subprocess.run([tshark, "-n", "-r", str(run.pcap), "-Y", "quic.long.packet_type == 0",
                          "-T", "fields", "-E", "separator=|", "-e", "quic.frame_type",
                          "-e", "_ws.expert.severity"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out
    for line in out:
        frames, sev = line.split("|")
        assert "6" in frames.split(","), line  # a CRYPTO frame (or PING+PADDING: none here)
        assert not [s for s in sev.split(",") if s and int(s) >= 0x00600000], line
    hellos = subprocess.run([tshark, "-n", "-r", str(run.pcap), "-Y", "quic && tls.handshake.type == 1",
                             "-T", "fields", "-e", "tls.handshake.extensions_alpn_str",
                             "-e", "tls.handshake.extensions_server_name"],
                            capture_output=True, text=True, check=True).stdout.split("\n")
    n_quic = int((run.flows["protocol"] == 17).sum())
    sni = tg.load_scenario("chat").params["chat"].sni  # the class's service, as over TCP
    assert [h for h in hellos if h] == [f"h3\t{sni}"] * n_quic


def test_ndpi_reads_quic_sni_and_ja4(runs):
    """nDPI (nfstream) decrypts the Initials itself: each QUIC flow's server name is the
    class's service and its JA4 the QUIC one its client's profile documents (both browsers
    seen); a client keeps its profile across TCP and QUIC; profiles without an HTTP/3 stack
    (okhttp here) never appear on QUIC."""
    run = runs["client"]
    df = nfstream_module().NFStreamer(str(run.pcap), statistical_analysis=False, n_dissections=20,
                                      idle_timeout=3600, active_timeout=7200).to_pandas()
    sni = tg.load_scenario("chat").params["chat"].sni
    tcp_ja4 = PROFILE_OF_JA4  # (full and resumed hellos)
    quic, tcp, per_client = [], [], defaultdict(set)
    for r in df.itertuples():
        assert r.requested_server_name == sni, r
        names = QUIC_JA4 if r.protocol == 17 else tcp_ja4
        name = names.get(r.client_fingerprint, r.client_fingerprint)
        (quic if r.protocol == 17 else tcp).append(name)
        per_client[r.src_ip].add(name)
        assert r.application_category_name == "ArtifIntelligence", r
    assert len(quic) == int((run.flows["protocol"] == 17).sum())
    assert set(quic) == {"chrome", "firefox"} and "okhttp" in tcp, (set(quic), set(tcp))
    assert all(len(v) == 1 for v in per_client.values()), per_client
