"""The network section applied to the stream: per-flow overhead in the tables, frames rewritten.

Two engine steps, both generic over every model's :class:`EpochSchedule` and every frame:

1. :meth:`NetPlan.account` (per window, after global ids): each flow's family (IPv4, or IPv6
   under ``ip = 6`` and for a keyed share of flows under ``"dual"``) and its constant
   per-packet overhead (tags, the IPv6 header's extra 20 bytes, outer encapsulation, SecTAG
   and ICV) are added to every packet's ``wire_len`` and to the flow and request byte totals,
   so the tables still add up to the capture.
2. :meth:`NetPlan.wire` (per batch): the frames the encoder built as plain IPv4 are rewritten
   into the configured stack by ``kernels.encap.rewrite``; with a MACsec key, each frame is
   then sealed with GCM-AES-128 by the ``cryptography`` package (:func:`seal_macsec`, the one
   per-frame library call: measured in bench/RESULTS.md).
"""
from __future__ import annotations

import numpy as np

from trafficgen.config.network import IPV4_ONLY_CLASSES, MAX_LABELS, MAX_SEGMENTS, Network
from trafficgen.errors import TrafficgenError
from trafficgen.kernels import encap as ke
from trafficgen.kernels import quic as kq
from trafficgen.kernels.rng import derive_range, key_of
from trafficgen.schema import CLASSES, PROTO_TCP, PROTO_UDP, take_rows
from trafficgen.wire.quic import crypto_room

_ENCAP_CODE = {"none": ke.ENCAP_NONE, "mpls": ke.ENCAP_MPLS, "vxlan": ke.ENCAP_VXLAN,
               "gre": ke.ENCAP_GRE, "srv6": ke.ENCAP_SRV6}
_V6_ID = 0x1F6  # key id of the per-flow family draw under "dual"
_QUIC_ID = 0x9C1C  # key id of the per-flow transport draw (network.quic)
_CRYPTO_OVERHEAD = kq.INITIAL_MIN - crypto_room(kq.INITIAL_MIN)  # a client Initial's bytes
# around its ClientHello bytes: header, AEAD tag, CRYPTO frame header


def class_overheads(net: Network) -> np.ndarray:
    """Bytes every IPv4 packet of each class gains on the wire (int64[len(CLASSES)]); IPv6
    flows add 20 more."""
    out = np.full(len(CLASSES), 4 * len(net.vlan) + (ke.SECTAG + ke.ICV if net.macsec else 0),
                  np.int64)
    for c in range(len(CLASSES)):
        if net.encap == "mpls":
            out[c] += 4 * len(net.mpls_labels[c])
        elif net.encap == "vxlan":
            out[c] += ke.VXLAN_BYTES
        elif net.encap == "gre":
            out[c] += ke.GRE_BYTES
        elif net.encap == "srv6":
            out[c] += ke.SRV6_BYTES + 16 * (len(net.srv6_segments[c]) + 1)
    return out


def quic_hellos(templates) -> tuple[list, np.ndarray]:
    """The QUIC ClientHellos of the template table's variants whose client profile speaks
    HTTP/3: [((bytes, mask), hybrid), ...] and, per layout (uint8), the index of the variant's
    hello for its ClientHello and server-flight layouts (-1 for none)."""
    from trafficgen.wire.hello import quic_hello
    from trafficgen.wire.profiles import profile
    of_layout = np.full(256, -1, np.int16)
    hellos, index = [], {}
    for lay, var in sorted(getattr(templates, "hello_variant", {}).items()):
        p = profile(var.profile)
        if not p.h3:
            continue
        key = (var.profile, var.sni)
        if key not in index:
            index[key] = len(hellos)
            hellos.append((quic_hello(p, var.sni), p.hybrid))
        of_layout[lay] = of_layout[lay + 1] = index[key]
    return hellos, of_layout


def check_initials(templates, hellos: list, of_layout: np.ndarray, net: Network, mss: int) -> None:
    """Refuse an MTU whose datagrams cannot hold a QUIC ClientHello in as many client Initials
    as its TCP version has segments (a hybrid hello of ~1,800 bytes in one segment of an MSS
    just above it, but too big for one Initial)."""
    most = net.mtu - 28 - (20 if net.ip != "4" else 0)
    for lay in getattr(templates, "hello_variant", {}):
        if of_layout[lay] < 0:
            continue
        q, tcp = len(hellos[of_layout[lay]][0][0]), int(templates.length[lay])
        k = -(-tcp // mss)
        need = -(-q // k) + _CRYPTO_OVERHEAD
        if need > most:
            var = templates.hello_variant[lay]
            raise TrafficgenError(
                f"network.mtu: {net.mtu} leaves {most} bytes per QUIC Initial, too few for "
                f"{var.profile}'s {q}-byte ClientHello in {k} Initial(s); use at least "
                f"{net.mtu + need - most}, or at most {net.mtu - mss + tcp - 1}")


def client_pools(scenario) -> np.ndarray:
    """The client address pools of the scenario's sites and classes (int64[n, 2]: first and
    last address, by first address): the sites whose paths reach a server alike."""
    pools = set()
    for c in CLASSES:
        topo = scenario.topology_of(c)
        for site in topo.sites or (topo,):
            net = site.clients
            pools.add((int(net.network_address), int(net.broadcast_address)))
    return np.array(sorted(pools), np.int64).reshape(-1, 2)


def path_hops(pools: np.ndarray, cip: np.ndarray, sip: np.ndarray) -> np.ndarray:
    """Router hops between each flow's client and server (uint8, 6..17): a function of the
    client's site (the pool holding its address; else its /24) and the server, so all of a
    site's clients see one server at one TTL and a server sees a site's clients at one."""
    c = cip.astype(np.int64)
    k = np.searchsorted(pools[:, 0], c, "right") - 1
    inside = (k >= 0) & (c <= pools[np.maximum(k, 0), 1])
    site = np.where(inside, pools[np.maximum(k, 0), 0], c >> 8).astype(np.uint64)
    h = (site * np.uint64(0x9E3779B97F4A7C15)) ^ (sip.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9))
    h ^= h >> np.uint64(31)
    return (6 + (h * np.uint64(0x94D049BB133111EB) >> np.uint64(40)) % np.uint64(12)).astype(np.uint8)



class NetPlan:
    """The scenario's network section, prepared for the engine (see the module docstring)."""

    def __init__(self, scenario, templates=None):
        """``templates``: the engine's ``tls.CombinedTemplates`` (which client profile and
        service each ClientHello layout is: QUIC Initials carry that profile's QUIC hello)."""
        net: Network = scenario.network
        self.net = net
        self.plain = net.plain
        self.v6_key = key_of(scenario.seed, _V6_ID)
        self.quic_key = key_of(scenario.seed, _QUIC_ID)
        self.quic_share = np.array(net.quic, np.float64)
        self.quic_hellos, self.hello_of_layout = quic_hellos(templates)
        if any(net.quic):
            check_initials(templates, self.quic_hellos, self.hello_of_layout, net,
                           scenario.topology.mss)
        self.class_ovh = class_overheads(net)
        self._v4_only = np.array([c in IPV4_ONLY_CLASSES for c in CLASSES])
        self._scratch = np.empty(0, np.uint8)
        self.macsec_mode = (ke.MACSEC_OFF if not net.macsec else ke.MACSEC_OPAQUE
                            if net.macsec_key is None else ke.MACSEC_ENCRYPT
                            if net.macsec_encrypt else ke.MACSEC_INTEGRITY)
        if self.macsec_mode in (ke.MACSEC_ENCRYPT, ke.MACSEC_INTEGRITY) or any(net.quic):
            try:
                import cryptography.hazmat.primitives.ciphers.aead  # noqa: F401
            except ImportError:
                raise TrafficgenError(("network.macsec_key: MACsec with a key" if
                                       net.macsec_key else "network.quic: QUIC Initials")
                                      + " need the cryptography package (pip install "
                                      "'trafficgen-ai[crypto]')") from None
        cfg = np.zeros(ke.C_LEN, np.int64)
        cfg[ke.C_ENCAP] = _ENCAP_CODE[net.encap]
        cfg[ke.C_NVLAN] = len(net.vlan)
        cfg[ke.C_VLAN0:ke.C_VLAN0 + len(net.vlan)] = net.vlan
        cfg[ke.C_MACSEC] = self.macsec_mode
        cfg[ke.C_SIDE] = 0 if scenario.topology.capture == "client" else 1
        cfg[ke.C_UNDER0:ke.C_UNDER0 + 2] = net.underlay
        self.cfg = cfg
        nc = len(CLASSES)
        self.dscp = np.array(net.dscp, np.uint8)
        self.ecn = np.array(net.ecn, np.uint8)
        self.vni = np.array(net.vni, np.int64)
        self.labels = np.zeros((nc, MAX_LABELS), np.int64)
        self.nlabels = np.array([len(x) for x in net.mpls_labels], np.int64)
        self.segs = np.zeros((nc, max(1, MAX_SEGMENTS), 16), np.uint8)
        self.nsegs = np.array([len(x) for x in net.srv6_segments], np.int64)
        for c in range(nc):
            self.labels[c, :len(net.mpls_labels[c])] = net.mpls_labels[c]
            for k, sid in enumerate(net.srv6_segments[c]):
                self.segs[c, k] = np.frombuffer(sid, np.uint8)
        self.under6 = np.frombuffer(b"".join(net.underlay6), np.uint8).reshape(2, 16).copy()
        self.pre6 = np.frombuffer(net.ipv6_clients + net.ipv6_servers, np.uint8).reshape(2, 16).copy()

    @property
    def counts_packets(self) -> bool:
        """Whether ``account`` needs a window's packets: some add bytes on the wire (IPv6, tags,
        tunnels, MACsec) or turn into QUIC packets. DSCP/ECN alone change no count."""
        return bool(self.quic_share.any() or self.net.ip != "4" or np.any(self.class_ovh))

    # --- tables ------------------------------------------------------------------------------

    def flow_v6(self, first_flow: int, classes: np.ndarray) -> np.ndarray:
        """Which of the flows ``first_flow, first_flow + 1, ...`` (global ids, of these class
        codes) are IPv6: a pure function of (seed, flow id), so windows change nothing."""
        n = classes.shape[0]
        if self.net.ip == "4" or n == 0:
            return np.zeros(n, bool)
        if self.net.ip == "6":
            return np.ones(n, bool)
        keys = np.empty(n, np.uint64)
        derive_range(self.v6_key, first_flow, keys)
        u = (keys >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return (u < self.net.ipv6_share) & ~self._v4_only[classes]

    def flow_quic(self, first_flow: int, classes: np.ndarray) -> np.ndarray:
        """Which of these flows (global ids from ``first_flow``) are HTTP/3 over QUIC."""
        n = classes.shape[0]
        if n == 0 or not self.quic_share.any():
            return np.zeros(n, bool)
        keys = np.empty(n, np.uint64)
        derive_range(self.quic_key, first_flow, keys)
        return (keys >> np.uint64(11)).astype(np.float64) * 2.0**-53 < self.quic_share[classes]

    def quic_capable(self, f, sched, f0: int) -> np.ndarray:
        """Which flows of a window's schedule could be QUIC: TCP flows whose ClientHello is
        of a client profile with an HTTP/3 stack (the others stay on TCP/TLS)."""
        ok = np.zeros(f.shape[0], bool)
        hello = (sched["direction"] == 0) & (self.hello_of_layout[sched["layout"]] >= 0)
        ok[sched["flow_id"][hello] - f0] = True
        return ok & (f["protocol"] == PROTO_TCP)

    def flow_cols(self, flows) -> dict:
        """The engine's per-flow frame attributes: family, QUIC, overhead (of flows ``account``
        has seen, here or in a worker: a drawn flow is QUIC if it went UDP there; a class with a
        QUIC share has no UDP flows of its own, see config)."""
        first = int(flows["flow_id"][0]) if flows.shape[0] else 0
        quic = self.flow_quic(first, flows["class"]) & (flows["protocol"] == PROTO_UDP)
        return {"v6": (flows["ip_version"] == 6).astype(np.uint8),
                "quic": quic.astype(np.uint8),
                "ovh": self.flow_overhead(flows)}

    def flow_overhead(self, flows) -> np.ndarray:
        """Per-packet bytes each flow row gains on the wire (int64)."""
        return self.class_ovh[flows["class"]] + 20 * (flows["ip_version"] == 6)

    def account(self, ep) -> None:
        """Add the network's overhead to one window's schedule of one class (global ids):
        ``wire_len`` of each packet, flow and request byte totals, the flows' ``ip_version``."""
        f, r, sched = ep.flows, ep.requests, ep.sched
        if f.shape[0] == 0:
            return
        f0 = int(f["flow_id"][0])
        f["ip_version"] = np.where(self.flow_v6(f0, f["class"]), 6, 4)
        if self.plain:
            return
        quic = self.flow_quic(f0, f["class"])
        if quic.any():
            quic &= self.quic_capable(f, sched, f0)
        if quic.any():
            self._to_quic(ep, f0, quic)
            sched = ep.sched
        ovh = self.flow_overhead(f)
        sched["wire_len"] += ovh[sched["flow_id"] - f0].astype(np.uint32)
        f["bytes_up"] += ovh * f["packets_up"]
        f["bytes_down"] += ovh * f["packets_down"]
        nr = r.shape[0]
        if nr:
            r0 = int(r["request_id"][0])
            rid = sched["request_id"]
            inside = rid >= 0
            down = sched["direction"] == 1
            rows = ovh[r["flow_id"] - f0]
            r["bytes_up"] += rows * np.bincount(rid[inside & ~down] - r0, minlength=nr)[:nr]
            r["bytes_down"] += rows * np.bincount(rid[inside & down] - r0, minlength=nr)[:nr]

    def _to_quic(self, ep, f0: int, quic: np.ndarray) -> None:
        """The QUIC flows' TCP packets as QUIC packets (``kernels.quic.plan``): some go, the
        rest get their QUIC length, packet number (in ``seq``) and kind (in ``segoff``, an
        encoder field); the flow and request totals are recounted from what is left."""
        sched, f, r = ep.sched, ep.flows, ep.requests
        n = sched.shape[0]
        fr = sched["flow_id"] - f0
        kind, qlen, pn = np.empty(n, np.uint8), np.zeros(n, np.int64), np.zeros(n, np.int64)
        kq.plan(fr, quic, sched["direction"], sched["tcp_flags"], sched["payload_len"],
                sched["phase"], sched["duplicate"], kind, qlen, pn)
        q = kind != 255
        sched["payload_len"][q] = qlen[q]
        sched["wire_len"][q] = 42 + qlen[q]
        sched["tcp_flags"][q] = 0
        sched["seq"][q] = pn[q]
        sched["ack"][q] = 0
        sched["layout"][q & (kind != kq.Q_INITIAL)] = 0  # an Initial keeps its write's layout
        sched["writelen"][q] = 0
        sched["segoff"][q] = kind[q]
        self._size_client_initials(sched, f, f0, kind)
        sched = take_rows(sched, np.flatnonzero(kind != kq.Q_DROP))
        ep.sched = sched
        f["protocol"][quic] = PROTO_UDP
        fr = sched["flow_id"] - f0
        down = sched["direction"] == 1
        wl = sched["wire_len"].astype(np.int64)
        nf = f.shape[0]
        for d, col in ((~down, "up"), (down, "down")):
            f[f"bytes_{col}"] = np.bincount(fr[d], wl[d], minlength=nf).astype(np.int64)
            f[f"packets_{col}"] = np.bincount(fr[d], minlength=nf)
        _, first = np.unique(fr, return_index=True)
        _, last = np.unique(fr[::-1], return_index=True)
        f["start_ns"] = sched["ts_ns"][first]
        f["end_ns"] = sched["ts_ns"][sched.shape[0] - 1 - last]
        if r.shape[0]:
            r0 = int(r["request_id"][0])
            rid = sched["request_id"]
            inside = rid >= 0
            for d, col in ((~down, "up"), (down, "down")):
                m = inside & d
                r[f"bytes_{col}"] = np.bincount(rid[m] - r0, wl[m], minlength=r.shape[0]).astype(np.int64)

    def _size_client_initials(self, sched, f, f0: int, kind) -> None:
        """One size for all client Initials of a connection, so its QUIC ClientHello fits them
        split evenly: at least 1,200 bytes (RFC 9000 14.1); ``check_initials`` made sure the
        path MTU has room."""
        ci = np.flatnonzero((kind == kq.Q_INITIAL) & (sched["direction"] == 0))
        if ci.shape[0] == 0:
            return
        fr = sched["flow_id"][ci] - f0
        k = np.bincount(fr, minlength=f.shape[0])
        need = np.zeros(f.shape[0], np.int64)
        hello_len = np.array([len(h[0][0]) for h in self.quic_hellos], np.int64)
        need[fr] = hello_len[self.hello_of_layout[sched["layout"][ci]]]
        qlen = np.maximum(kq.INITIAL_MIN, -(-need // np.maximum(k, 1)) + _CRYPTO_OVERHEAD)
        sched["payload_len"][ci] = qlen[fr]
        sched["wire_len"][ci] = 42 + qlen[fr]

    def build_payload(self, part, cols: dict, rows: np.ndarray) -> np.ndarray:
        """Payload lengths for the plain encoder: a QUIC packet's plain TCP frame has its
        length, so its TCP payload is 12 bytes short of the QUIC packet."""
        q = cols["quic"][rows] != 0
        if not q.any():
            return part["payload_len"]
        return (part["payload_len"] - np.where(q, kq.UDP_MORE, 0)).astype(part["payload_len"].dtype)

    # --- frames ------------------------------------------------------------------------------

    def plain_lengths(self, part, cols: dict, rows: np.ndarray) -> np.ndarray:
        """The lengths of the plain frames the encoder builds for these packets."""
        return (part["wire_len"] - cols["ovh"][rows]).astype(part["wire_len"].dtype)

    def scratch(self, nbytes: int) -> np.ndarray:
        """The buffer plain frames are built in before the rewrite (reused by every batch)."""
        if self._scratch.shape[0] < nbytes:
            self._scratch = np.empty(nbytes + (nbytes >> 3), np.uint8)
        return self._scratch[:nbytes]

    def wire(self, plain, plain_off, part, cols: dict, rows, alloc, first_packet: int):
        """Rewrite a batch's plain frames into the configured stack: returns (frames,
        offsets) as pcap records of ``part['wire_len']`` bytes. ``first_packet``: the
        stream index of the batch's first packet (MACsec packet numbers follow it)."""
        from trafficgen.kernels.frames import frame_space
        space = frame_space(np.ascontiguousarray(part["wire_len"]), True)  # as _batch's: one signature
        out = alloc(space)
        offsets = np.empty(part.shape[0], np.int64)
        kinds = part["segoff"]
        if self.quic_share.any():  # Initials sealed with their real keys, in the plain frames
            from trafficgen.wire.quic import seal_initials
            kinds = seal_initials(plain, plain_off, part, cols, rows, self.quic_hellos,
                                  self.hello_of_layout)
        frames = ke.FrameRows(wire_len=part["wire_len"], dirs=part["direction"], flow_row=rows,
                              cls=part["class"], qkind=kinds, qpn=part["seq"])
        flows = ke.FlowCols(v6=cols["v6"], key=cols["key"], quic=cols["quic"])
        tables = ke.NetTables(cfg=self.cfg, dscp=self.dscp, ecn=self.ecn, labels=self.labels,
                              nlabels=self.nlabels, vni=self.vni, segs=self.segs,
                              nsegs=self.nsegs, under6=self.under6, pre6=self.pre6)
        end = ke.rewrite(plain, plain_off, out, offsets, frames, flows, tables, first_packet)
        if end != space:
            raise RuntimeError(f"network rewrite: frame {-1 - end} does not match its wire_len")
        if self.macsec_mode in (ke.MACSEC_ENCRYPT, ke.MACSEC_INTEGRITY):
            if first_packet + part.shape[0] >= 2**32:
                raise RuntimeError("MACsec packet numbers are 32 bits: at most 2**32 - 1 frames "
                                   "per key (extended packet numbers are not supported)")
            seal_macsec(out, offsets, part["wire_len"], self.net.macsec_key,
                        self.macsec_mode == ke.MACSEC_ENCRYPT)
        return out, offsets


HDR = 12 + ke.SECTAG  # MAC addresses and SecTAG: the associated data of an encrypted frame


def seal_macsec(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, key: bytes,
                encrypt: bool) -> None:
    """GCM-AES-128 over each MACsec frame in place (IEEE 802.1AE): IV = SCI || PN from the
    SecTAG; ``encrypt``: the secure data becomes ciphertext (AAD: addresses and SecTAG),
    else it stays clear and is all authenticated. The ICV is the GCM tag.

    One library call per frame (``cryptography``'s AESGCM, not hand-rolled): the documented
    exception to "no per-packet Python", taken only when a key is configured."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    aead = AESGCM(key)
    view = memoryview(buf)
    for i in range(offsets.shape[0]):
        o = int(offsets[i])
        end = o + int(lengths[i])
        frame = view[o:end]
        iv = bytes(frame[20:28]) + bytes(frame[16:20])
        if encrypt:
            frame[HDR:] = aead.encrypt(iv, frame[HDR:-ke.ICV], frame[:HDR])
        else:
            frame[-ke.ICV:] = aead.encrypt(iv, b"", frame[:-ke.ICV])
