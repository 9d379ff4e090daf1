"""Client profiles and services: each profile's ClientHello parses, carries what the profile
says and has the JA4 it documents (computed here by an independent reader, ``ja4ref``); the
curl and python profiles are the real stacks' bytes; scenarios choose profiles and services and
refuse bad ones; the HTTP framing sizes follow the negotiated protocol."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import trafficgen as tg
from trafficgen.classes.common import host_delays, tls_conns
from trafficgen.config.scenario import Scenario
from trafficgen.errors import TrafficgenError
from trafficgen.kernels import tlsvar
from trafficgen.kernels.chat import tls_wire
from trafficgen.kernels.rng import derive_range
from trafficgen.kernels.tcp import W_REQ, WF_BYTES, WF_COLS, WF_DEP, WF_DIR, WF_FLAGS, WF_LAYOUT, WF_PHASE, WF_REQ
from trafficgen.schema import DIR_DOWN, DIR_UP, PH_HANDSHAKE, PH_REQUEST, PH_STREAM, PH_TEARDOWN
from trafficgen.wire.hello import GREASE_CODE, GREASE_OTHER, client_hello, permuted, quic_hello
from trafficgen.wire.profiles import GREASE, PROFILES
from trafficgen.wire.tls import COPIES, LAYOUTS, ORDERINGS, CombinedTemplates, Templates, Variant

from . import ja4ref
from .helpers import cli

GOLDEN = Path(__file__).parent / "golden"
# JA4 strings published for these browsers (FoxIO ja4 database and vendor write-ups), written
# here independently of the profile table
PUBLISHED = {"chrome": "t13d1516h2_8daaf6152771_d8a2da3f94cd",
             "firefox": "t13d1717h2_5b57614c22b0_3cbfd9057e0d"}
HYBRID = {"chrome", "firefox"}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_hello_parses_and_has_its_documented_ja4(name):
    p = PROFILES[name]
    data, mask = client_hello(p, "api.example.com")
    assert len(mask) == len(data)
    h = ja4ref.parse_client_hello(data)
    d = ja4ref.details(h)
    assert d["sni"] == "api.example.com"
    assert d["alpn"] == list(p.alpn)
    assert 0x0304 in d["versions"]
    share_groups = [g for g, _ in d["shares"] if g not in ja4ref.GREASE]
    assert (0x11EC in share_groups) == (name in HYBRID)
    assert dict(d["shares"]).get(0x11EC, 1216) == 1216 and dict(d["shares"])[0x001D] == 32
    assert any(s in ja4ref.GREASE for s in h["suites"]) == (name == "chrome")
    assert ja4ref.ja4(data) == p.ja4, name
    if name in PUBLISHED:
        assert p.ja4 == PUBLISHED[name]
    # the holes are exactly the client random and the key shares / ECH; the session id is
    # the connection's echo bytes (mask 4), which the ServerHello echoes
    assert mask[44:76] == b"\x04" * 32 and data[44:76] == bytes(range(32))
    holes = mask.count(0)
    shares = sum(n for g, n in d["shares"] if g not in ja4ref.GREASE)
    ech = 1 + 32 + 208 if any(t == 0xFE0D for t, _ in h["exts"]) else 0
    assert holes == 32 + shares + ech


def test_ja4_reference_reads_real_client_hellos():
    """The reference function on real stacks' bytes (never built by trafficgen)."""
    curl = bytes.fromhex((GOLDEN / "clienthello-curl-7.88.1-openssl-3.0.19.hex").read_text())
    assert ja4ref.ja4(curl) == "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6"  # published for curl + OpenSSL 3
    assert ja4ref.ja4(curl, "q").startswith("q13d3112h2_")


@pytest.mark.parametrize("name, capture", [
    ("curl", "clienthello-curl-7.88.1-openssl-3.0.19.hex"),
    ("python", "clienthello-cpython-3.11.7-openssl-3.0.19-alpn-http1.1.hex")])
def test_openssl_profiles_are_the_real_stacks_bytes(name, capture):
    real = bytes.fromhex((GOLDEN / capture).read_text())
    data, mask = client_hello(PROFILES[name], "api.openai.com")
    assert len(data) == len(real) == 517
    diff = [i for i in range(len(real)) if mask[i] == 1 and data[i] != real[i]]
    assert diff == [], f"{name}: fixed bytes differ from the capture at {diff[:8]}"


def test_sni_alpn_and_no_sni():
    data, _ = client_hello(PROFILES["chrome"], "gemini.google.com", ("http/1.1",))
    d = ja4ref.details(ja4ref.parse_client_hello(data))
    assert d["sni"] == "gemini.google.com" and d["alpn"] == ["http/1.1"]
    assert ja4ref.ja4(data).startswith("t13d1516h1_")
    data, _ = client_hello(PROFILES["python"], "")
    assert ja4ref.details(ja4ref.parse_client_hello(data))["sni"] is None
    assert ja4ref.ja4(data).startswith("t13i1811h1_")


def test_template_table_layouts():
    v = [Variant("chrome", "chatgpt.com"), Variant("python", "api.openai.com")]
    t = Templates(v, 4600, psk=214)
    assert t.length.shape[0] == 1 + LAYOUTS * len(v)
    hello1 = bytes(t.data[t.start[6]:t.start[6] + t.length[6]])  # variant 1's ClientHello
    assert ja4ref.details(ja4ref.parse_client_hello(hello1))["sni"] == "api.openai.com"
    psk1 = bytes(t.data[t.start[9]:t.start[9] + t.length[9]])  # ... and its resumption's
    exts = [e for e, _ in ja4ref.parse_client_hello(psk1)["exts"]]
    assert exts[-1] == 0x0029 and 0x002D in exts and 0x0015 not in exts  # PSK last, no padding
    # chrome's hello: ORDERINGS copies (extension orders), one picked per connection
    assert t.start[2] - t.start[1] == ORDERINGS * t.length[1]
    assert t.mask[t.start[1]] == COPIES | (ORDERINGS.bit_length() - 1)
    c = CombinedTemplates([t, t])
    assert c.length.shape[0] == 1 + 2 * CombinedTemplates.PER_MODEL
    assert c.length[CombinedTemplates.PER_MODEL + 6] == t.length[6]
    assert 1 + 7 * CombinedTemplates.PER_MODEL <= 256  # layout ids are one byte
    with pytest.raises(TrafficgenError, match="at most 7"):
        Templates([Variant("chrome", f"h{i}.example.com") for i in range(8)], 4600)


def test_chrome_permutes_and_greases_per_connection():
    """Chrome's orderings keep GREASE first and last, every other extension once, and one
    JA4 (it sorts); GREASE values are per-connection mask codes, fixed in a plain hello."""
    p = PROFILES["chrome"]
    orders = {permuted(p, i) for i in range(1, ORDERINGS + 1)}
    assert len(orders) == ORDERINGS
    for o in orders:
        assert o[0] == o[-1] == GREASE and sorted(o) == sorted(p.extensions)
    data, mask = client_hello(p, "chatgpt.com", order=5, drawn=True)
    # cipher, group, key share, version, first extension; the last extension (GREASE_OTHER)
    assert mask.count(GREASE_CODE) == 2 * 5 and mask.count(GREASE_OTHER) == 2
    fixed = [client_hello(p, "chatgpt.com", order=i)[0] for i in (1, 2, 3)]
    assert len({ja4ref.ja4(d) for d in fixed}) == 1 and ja4ref.ja4(fixed[0]) == p.ja4
    assert permuted(PROFILES["firefox"], 7) == PROFILES["firefox"].extensions


def test_scenarios_choose_profiles_and_services():
    sc = tg.load_scenario("enterprise-mix")
    assert sc.params["chat"].sni == "chatgpt.com"
    assert dict(sc.params["chat"].client_profiles) == pytest.approx(
        {"chrome": 0.6, "firefox": 0.25, "okhttp": 0.15})
    assert sc.params["agentic"].tools.sni == "mcp.tools.example.com"
    assert sc.params["rag"].search.sni == "qdrant.rag.corp.example"
    sc = tg.load_scenario("chat", ["chat.client_profiles=curl", "chat.sni=Chat.Corp.Example",
                                   "chat.alpn=[\"http/1.1\"]"])
    p = sc.params["chat"]
    assert p.client_profiles == (("curl", 1.0),) and p.sni == "chat.corp.example"
    assert p.alpn == ("http/1.1",)
    assert Scenario.from_dict(sc.to_dict()) == sc


def _cli(*args):
    return cli(*args)


@pytest.mark.parametrize("override, words", [
    ("chat.client_profiles=netscape", ["chat.client_profiles", "netscape", "chrome"]),
    ("chat.client_profiles={chrome=-1}", ["chat.client_profiles", "weight"]),
    ("chat.client_profiles={chrome=0}", ["chat.client_profiles", "not all be 0"]),
    ("chat.client_profiles={chrome=1,firefox=1,curl=1,python=1,okhttp=1}",
     ["chat.client_profiles", "1 to 4"]),
    ("chat.sni=-bad-.example.com", ["chat.sni", "hostname"]),
    ("chat.sni=10.0.0.1", ["chat.sni", "hostname"]),
    ("chat.alpn=[\"\"]", ["chat.alpn", "ALPN"]),
    ("agentic.tools={sni=\"a..b\", servers=[\"10.0.0.1\"], rtt=\"1ms\", latency=0, "
     "request_bytes=100, response_bytes=100}", ["agentic.tools", "sni"]),
])
def test_bad_profiles_and_services_are_refused(tmp_path, capsys, override, words):
    from trafficgen.cli.main import main  # in this process: quick (test_cli runs the CLI's own)
    code = main(["generate", "agentic" if override.startswith("agentic") else "chat", "-t",
                 override, "-o", str(tmp_path / "x.pcap")])
    _out, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)
    assert not list(tmp_path.iterdir())


def _connection(n_stream: int, ticket: bool = True) -> np.ndarray:
    """One connection's writes as the chat kernel makes them (HTTP/2 sizes)."""
    rows = [(DIR_UP, 1750, PH_HANDSHAKE, 0, -1, 1), (DIR_DOWN, 4600, PH_HANDSHAKE, 0, -1, 2),
            (DIR_UP, 64, PH_HANDSHAKE, 0, -1, 3)]
    if ticket:
        rows.append((DIR_DOWN, tls_wire(478), PH_HANDSHAKE, 0, -1, 0))
    for r in range(2):
        rows.append((DIR_UP, tls_wire(5000), PH_REQUEST, W_REQ, r, 0))
        rows += [(DIR_DOWN, tls_wire(300), PH_STREAM, 0, r, 0)] * n_stream
    rows.append((DIR_UP, 24, PH_TEARDOWN, 2, -1, 0))
    wd = np.zeros((len(rows), WF_COLS), np.int64)
    for i, (d, b, ph, fl, req, lay) in enumerate(rows):
        wd[i, WF_DIR], wd[i, WF_BYTES], wd[i, WF_PHASE] = d, b, ph
        wd[i, WF_FLAGS], wd[i, WF_REQ], wd[i, WF_LAYOUT] = fl, req, lay
    return wd


@pytest.mark.parametrize("h2", [1, 0])
def test_http_framing_sizes(h2):
    wd0 = _connection(3)
    wd = wd0.copy()
    one = np.zeros(1, np.int64)
    var = np.zeros((1, tlsvar.VA_COLS), np.int64)
    var[0, [tlsvar.VA_HELLO, tlsvar.VA_FLIGHT, tlsvar.VA_H2]] = 1788, 4700, h2
    sc = tg.load_scenario("chat")
    cc = tls_conns(one, np.array([wd.shape[0]]), one, one, one, None, None, None)
    tlsvar.assign(wd, cc, np.uint64(1), np.array([1.0]), var, 1, 36,
                  host_delays(sc, "chat", sc.chat, True))
    assert list(wd[:3, WF_LAYOUT]) == [37, 38, 39] and list(wd[:3, WF_BYTES][:2]) == [1788, 4700]
    grow = wd[:, WF_BYTES] - wd0[:, WF_BYTES]
    req = np.flatnonzero(wd[:, WF_PHASE] == PH_REQUEST)
    down = np.flatnonzero(wd[:, WF_PHASE] == PH_STREAM)
    if h2:  # preface once, server SETTINGS with the ticket, HEADERS per response
        assert list(grow[req]) == [tlsvar.H2_CLIENT_PREFACE, 0]
        assert grow[3] == tlsvar.H2_SERVER_PREFACE
        assert list(grow[down]) == [tlsvar.H2_RESPONSE_HEADERS, 0, 0] * 2
    else:  # headers uncompressed, a status line per response, chunk headers for DATA headers
        assert list(grow[req]) == [tlsvar.H1_REQUEST_EXTRA] * 2 and grow[3] == 0
        chunk = len(f"{300 - 9:x}") + 4 - 9
        assert list(grow[down]) == [tlsvar.H1_RESPONSE_HEAD + chunk, chunk, chunk] * 2
    assert grow[-1] == 0  # close_notify


# what no QUIC ClientHello carries (TLS 1.2 only, or TLS records): written here from RFC 9001
TCP_ONLY = {0x0017, 0xFF01, 0x000B, 0x0023, 0x0016, 0x0015, 0x001C}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_quic_hello_of_each_http3_stack_and_its_documented_ja4(name):
    """A profile whose stack speaks HTTP/3 sends its own ClientHello over QUIC: the TCP
    hello's suites (TLS 1.3 ones), groups, key shares and signature algorithms, no session
    id, no TLS-1.2-only extension or padding, ALPN h3 and the transport parameters; its JA4
    ("q" for QUIC) is the one the profile documents. The others have no QUIC variant."""
    p = PROFILES[name]
    if not p.h3:
        assert name in ("curl", "python", "okhttp") and not p.quic_ja4
        with pytest.raises(TrafficgenError):
            quic_hello(p, "chatgpt.com")
        return
    data, mask = quic_hello(p, "chatgpt.com")
    assert len(mask) == len(data) and data[0] == 1  # a handshake message: no TLS record
    h = ja4ref.parse_client_hello(data)
    assert h["session_id_len"] == 0
    tcp = ja4ref.parse_client_hello(client_hello(p, "chatgpt.com")[0])
    q, t = ja4ref.details(h), ja4ref.details(tcp)
    assert q["sni"] == "chatgpt.com" and q["alpn"] == ["h3"]
    for k in ("groups", "shares", "sigalgs"):
        assert q[k] == t[k], k
    assert [v for v in q["versions"] if v not in ja4ref.GREASE] == [0x0304]
    assert h["suites"] == [s for s in tcp["suites"] if s in ja4ref.GREASE or s >> 8 == 0x13]
    types = [e for e, _ in h["exts"]]
    assert 0x0039 in types and not TCP_ONLY & set(types)
    assert [e for e in types if e != 0x0039] == [e for e, _ in tcp["exts"] if e not in TCP_ONLY]
    assert ja4ref.ja4(data, "q") == p.quic_ja4 and p.quic_ja4.startswith("q13d")


@pytest.mark.parametrize("resumption, lifetime_s, resumed", [(1.0, 7200, True), (0.0, 7200, False),
                                                            (1.0, 30, False)])
def test_a_repeat_connection_resumes(resumption, lifetime_s, resumed):
    """Two connections of one session to one endpoint, the second opening 60 s after the
    first's last answer: it resumes (PSK layouts and sizes, no signature in the server's
    delay) if the share says so and the ticket still lives."""
    one = _connection(1)
    one[:5, WF_DEP] = -1, 0, 1, 2, 2  # hello, flight, Finished, ticket, first request
    wd = np.concatenate([one, one])
    n = one.shape[0]
    var = np.zeros((1, tlsvar.VA_COLS), np.int64)
    var[0, [tlsvar.VA_HELLO, tlsvar.VA_FLIGHT, tlsvar.VA_PSK_HELLO, tlsvar.VA_RESUMED_FLIGHT,
            tlsvar.VA_H2, tlsvar.VA_RESUMES]] = 1788, 4700, 2050, 300, 1, 1
    sc = tg.load_scenario("chat", [f"chat.resumption={resumption}",
                                   f"chat.ticket_lifetime={lifetime_s}s"])
    hosts = host_delays(sc, "chat", sc.chat, True)
    z = np.zeros(2, np.int64)
    cc = tls_conns(np.array([0, n]), np.array([n, n]), z, z, np.array([11, 12]), z,
                   np.array([-1, 0]), np.array([0, 60 * 10**9]))
    tlsvar.assign(wd, cc, np.uint64(1), np.array([1.0]), var, 1, 0, hosts)
    assert list(wd[:2, WF_LAYOUT]) == [1, 2] and list(wd[:2, WF_BYTES]) == [1788, 4700]
    second = list(wd[n:n + 2, WF_LAYOUT]), list(wd[n:n + 2, WF_BYTES])
    assert second == (([4, 5], [2050, 300]) if resumed else ([1, 2], [1788, 4700]))
    assert (wd[n + 3, WF_BYTES] < wd[3, WF_BYTES]) == resumed  # one ticket after a resumption


@pytest.mark.parametrize("open_at_s, prior_s, open_dep, resumed", [
    (100, 40, -1, True),     # the client's earlier session 60 s before: its ticket lives
    (100, -7200, -1, False),  # 2 h 1 m 40 s before: expired (lifetime 2 h)
    (100, None, -1, False),   # no earlier session of the client
    (100, 40, 0, False)])     # a later connection of a session: only its own session's count
def test_a_connection_resumes_with_its_clients_earlier_ticket(open_at_s, prior_s, open_dep, resumed):
    """A session's first connection resumes when its client started a session of the class
    within a ticket's lifetime before (``prior``): that session's connection left a ticket."""
    one = _connection(1)
    one[:5, WF_DEP] = -1, 0, 1, 2, 2
    var = np.zeros((1, tlsvar.VA_COLS), np.int64)
    var[0, [tlsvar.VA_HELLO, tlsvar.VA_FLIGHT, tlsvar.VA_PSK_HELLO, tlsvar.VA_RESUMED_FLIGHT,
            tlsvar.VA_H2, tlsvar.VA_RESUMES]] = 1788, 4700, 2050, 300, 1, 1
    sc = tg.load_scenario("chat", ["chat.ticket_lifetime=2h"])
    hosts = host_delays(sc, "chat", sc.chat, True)
    z = np.zeros(1, np.int64)
    cc = tls_conns(z, np.array([one.shape[0]]), z, z, np.array([11]),
                   np.array([5]) if open_dep < 0 else np.array([7]), np.array([open_dep]),
                   np.array([open_at_s * 10**9]),
                   None if prior_s is None else np.array([prior_s * 10**9]))
    tlsvar.assign(one, cc, np.uint64(1), np.array([1.0]), var, 1, 0, hosts)
    assert (list(one[:2, WF_LAYOUT]) == [4, 5]) == resumed


def test_client_history_is_the_latest_earlier_session_of_the_client():
    """``ClientHistory.prior`` against a brute-force search over every arrival block of the
    lifetime: the latest earlier session start of the same client, within the lifetime."""
    from trafficgen.classes.chat import BLOCK_NS, ChatModel
    from trafficgen.kernels import chat as kc
    sc = tg.load_scenario("chat", ["topology.client_count=500", "chat.ticket_lifetime=2m"],
                          duration="30s", seed=9)
    m = ChatModel(sc)
    keys, starts = m.sessions(-5 * BLOCK_NS, 30 * 10**9)
    got = m.history.prior(keys, starts)
    life = m.history.lifetime
    blocks = [m.block_arrivals(b) for b in range((int(starts.min()) - life) // BLOCK_NS, 1)]
    ks, ts = [], []
    for k_b, arr in blocks:
        k = np.empty(arr.shape[0], np.uint64)
        derive_range(k_b, 1, k)
        ks.append(k)
        ts.append(arr)
    all_t = np.concatenate(ts)
    all_c = np.empty(all_t.shape[0], np.int64)
    kc.session_clients(np.concatenate(ks), m.paths, all_c)
    qc = np.empty(keys.shape[0], np.int64)
    kc.session_clients(keys, m.paths, qc)
    want = []
    for c, t in zip(qc, starts):
        hit = all_t[(all_c == c) & (all_t < t) & (all_t > t - life)]
        want.append(hit.max() if hit.shape[0] else tlsvar.NO_PRIOR)
    assert np.array_equal(got, want)
    assert 0.2 < np.mean(got != tlsvar.NO_PRIOR) < 0.95  # both cases are exercised


def test_client_history_beyond_the_exact_hours_follows_the_clients_rate():
    """Tickets that live 18 h: a client not seen in the last hour (looked up exactly) came in
    the 17 h before it with probability 1 - exp(-rate x 17 h); over many clients the share
    of sessions with an earlier one is 1 - exp(-rate x 18 h) (a Poisson client), within a few
    points."""
    from trafficgen.classes.chat import ChatModel
    sc = tg.load_scenario("chat", ["topology.client_count=100000", "topology.clients=10.0.0.0/8",
                                   "chat.ticket_lifetime=18h", "chat.arrivals={process=\"poisson\"}"],
                          duration="60s", seed=2)
    m = ChatModel(sc)
    keys, starts = m.sessions(0, 60 * 10**9)
    got = m.history.prior(keys, starts)
    rate = m.session_rate_per_ns / 100000
    want = -np.expm1(-rate * 18 * 3600e9)
    exact = -np.expm1(-rate * (m.history.EXACT_BLOCKS - 1) * 60e9)
    seen = np.mean(got != tlsvar.NO_PRIOR)
    assert keys.shape[0] > 50 and 0.15 < exact < want - 0.1
    assert abs(seen - want) < 3 * np.sqrt(want * (1 - want) / keys.shape[0]) + 0.02, (seen, want)
