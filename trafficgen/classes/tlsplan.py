"""A model's TLS connections (``TlsPlan``: variants, templates, wire sizes, host delays,
resumption) or its plaintext HTTP/1.1 ones (``PlainPlan``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trafficgen.config.scenario import Scenario
from trafficgen.kernels import stacks, tlsvar
from trafficgen.kernels.chat import tls_wire
from trafficgen.kernels.rng import key_of
from trafficgen.schema import CLASS_CODE
from trafficgen.wire.profiles import PROFILE_OS, profile
from trafficgen.wire.tls import RESUMED_PLAIN, Templates, Variant, server_hello_prefix, ticket_identity


class TlsPlan:
    """A model's TLS connections: variants (endpoint x client profile, see ``tls.Variant``),
    their templates and wire sizes (full and resumed handshakes), which variant each connection
    is, whether it resumes, and its hosts' delays.

    ``endpoints``: (sni, alpn) per endpoint the model connects to (a connection's endpoint is
    its index here); ``p``: the class's parameters (``client_profiles``,
    ``server_flight_bytes``, ``session_ticket_bytes``, the host delays, ``resumption``,
    ``ticket_lifetime``); ``framing``: False for flows whose application bytes are not HTTP
    requests (WebSocket media)."""

    def __init__(self, scenario: Scenario, cls: str, p, endpoints, framing: bool = True):
        names = [name for name, _ in p.client_profiles]
        self.variants = [Variant(name, sni, tuple(alpn)) for sni, alpn in endpoints for name in names]
        self.flight_bytes, self.cls = p.server_flight_bytes, cls
        self.psk = ticket_identity(p.session_ticket_bytes)
        self.templates = Templates(self.variants, p.server_flight_bytes, cls, self.psk)
        self.cum_w = np.cumsum([w for _, w in p.client_profiles]).astype(np.float64)
        self.cum_w[-1] = 1.0
        self.ticket = int(tls_wire(p.session_ticket_bytes - 22)) if p.session_ticket_bytes >= 23 else 0
        self.framing = 1 if framing else 0
        self.key = key_of(scenario.seed, CLASS_CODE[cls], 0x7150)  # clients' stacks, per class
        self.os_cum = np.zeros((len(names), len(stacks.OS_NAMES)), np.float64)
        for i, name in enumerate(names):
            for code, share in PROFILE_OS[name]:
                self.os_cum[i, code] += share
        self.os_cum = np.cumsum(self.os_cum, axis=1)
        self.os_cum[:, -1] = 1.0
        self.hosts = host_delays(scenario, cls, p, self.ticket > 0)
        self._variant_table()

    def client_os(self, clients) -> np.ndarray:
        """The OS (``kernels.stacks`` code) each of these clients runs: its profile's, by the
        profile's shares (``wire.profiles.PROFILE_OS``), drawn per client (int64)."""
        clients = np.ascontiguousarray(clients, np.int64)
        out = np.empty(clients.shape[0], np.int64)
        stacks.client_os(self.key, clients, self.cum_w, self.os_cum, out)
        return out

    def _variant_table(self):
        vs = self.variants
        self.var = np.zeros((len(vs), tlsvar.VA_COLS), np.int64)
        for i, v in enumerate(vs):
            hybrid = profile(v.profile).hybrid
            sh = len(server_hello_prefix(hybrid)[0])
            row = self.var[i]
            row[tlsvar.VA_HELLO] = len(v.hello()[0])
            row[tlsvar.VA_FLIGHT] = sh + int(tls_wire(max(1, self.flight_bytes - sh - 22)))
            row[tlsvar.VA_PSK_HELLO] = len(v.hello(self.psk)[0])
            row[tlsvar.VA_RESUMED_FLIGHT] = len(server_hello_prefix(hybrid, True)[0]) + int(
                tls_wire(RESUMED_PLAIN))
            row[tlsvar.VA_H2], row[tlsvar.VA_HYBRID] = int(v.h2), int(hybrid)
            row[tlsvar.VA_RESUMES] = int(v.resumes)
        self.hello = self.var[:, tlsvar.VA_HELLO].copy()
        self.flight = self.var[:, tlsvar.VA_FLIGHT].copy()

    def extend(self, other: "TlsPlan") -> int:
        """Put ``other``'s variants after this plan's in its template table (a model whose
        connections share this one's slot of the engine's table); returns their first index."""
        first = len(self.variants)
        other.psk = self.psk  # its resumed ClientHellos are this table's
        other._variant_table()
        self.templates = Templates(self.variants + other.variants, self.flight_bytes, self.cls,
                                   self.psk)
        return first

    def apply(self, wd, c_w0, c_wn, c_client, c_endpoint, layout_base: int, first: int = 0,
              seed=None, session=None, open_dep=None, open_at=None, prior=None):
        """Each connection's variant into its writes and its hosts' delays (``kernels.tlsvar.
        assign``). ``seed``: a stable id per connection (its delay draws; e.g. its ISNs);
        ``session``, ``open_dep``, ``open_at`` (``tcp.Conns``): which connections repeat an
        earlier one (resumption; none without them); ``prior``: when each connection's client
        last started a session of the class before (``tlsvar.TlsConns.prior``; None: unknown,
        only repeats within a session resume)."""
        tlsvar.assign(wd, tls_conns(c_w0, c_wn, c_client, c_endpoint, seed, session, open_dep,
                                    open_at, prior), self.key, self.cum_w, self.var, self.framing,
                      layout_base + tlsvar.LAYOUTS * first, self.hosts)


def tls_conns(c_w0, c_wn, client, endpoint, seed, session, open_dep, open_at,
              prior=None) -> tlsvar.TlsConns:
    """``tlsvar.TlsConns`` of contiguous int64 columns; ``seed`` None: the connection's index
    (not stable across windows: callers pass their ISNs), ``session`` None: no resumption."""
    n = c_w0.shape[0]

    def col(a, fill):
        return np.full(n, fill, np.int64) if a is None else np.ascontiguousarray(a, np.int64)
    return tlsvar.TlsConns(col(c_w0, 0), col(c_wn, 0), col(client, 0), col(endpoint, 0),
                           col(seed, 0) if seed is not None else np.arange(n, dtype=np.int64),
                           col(session, -1), col(open_dep, -1), col(open_at, 0),
                           col(prior, tlsvar.NO_PRIOR))


def host_delays(scenario: Scenario, cls: str, p, tickets: bool) -> tlsvar.TlsHosts:
    """A class's ``tlsvar.TlsHosts``: the delay distributions of its section, packed in
    ``tlsvar.DL_*`` order; no resumption where the servers send no tickets."""
    names = ("client_hello_delay", "client_finished_delay", "request_delay", "server_kex_delay",
             "server_mlkem_delay", "server_sign_delay", "ticket_delay", "parse_delay")
    delays = np.stack([getattr(p, n).params() for n in names]).astype(np.float64)
    return tlsvar.TlsHosts(key=key_of(scenario.seed, CLASS_CODE[cls], 0x7151), delays=delays,
                           resumption=float(p.resumption) if tickets else 0.0,
                           lifetime=np.int64(p.ticket_lifetime))


class PlainPlan:
    """A chat-shaped class in plaintext HTTP/1.1 (``plaintext = "http1"``): no TLS, its
    layouts are message kinds (``trafficgen.plaintext``), sized by ``tlsvar.assign_plain``."""

    hello = flight = np.zeros(1, np.int64)  # no handshake writes (kernels.chat.fill)
    ticket = 0

    def __init__(self, scenario: Scenario, cls: str, p):
        from trafficgen.wire.plaintext import KINDS, Table
        self.templates = Table(p.sni, -(-int(p.retry_after) // 10**9))
        self.hosts = host_delays(scenario, cls, p, False)
        # TLS variants appended (``extend``) start at a whole variant's slot past the kinds
        self.variants, self.first_variant = [], -(-KINDS // tlsvar.LAYOUTS)

    def extend(self, other: TlsPlan) -> int:
        """Put ``other``'s TLS variants after the message kinds (fanout lookups stay TLS)."""
        t, o = self.templates, other.templates
        pad = tlsvar.LAYOUTS * self.first_variant + 1 - t.start.shape[0]  # empty layouts
        self.templates = _Table(np.concatenate([t.data, o.data]), np.concatenate([t.mask, o.mask]),
                                np.concatenate([t.start, np.full(pad, t.data.shape[0]),
                                                t.data.shape[0] + o.start[1:]]),
                                np.concatenate([t.length, np.zeros(pad, np.int64), o.length[1:]]))
        return self.first_variant

    def client_os(self, clients) -> np.ndarray:
        """Plaintext HTTP clients (scripts, in-cluster callers): Linux."""
        return np.full(np.shape(clients)[0], stacks.OS_LINUX, np.int64)

    def apply(self, wd, c_w0, c_wn, c_client, c_endpoint, layout_base: int, first: int = 0,
              seed=None, session=None, open_dep=None, open_at=None, prior=None):
        tlsvar.assign_plain(wd, tls_conns(c_w0, c_wn, c_client, c_endpoint, seed, None, None, None),
                            self.templates.length, layout_base, self.hosts)


@dataclass
class _Table:
    data: np.ndarray
    mask: np.ndarray
    start: np.ndarray
    length: np.ndarray
