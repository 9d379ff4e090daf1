"""KV-cache transfer kernels: per-transfer draws, then the RoCEv2 packets of each transfer
(RDMA WRITEs paced at the link rate, the responder's coalesced ACKs) as schedule rows.

A transfer moves ``uncached x layer_bytes`` bytes per layer, ``layers_per_msg`` layers per WRITE
message (a group over ``MAX_MESSAGE_BYTES`` goes as several), ``pmtu`` payload bytes per packet.
"""
from collections import namedtuple

import numpy as np

from .codes import PH_TRANSFER
from .jit import helper, inline, kernel
from .rng import bits, uniform
from .sampling import sample
from .udp import (
    ACK_REQ,
    ETH_IP_UDP,
    ETH_OVERHEAD,
    L_ROCE,
    OP_ACK,
    OP_WRITE_FIRST,
    OP_WRITE_LAST,
    OP_WRITE_MIDDLE,
    OP_WRITE_ONLY,
    roce_bth_len,
)

# draw indexes of a transfer's key
D_PROMPT, D_HIT, D_NEW, D_PREFILL, D_DECODE, D_PSN, D_IPID = range(7)
MAX_MESSAGE_BYTES = 1 << 30  # a layer group larger than this goes as several WRITE messages

Transfers = namedtuple("Transfers", "layer_bytes layers per_msg pmtu ack_every ns_per_byte "
                                    "layer_ns_per_token ack_lag_ns class_id")
Transfers.__doc__ = """How the class's transfers go (``classes.kv_transfer``): KV bytes per token
per layer, layers, layers per WRITE message, payload bytes per packet (path MTU), an ACK every
this many packets, ns per wire byte, prefill ns per token per layer (0: all ready at once), how
long after its WRITE an ACK is seen, the class code."""


@kernel
def draw(keys, prompt, prefix, hit_prob, hit_new, n_prefill, n_decode,
         out_prompt, out_uncached, out_prefill, out_decode):
    """Per transfer (keys uint64[n]): prompt tokens, uncached tokens (>= 1), server indexes.

    prompt/hit_new: packed distributions; prefix: tokens always cached; hit_prob: chance the
    request continues a cached context, leaving ``hit_new`` tokens to prefill. int64[n] out.
    """
    for t in range(keys.shape[0]):
        k = keys[t]
        p = max(1, int(round(sample(prompt, uniform(k, D_PROMPT)))))
        fresh = p - prefix
        if uniform(k, D_HIT) < hit_prob:
            fresh = min(fresh, int(round(sample(hit_new, uniform(k, D_NEW)))))
        out_prompt[t] = p
        out_uncached[t] = max(1, fresh)
        out_prefill[t] = min(n_prefill - 1, int(uniform(k, D_PREFILL) * n_prefill))
        out_decode[t] = min(n_decode - 1, int(uniform(k, D_DECODE) * n_decode))


@inline
def _msg_len(group_bytes, off):
    return min(group_bytes - off, MAX_MESSAGE_BYTES)


@kernel
def count(uncached, xf, out_rows):
    """Rows (WRITE packets + ACKs) of each transfer (``xf``: ``Transfers``) into ``out_rows``
    (int64[n]); the total."""
    layers, per_msg, layer_bytes, pmtu, ack_every = xf.layers, xf.per_msg, xf.layer_bytes, xf.pmtu, xf.ack_every
    total = 0
    for t in range(uncached.shape[0]):
        rows = 0
        for g in range(0, layers, per_msg):
            gb = uncached[t] * layer_bytes * min(per_msg, layers - g)
            off = 0
            while off < gb:
                m = _msg_len(gb, off)
                npk = (m + pmtu - 1) // pmtu
                rows += npk + (npk + ack_every - 1) // ack_every
                off += m
        out_rows[t] = rows
        total += rows
    return total


@kernel
def fill(keys, starts, uncached, row0, xf, out):
    """The packets of each transfer t (flow t, request t) from row ``row0[t]`` of ``out``
    (SCHED_DTYPE rows, unsorted, ts in ns from the capture start); starts int64 ns; ``xf``:
    ``Transfers``.

    A message leaves once its layers are computed (layer l at ``(l + 1) x uncached x
    layer_ns_per_token`` after the start; 0: at once) and the link is free; its WRITEs go back
    to back at the link rate (each frame holds the link for its wire bytes plus ETH_OVERHEAD).
    The responder ACKs every ``ack_every``-th packet of a message and its last, seen
    ``ack_lag_ns`` after the acknowledged frame has been sent.
    """
    layers, per_msg, layer_bytes = xf.layers, xf.per_msg, xf.layer_bytes
    for t in range(keys.shape[0]):
        k = keys[t]
        r = row0[t]
        psn = np.int64(bits(k, D_PSN) & np.uint64(0xFFFFFF))
        ipid = np.int64(bits(k, D_IPID) & np.uint64(0xFFFF))
        ipid_ack = (ipid * 7 + 12345) & 0xFFFF
        clock = 0.0  # ns after the start when the link is free
        msg = 0
        for g in range(0, layers, per_msg):
            nl = min(per_msg, layers - g)
            gb = uncached[t] * layer_bytes * nl
            clock = max(clock, (g + nl) * uncached[t] * xf.layer_ns_per_token)
            off = 0
            while off < gb:
                m = _msg_len(gb, off)
                r, clock, psn, ipid, ipid_ack = _message(out, r, t, starts[t], clock, m, msg,
                                                         (psn, ipid, ipid_ack), xf)
                msg += 1
                off += m


@helper
def _message(out, r, t, start, clock, m, msg, ids, xf):
    """One WRITE message of ``m`` bytes (and its ACKs) from row ``r``, the link free at
    ``clock``; ``ids``: the next PSN and IPv4 ids (WRITEs, ACKs). Returns the next row, clock,
    PSN and IPv4 ids."""
    psn, ipid, ipid_ack = ids
    pmtu, ack_every, ns_per_byte, class_id = xf.pmtu, xf.ack_every, xf.ns_per_byte, xf.class_id
    npk = (m + pmtu - 1) // pmtu
    for j in range(npk):
        plen = min(pmtu, m - j * pmtu)
        if npk == 1:
            op = OP_WRITE_ONLY
        elif j == 0:
            op = OP_WRITE_FIRST
        elif j == npk - 1:
            op = OP_WRITE_LAST
        else:
            op = OP_WRITE_MIDDLE
        wl = ETH_IP_UDP + roce_bth_len(op) + plen + ((-plen) & 3) + 4
        ts = start + np.int64(clock)
        clock += (wl + ETH_OVERHEAD) * ns_per_byte
        areq = (j + 1) % ack_every == 0 or j == npk - 1
        _row(out[r], ts, t, 0, class_id,
             (wl, op, psn, msg | (ACK_REQ if areq else 0), plen, ipid, j * pmtu, m))
        r += 1
        ipid = (ipid + 1) & 0xFFFF
        if areq:  # MSN: the messages completed, this one once its last packet is in
            done = msg + 1 if j == npk - 1 else msg
            _row(out[r], start + np.int64(clock) + xf.ack_lag_ns, t, 1, class_id,
                 (ETH_IP_UDP + 16 + 4, OP_ACK, psn, done & 0xFFFFFF, 0, ipid_ack, 0, 0))
            r += 1
            ipid_ack = (ipid_ack + 1) & 0xFFFF
        psn = (psn + 1) & 0xFFFFFF
    return r, clock, psn, ipid, ipid_ack


@inline
def _row(rec, ts, t, d, class_id, pkt):
    """Schedule row ``rec`` of transfer ``t``: ``pkt`` = (wire bytes, opcode, PSN, ack, payload
    bytes, IPv4 id, offset in its message, message length)."""
    wl, op, psn, ack, plen, ipid, segoff, writelen = pkt
    rec["ts_ns"] = ts
    rec["flow_id"] = t
    rec["request_id"] = t
    rec["direction"] = d
    rec["wire_len"] = wl
    rec["phase"] = PH_TRANSFER
    rec["class"] = class_id
    rec["tcp_flags"] = op
    rec["seq"] = psn
    rec["ack"] = ack
    rec["payload_len"] = plen
    rec["ipid"] = ipid
    rec["layout"] = L_ROCE
    rec["segoff"] = segoff
    rec["writelen"] = writelen
