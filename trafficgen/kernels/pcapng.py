"""pcapng enhanced packet blocks with ground-truth comments, built from a batch's frames.

Each packet becomes one EPB (little-endian, interface 0, timestamps in ns for an interface
with if_tsresol = 9) whose opt_comment reads
``class=chat flow=12 request=40 dir=up phase=stream`` (``request=-1`` outside any request),
followed on an impaired path by `` retransmit=1``, `` lost=1`` (lost after the tap) and
`` gap=1`` (new bytes lost before the tap just before it) where they hold.
Label names come from one byte table (``names``, ``name_off``: the vocabularies of
``trafficgen.schema`` laid end to end), so no Python runs per packet.
"""
from collections import namedtuple

import numpy as np

from .headers import (
    EPB_BLOCK_TYPE,
    EPB_CAP_LEN,
    EPB_DATA,
    EPB_IFACE,
    EPB_LEN,
    EPB_ORIG_LEN,
    EPB_TS_HIGH,
    EPB_TS_LOW,
    EPB_TYPE,
    OPT_COMMENT,
    OPT_ENDOFOPT,
)
from .jit import helper, inline, kernel

EPB_FIXED = EPB_DATA + 4  # header fields + trailing length
OPT_HDR = 4
OPT_END = 4
_CLASS, _FLOW, _REQ, _DIR, _PHASE = (b"class=", b" flow=", b" request=", b" dir=", b" phase=")


def _lit(text: bytes) -> np.ndarray:
    return np.frombuffer(text, np.uint8).copy()


LITERALS = tuple(_lit(t) for t in (_CLASS, _FLOW, _REQ, _DIR, _PHASE))
# the truth flags' words, by bit of ``Labels.truth``: 1 retransmit, 2 lost, 4 gap, 8 reordered,
# 16 duplicate
FLAG_WORDS = _lit(b" retransmit=1 lost=1 gap=1 reordered=1 duplicate=1")
FLAG_OFF = np.array([0, 13, 20, 26, 38, 50], np.int64)

Labels = namedtuple("Labels", "cls flow req dirs phase truth")
Labels.__doc__ = """Per packet: the label codes and ids its comment shows (class, flow id,
request id, direction, phase) and its truth flags (uint8 bits: 1 retransmit, 2 lost after the
tap, 4 gap, 8 reordered, 16 duplicate; 0 on a clean path: the comment then has none)."""
NameTable = namedtuple("NameTable", "names name_off c_base d_base p_base lit_len")
NameTable.__doc__ = """The label names laid end to end (``names`` uint8, name ``k`` at
``names[name_off[k]:name_off[k + 1]]``), where the class, direction and phase names start in it,
and the bytes of the comment's literal parts (``LITERALS``)."""


@inline
def _pad4(n):
    return (n + 3) & ~3


@inline
def _digits(v):
    n = 1 if v >= 0 else 2
    v = abs(v)
    while v >= 10:
        v //= 10
        n += 1
    return n


@helper
def _put_int(out, o, v):
    """Write the decimal digits of ``v`` at ``o``; returns the position after them."""
    n = _digits(v)
    end = o + n
    if v < 0:
        out[o] = 45  # '-'
        v = -v
    p = end - 1
    while True:
        out[p] = 48 + v % 10
        v //= 10
        p -= 1
        if v == 0:
            break
    return end


@inline
def _put(out, o, src):
    for k in range(src.shape[0]):
        out[o + k] = src[k]
    return o + src.shape[0]


@inline
def _put_name(out, o, names, name_off, code):
    for k in range(name_off[code], name_off[code + 1]):
        out[o] = names[k]
        o += 1
    return o


@helper
def comment_len(table, cls, flow, req, d, ph, truth):
    """Bytes of one packet's comment (``NameTable`` ``table``; its label codes and flags)."""
    name_off, c_base, d_base, p_base = table.name_off, table.c_base, table.d_base, table.p_base
    flags = 0
    for b in range(FLAG_OFF.shape[0] - 1):
        if truth >> b & 1:
            flags += FLAG_OFF[b + 1] - FLAG_OFF[b]
    return (flags + table.lit_len + name_off[c_base + cls + 1] - name_off[c_base + cls] + _digits(flow)
            + _digits(req) + name_off[d_base + d + 1] - name_off[d_base + d]
            + name_off[p_base + ph + 1] - name_off[p_base + ph])


@kernel
def epb_space(wire_len, labels, table):
    """Bytes of the EPBs of these packets (int64): ``labels`` (``Labels``) named by ``table``
    (``NameTable``)."""
    cls, flow, req, dirs, phase, truth = labels
    total = 0
    for i in range(wire_len.shape[0]):
        n = comment_len(table, cls[i], flow[i], req[i], dirs[i], phase[i], truth[i])
        total += EPB_FIXED + _pad4(wire_len[i]) + OPT_HDR + _pad4(n) + OPT_END
    return total


@kernel
def build_epbs(out, frames, offsets, wire_len, ts_ns, labels, table, literals):
    """Write one EPB per packet into ``out`` (uint8, sized by ``epb_space``): frame i is
    ``frames[offsets[i]:offsets[i] + wire_len[i]]``; ts_ns int64 ns since the epoch.
    ``labels``: ``Labels``, named by ``table`` (``NameTable``); ``literals``: ``LITERALS``.
    Returns bytes written."""
    l_class, l_flow, l_req, l_dir, l_phase = literals
    names, name_off, c_base, d_base, p_base, _ = table
    cls, flow, req, dirs, phase, truth = labels  # out of the tuple once (a member read costs a refcount)
    o = 0
    for i in range(wire_len.shape[0]):
        wl = wire_len[i]
        start = o
        _le32(out, o + EPB_TYPE, EPB_BLOCK_TYPE)
        _le32(out, o + EPB_IFACE, 0)
        t = ts_ns[i]
        _le32(out, o + EPB_TS_HIGH, (t >> 32) & 0xFFFFFFFF)
        _le32(out, o + EPB_TS_LOW, t & 0xFFFFFFFF)
        _le32(out, o + EPB_CAP_LEN, wl)
        _le32(out, o + EPB_ORIG_LEN, wl)
        src = frames[offsets[i]:offsets[i] + wl]
        dst = out[o + EPB_DATA:o + EPB_DATA + wl]
        for k in range(wl):
            dst[k] = src[k]
        o += EPB_DATA + wl
        while o & 3:
            out[o] = 0
            o += 1
        c = o + OPT_HDR
        c = _put(out, c, l_class)
        c = _put_name(out, c, names, name_off, c_base + cls[i])
        c = _put(out, c, l_flow)
        c = _put_int(out, c, flow[i])
        c = _put(out, c, l_req)
        c = _put_int(out, c, req[i])
        c = _put(out, c, l_dir)
        c = _put_name(out, c, names, name_off, d_base + dirs[i])
        c = _put(out, c, l_phase)
        c = _put_name(out, c, names, name_off, p_base + phase[i])
        if truth[i]:
            for b in range(FLAG_OFF.shape[0] - 1):
                if truth[i] >> b & 1:
                    for k in range(FLAG_OFF[b], FLAG_OFF[b + 1]):
                        out[c] = FLAG_WORDS[k]
                        c += 1
        n = c - o - OPT_HDR
        out[o] = OPT_COMMENT
        out[o + 1] = 0
        out[o + 2] = n & 0xFF
        out[o + 3] = n >> 8
        while c & 3:
            out[c] = 0
            c += 1
        _le32(out, c, OPT_ENDOFOPT)
        c += 4
        blen = c + 4 - start
        _le32(out, start + EPB_LEN, blen)
        _le32(out, c, blen)
        o = c + 4
    return o


@inline
def _le32(out, o, v):
    out[o] = v & 0xFF
    out[o + 1] = (v >> 8) & 0xFF
    out[o + 2] = (v >> 16) & 0xFF
    out[o + 3] = (v >> 24) & 0xFF
