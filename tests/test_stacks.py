"""Hosts' TCP/IP stacks on the wire (``kernels.stacks``): a passive OS fingerprinter (p0f 3 and
its own database) names the OS the flow table's ``client_os`` says from each SYN alone, and
Linux from each server's SYN/ACK; the client profile is read back from the ClientHello by
tshark, so each profile's OS is checked against what it claims (``wire.profiles.PROFILE_OS``).
Beside it, dpkt reads TTLs and IPv4 ids: a server shows one TTL at one tap, a Windows host's ids
come from one counter, an Apple host's are random."""
from __future__ import annotations

import subprocess
from collections import Counter, defaultdict

import dpkt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trafficgen as tg
from trafficgen.labels import OSES
from trafficgen.wire.profiles import PROFILE_OS

from .helpers import batch_tables, require_tool, splitmix64_finaliser

PROFILES = {"chrome": 0.4, "okhttp": 0.2, "python": 0.2, "curl": 0.2}
# the profiles' ClientHellos told apart by their cipher suites' bytes (wire.profiles)
SUITE_BYTES = {32: "chrome", 30: "okhttp", 36: "python", 62: "curl"}


def p0f_os(label: str) -> str:
    """p0f's OS name as the flow table's vocabulary."""
    if label.startswith("Linux (Android)"):
        return "android"
    if label.startswith("Linux"):
        return "linux"
    if label.startswith("Windows"):
        return "windows"
    if label.startswith("Mac OS") or label.startswith("MacOS"):
        return "macos"
    if label.startswith("iOS"):
        return "ios"
    return label


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stacks")
    profiles = "{" + ",".join(f"{k}={v}" for k, v in PROFILES.items()) + "}"
    sc = tg.load_scenario("chat", ["chat.rate=16/s", f"chat.client_profiles={profiles}"],
                          duration="6s", seed=11)
    pcap = tmp / "stacks.pcap"
    tg.generate(sc, pcap=pcap)
    (flows,) = batch_tables(sc, "flows")
    return pcap, flows


def test_p0f_names_each_profiles_os(run, tshark, tmp_path):
    p0f = require_tool("p0f")
    pcap, flows = run
    log = tmp_path / "p0f.log"
    subprocess.run([p0f, "-r", str(pcap), "-o", str(log)], check=True, capture_output=True,
                   timeout=120)
    syn, synack = {}, {}
    for line in log.read_text().splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split("] ", 1)[1].split("|"))
        if fields["mod"] in ("syn", "syn+ack"):
            (syn if fields["mod"] == "syn" else synack)[fields["cli"]] = p0f_os(fields["os"])
    hello = subprocess.run([tshark, "-r", str(pcap), "-Y", "tls.handshake.type == 1", "-T",
                            "fields", "-e", "ip.src", "-e", "tcp.srcport", "-e",
                            "tls.handshake.cipher_suites_length"],
                           check=True, capture_output=True, text=True, timeout=120).stdout
    profile = {f"{a}/{p}": SUITE_BYTES[int(n)] for a, p, n in
               (line.split("\t") for line in hello.splitlines())}
    names = np.asarray(OSES)
    table = {f"{ip}/{port}": names[code] for ip, port, code in
             zip(tg_ips(flows["src_ip"]), flows["src_port"].tolist(), flows["client_os"].tolist())}
    assert len(syn) == len(table) == len(synack) > 100
    agree = Counter(syn[k] == table[k] for k in table)
    assert agree[True] >= 0.95 * len(table), agree
    assert Counter(synack.values())["linux"] >= 0.95 * len(synack), Counter(synack.values())
    per_profile = defaultdict(Counter)
    for k, os_name in syn.items():
        per_profile[profile[k]][os_name] += 1
    assert set(per_profile) == set(PROFILES)
    for name, seen in per_profile.items():
        claims = {OSES[code] for code, _ in PROFILE_OS[name]}
        assert sum(seen[o] for o in claims) >= 0.95 * sum(seen.values()), (name, seen)
    assert len(per_profile["chrome"]) >= 2  # chrome runs on several (Windows, macOS, Linux)
    assert per_profile["okhttp"]["android"] >= 0.95 * sum(per_profile["okhttp"].values())


def tg_ips(col) -> list[str]:
    return [".".join(str((int(a) >> s) & 255) for s in (24, 16, 8, 0)) for a in col]


def test_ttl_per_server_and_ipv4_ids_per_stack(run):
    pcap, flows = run
    os_of = {(int(ip), int(port)): OSES[c] for ip, port, c in
             zip(flows["src_ip"], flows["src_port"], flows["client_os"])}
    server_ttl = defaultdict(set)
    ids = defaultdict(list)  # (client, port) -> [(t, id, syn)] of the client's packets
    with open(pcap, "rb") as fh:
        for t, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            tcp = ip.data
            src = int.from_bytes(ip.src, "big")
            if (src, tcp.sport) in os_of:
                ids[(src, tcp.sport)].append((t, ip.id, bool(tcp.flags & dpkt.tcp.TH_SYN)))
            else:
                server_ttl[src].add(ip.ttl)
    assert server_ttl and all(len(v) == 1 for v in server_ttl.values()), server_ttl
    consecutive = defaultdict(lambda: [0, 0])
    host_syns = defaultdict(list)
    for key, rows in ids.items():
        d = np.diff([i for _, i, _ in rows]) % 65536
        consecutive[os_of[key]][0] += int((d == 1).sum())
        consecutive[os_of[key]][1] += len(d)
        host_syns[(os_of[key], key[0])] += [(t, i) for t, i, s in rows if s]
    for name in ("linux", "android", "windows"):  # a counter: +1 a packet in a connection
        assert consecutive[name][0] == consecutive[name][1] > 0, name
    assert consecutive["macos"][0] < 0.01 * consecutive["macos"][1]  # random
    # Windows: one counter per host, so a host's later connections start at higher ids
    later = [(b[1] - a[1]) % 65536 < 32768 for o, h in host_syns.items() if o[0] == "windows"
             for a, b in zip(sorted(h), sorted(h)[1:])]
    assert later and all(later), later


def _host_ipids_reference(out, c_os, c_ipid, host_key, c_addr):
    """``kernels.stacks.host_ipids`` as first written: two passes over the rows, in Python."""
    from trafficgen.kernels import stacks as ks
    from trafficgen.kernels.rng import derive
    first: dict = {}
    for t, c, _, _ in out:
        if first.get(c, -1) < 0 or t < first[c]:
            first[c] = t
    ids = out[:, 3].copy()
    for i, (_, c, d, ident) in enumerate(out):
        if d == 0 and ks.STACKS[c_os[c, 0], ks.K_IPID] == ks.IPID_GLOBAL:
            start = splitmix64_finaliser(int(derive(np.uint64(host_key), np.int64(c_addr[c])))) & 0xFFFF
            start += max(first[c], 0) // ks.IPID_TICK_NS
            ids[i] = (start + ((ident - c_ipid[c, 0]) & 0xFFFF)) & 0xFFFF
    return ids


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.lists(st.tuples(
    st.integers(-3_000_000, 50_000_000), st.integers(0, 1), st.integers(0, 70_000)),
    min_size=1, max_size=12)), min_size=1, max_size=10), st.randoms(use_true_random=False))
def test_host_ipids_in_one_pass_are_the_two_pass_ids(conns, rnd):
    """Each connection's rows together (as the simulation writes them), in any connection
    order: the one-pass kernel gives the ids of the two-pass rule, warm-up times (< 0)
    included; a connection whose rows are split is reported."""
    from trafficgen.kernels import stacks as ks
    order = list(range(len(conns)))
    rnd.shuffle(order)
    rows = [(t, c, d, ident) for c in order for t, d, ident in conns[c][1]]
    out = np.array(rows, np.int64).reshape(-1, 4)
    c_os = np.array([[os_, 0] for os_, _ in conns], np.int64)
    c_ipid = np.array([[rnd.randrange(65536), 0] for _ in conns], np.int64)
    c_addr = np.array([0x0A000000 + rnd.randrange(1 << 16) for _ in conns], np.int64)
    want = _host_ipids_reference(out, c_os, c_ipid, 0x1234, c_addr)
    cols = np.arange(4, dtype=np.int64)
    got = out.copy()
    assert ks.host_ipids(got, cols, c_os, c_ipid, np.uint64(0x1234), c_addr,
                         np.empty(len(conns), np.int64)) == 0
    assert (got[:, 3] == want).all()
    assert (got[:, :3] == out[:, :3]).all()
    if out.shape[0] > 2 and len(set(out[:, 1])) > 1:  # one connection's rows around another's
        c = int(out[0, 1])
        split = np.concatenate([out[:1], out[out[:, 1] != c], out[1:][out[1:, 1] == c]])
        if (split[-1, 1] == c) and (split[1, 1] != c):
            assert ks.host_ipids(split, cols, c_os, c_ipid, np.uint64(0x1234), c_addr,
                                 np.empty(len(conns), np.int64)) == 1
