"""An independent reading of a TLS ClientHello and its JA4 fingerprint (FoxIO's JA4 spec:
https://github.com/FoxIO-LLC/ja4/blob/main/technical_details/JA4.md), for the tests only:
it parses bytes, it never looks at trafficgen's profile tables."""
from __future__ import annotations

import hashlib
import struct

GREASE = {0x0A0A + 0x1010 * i for i in range(16)}


def parse_client_hello(rec: bytes) -> dict:
    """A ClientHello handshake message (with or without its 5-byte record header)."""
    if rec[0] == 0x16:
        assert rec[1] == 3 and struct.unpack("!H", rec[3:5])[0] == len(rec) - 5, "record length"
        rec = rec[5:]
    assert rec[0] == 1, "not a ClientHello"
    n = int.from_bytes(rec[1:4], "big")
    assert n == len(rec) - 4, ("handshake length", n, len(rec) - 4)
    b = rec[4:]
    o = 2 + 32
    sid = b[o]
    o += 1 + sid
    ns = struct.unpack("!H", b[o:o + 2])[0]
    suites = list(struct.unpack(f"!{ns // 2}H", b[o + 2:o + 2 + ns]))
    o += 2 + ns
    o += 1 + b[o]
    el = struct.unpack("!H", b[o:o + 2])[0]
    o += 2
    assert o + el == len(b), "extensions length"
    exts = []
    while o < len(b):
        t, ln = struct.unpack("!HH", b[o:o + 4])
        exts.append((t, b[o + 4:o + 4 + ln]))
        o += 4 + ln
    assert o == len(b)
    return {"version": b[:2], "suites": suites, "exts": exts, "session_id_len": sid}


def _vec(body, width=2):
    n = int.from_bytes(body[:width], "big")
    return body[width:width + n]


def details(h: dict) -> dict:
    """SNI, ALPN, groups, key-share groups and sizes, signature algorithms, versions."""
    e = dict(h["exts"])
    out = {"sni": None, "alpn": [], "groups": [], "shares": [], "sigalgs": [], "versions": []}
    if 0 in e:
        lst = _vec(e[0])
        out["sni"] = _vec(lst[1:]).decode()
    if 16 in e:
        lst, o = _vec(e[16]), 0
        while o < len(lst):
            out["alpn"].append(lst[o + 1:o + 1 + lst[o]].decode())
            o += 1 + lst[o]
    if 10 in e:
        g = _vec(e[10])
        out["groups"] = list(struct.unpack(f"!{len(g) // 2}H", g))
    if 13 in e:
        s = _vec(e[13])
        out["sigalgs"] = list(struct.unpack(f"!{len(s) // 2}H", s))
    if 51 in e:
        ks, o = _vec(e[51]), 0
        while o < len(ks):
            g, ln = struct.unpack("!HH", ks[o:o + 4])
            out["shares"].append((g, ln))
            o += 4 + ln
    if 43 in e:
        v = _vec(e[43], 1)
        out["versions"] = list(struct.unpack(f"!{len(v) // 2}H", v))
    return out


def _h12(items) -> str:
    return hashlib.sha256(",".join(items).encode()).hexdigest()[:12] if items else "000000000000"


def ja4(rec: bytes, proto: str = "t") -> str:
    """JA4 of a ClientHello: a_b_c (sorted suites, sorted extensions less SNI and ALPN, then
    the signature algorithms in the order sent)."""
    h = parse_client_hello(rec)
    d = details(h)
    suites = [s for s in h["suites"] if s not in GREASE]
    exts = [t for t, _ in h["exts"] if t not in GREASE]
    vers = [v for v in d["versions"] if v not in GREASE]
    ver = max(vers) if vers else struct.unpack("!H", h["version"])[0]
    vmap = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10"}
    alpn = d["alpn"][0] if d["alpn"] else ""
    a_alpn = (alpn[0] + alpn[-1]) if alpn else "00"
    a = (f"{proto}{vmap.get(ver, '00')}{'d' if d['sni'] else 'i'}{min(len(suites), 99):02d}"
         f"{min(len(exts), 99):02d}{a_alpn}")
    b = _h12(sorted(f"{s:04x}" for s in suites))
    ext_s = sorted(f"{t:04x}" for t in exts if t not in (0x0000, 0x0010))
    sig = [f"{s:04x}" for s in d["sigalgs"] if s not in GREASE]
    c_in = ",".join(ext_s) + ("_" + ",".join(sig) if sig else "")
    c = hashlib.sha256(c_in.encode()).hexdigest()[:12] if ext_s else "000000000000"
    return f"{a}_{b}_{c}"
