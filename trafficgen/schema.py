"""The one schema module: numpy dtypes for the flow, request and packet tables, the matching
Arrow schemas, and the label codes both sides share.

Inside the engine every table is a numpy structured array; at the edges (Parquet, the library's
Arrow output) it becomes an Arrow record batch. Label columns (class, kind, status, direction, phase) are
``uint8`` codes inside and dictionary-encoded strings outside; IPv4 addresses are ``uint32``
inside and dotted strings outside. :func:`to_arrow` is the only conversion, and
``tests/test_schema.py`` checks that the two descriptions agree column by column.

The flow table's ``rtt_ns`` is the handshake RTT the client measures (its SYN sent -> its ACK
of the SYN/ACK sent); a UDP flow's is its path's RTT, or 0 where it has none (README, the
tables).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

# The codes the kernels write (direction and phase labels, TCP flags, IP protocols) live with
# them; they are re-exported here, beside their vocabularies.
from trafficgen.kernels.codes import (  # noqa: F401
    ACK,
    DIR_DOWN,
    DIR_UP,
    FIN,
    PH_HANDSHAKE,
    PH_PREFILL_WAIT,
    PH_REQUEST,
    PH_RESPONSE,
    PH_SILENCE,
    PH_STREAM,
    PH_TEARDOWN,
    PH_THINKING,
    PH_TOOL,
    PH_TRANSFER,
    PROTO_TCP,
    PROTO_UDP,
    PSH,
    RST,
    SYN,
)

# The label vocabularies and their codes (public: ``tg.LABELS``, ``tg.LABEL_CODES``; see
# ``trafficgen.labels``), beside the schemas that encode them.
from trafficgen.labels import (  # noqa: F401
    CLASS_CODE,
    CLASSES,
    DIRECTION_CODE,
    DIRECTIONS,
    KIND_CODE,
    KINDS,
    LABEL_CODES,
    LABELS,
    OS_CODE,
    OSES,
    PHASE_CODE,
    PHASES,
    STATUS_CODE,
    STATUSES,
)

# the vocabulary of each label column (the position of a name is its code)
VOCABULARIES = LABELS


@dataclass(frozen=True)
class Column:
    """One column: its numpy dtype inside, its Arrow type outside, and how to convert."""

    name: str
    np_dtype: str
    arrow_type: pa.DataType
    vocab: tuple[str, ...] | None = None  # dictionary-encoded label column
    ipv4: bool = False  # uint32 inside, dotted string outside


def _label(name: str) -> Column:
    return Column(name, "u1", pa.dictionary(pa.int8(), pa.string()), vocab=VOCABULARIES[name])


def _ip(name: str) -> Column:
    return Column(name, "u4", pa.string(), ipv4=True)


def _i8(name: str) -> Column:
    return Column(name, "i8", pa.int64())


def _truncated() -> Column:
    """``truncated``: the row goes on past a capture cut (``generate --stop-at``): the capture
    holds its packets before the cut only, and the row keeps the figures of the whole flow or
    request as simulated (its ``end_ns`` at or after the cut). False in a run without a cut."""
    return Column("truncated", "?", pa.bool_())


FLOW_COLUMNS = (
    _i8("flow_id"), _i8("session_id"), _label("class"), _i8("start_ns"), _i8("end_ns"),
    _ip("src_ip"), _ip("dst_ip"),
    Column("src_port", "u2", pa.uint16()), Column("dst_port", "u2", pa.uint16()),
    Column("protocol", "u1", pa.uint8()),
    _i8("bytes_up"), _i8("bytes_down"), _i8("packets_up"), _i8("packets_down"),
    _i8("client_id"), _i8("requests"),
    _i8("rtt_ns"),  # the client's handshake RTT (its SYN -> its ACK); UDP: the path's RTT
    Column("ip_version", "u1", pa.uint8()),  # 4 or 6 (network.ip); addresses shown in it
    _label("client_os"), _label("server_os"),  # each end's TCP/IP stack (kernels/stacks.py)
    _truncated(),
)

REQUEST_COLUMNS = (
    _i8("request_id"), _i8("flow_id"), _i8("session_id"), _label("class"), _label("kind"),
    _i8("start_ns"), _i8("first_byte_ns"), _i8("end_ns"), _i8("bytes_up"), _i8("bytes_down"),
    Column("prompt_tokens", "i4", pa.int32()), Column("output_tokens", "i4", pa.int32()),
    Column("reasoning_tokens", "i4", pa.int32()), Column("images", "i2", pa.int16()),
    Column("turn", "i4", pa.int32()), Column("llm_call", "i4", pa.int32()),
    Column("tool_call", "i4", pa.int32()), _i8("client_id"), _truncated(),
    _label("status"),  # how it ended (labels.STATUSES)
    Column("retries", "i2", pa.int16()),  # the earlier attempts (answered 429 or 503) it retries
)

PACKET_COLUMNS = (
    _i8("ts_ns"), _i8("flow_id"), _i8("request_id"), _label("direction"),
    Column("wire_len", "u4", pa.uint32()), _label("phase"), _label("class"),
    Column("tcp_flags", "u1", pa.uint8()), Column("seq", "u4", pa.uint32()),
    Column("ack", "u4", pa.uint32()), Column("payload_len", "u4", pa.uint32()),
    # the path's impairments (network.impair; all false/0 on a clean path): ``retransmit``
    # the frame carries bytes its sender sent before; ``lost`` 1: the frame is lost after the
    # tap (captured, never delivered); ``gap``: new bytes of this direction were lost before
    # the tap just before this frame (never captured: tshark's "previous segment not captured");
    # ``reordered``: the path held this frame back, behind later ones of its direction;
    # ``duplicate``: a second copy the path made (its sender sent the frame once)
    Column("retransmit", "?", pa.bool_()), Column("lost", "u1", pa.uint8()),
    Column("gap", "?", pa.bool_()), Column("reordered", "?", pa.bool_()),
    Column("duplicate", "?", pa.bool_()),
)

TABLES = {"flows": FLOW_COLUMNS, "requests": REQUEST_COLUMNS, "packets": PACKET_COLUMNS}


def _dtype(columns: tuple[Column, ...]) -> np.dtype:
    return np.dtype([(c.name, c.np_dtype) for c in columns])


def _schema(columns: tuple[Column, ...], table: str) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.arrow_type, nullable=False) for c in columns],
                     metadata={b"trafficgen.table": table.encode()})


FLOW_DTYPE = _dtype(FLOW_COLUMNS)
REQUEST_DTYPE = _dtype(REQUEST_COLUMNS)
PACKET_DTYPE = _dtype(PACKET_COLUMNS)
DTYPES = {"flows": FLOW_DTYPE, "requests": REQUEST_DTYPE, "packets": PACKET_DTYPE}
FLOW_SCHEMA = _schema(FLOW_COLUMNS, "flows")
REQUEST_SCHEMA = _schema(REQUEST_COLUMNS, "requests")
PACKET_SCHEMA = _schema(PACKET_COLUMNS, "packets")
SCHEMAS = {"flows": FLOW_SCHEMA, "requests": REQUEST_SCHEMA, "packets": PACKET_SCHEMA}

# The engine's packet schedule: the packet table's columns plus what the frame encoder needs.
# Rows of UDP flows (flow protocol 17; kernels/udp.py encodes them) read ``layout`` as the
# payload layout: 0 opaque (payload_len bytes of payload), 1 RTP (tcp_flags = RTP byte 1, the
# marker bit and payload type; seq = sequence number; ack = timestamp; payload_len = bytes after
# the 12-byte header), 2 RoCEv2 (tcp_flags = BTH opcode; seq = PSN; payload_len = RDMA payload
# bytes, without headers, pad and ICRC; on WRITEs ack = the message's index in its transfer,
# bit 31 the BTH AckReq bit, segoff = the packet's offset in its message, writelen = the
# message length (RETH DMA length); on Acknowledges ack = the AETH MSN, segoff its syndrome, 0
# for the ACK's default, 0x60 a NAK; tcp_flags 0x81 a CNP). ipid is the IPv4 id; on TCP rows
# win is the advertised receive window (bytes, before scaling), tsval/tsecr the timestamp
# option (0 without timestamps), and on a pure ACK segoff/writelen its SACK block's edges
# (equal: none; kernels/tcpstate.py); UDP rows leave them 0, but a RoCE row's win, if not 0, is its
# IPv4 TOS byte (a CE-marked WRITE, a CNP: kernels/roce.py).
SCHED_DTYPE = np.dtype(PACKET_DTYPE.descr + [
    ("ipid", "u2"), ("layout", "u1"), ("segoff", "u4"), ("writelen", "u4"),
    ("win", "u4"), ("tsval", "u4"), ("tsecr", "u4")])

_DICTS: dict = {}  # column -> its vocabulary as an Arrow array, made on first use: pa.array
# imports pandas (0.2 s), which a run that writes no table never needs


def _dictionary(name: str) -> pa.Array:
    d = _DICTS.get(name)
    if d is None:
        d = _DICTS[name] = pa.array(VOCABULARIES[name], pa.string())
    return d


def ipv4_to_str(addrs: np.ndarray) -> pa.Array:
    """uint32 addresses (host order) to dotted-quad strings, vectorised."""
    a = np.asarray(addrs, dtype=np.uint32)
    octets = [((a >> s) & 0xFF).astype(str) for s in (24, 16, 8, 0)]
    dotted = np.char.add(np.char.add(np.char.add(np.char.add(octets[0], "."), octets[1]), "."),
                         np.char.add(np.char.add(octets[2], "."), octets[3]))
    return pa.array(dotted, pa.string())


def ip_to_str(addrs: np.ndarray, v6: np.ndarray, prefix: bytes) -> pa.Array:
    """Addresses as strings: dotted quads, and where ``v6`` the IPv6 address of the 16-byte
    ``prefix`` (a /96 or shorter) with the IPv4 address in its last 32 bits."""
    text = ipv4_to_str(addrs)
    if not v6.any():
        return text
    import ipaddress
    base = int.from_bytes(prefix, "big")
    out = text.to_numpy(zero_copy_only=False).astype(object)
    for k in np.flatnonzero(v6):  # per IPv6 flow row, at the table's edge only
        out[k] = str(ipaddress.IPv6Address(base | int(addrs[k])))
    return pa.array(out, pa.string())


def to_arrow(rows: np.ndarray, table: str, ipv6_prefixes: tuple[bytes, bytes] | None = None
             ) -> pa.RecordBatch:
    """Convert a structured array of one of the three tables to an Arrow record batch.
    ``ipv6_prefixes`` (client, server: ``network.ipv6_clients/servers``) render the addresses
    of the flow rows with ``ip_version`` 6."""
    arrays = []
    v6 = rows["ip_version"] == 6 if table == "flows" and ipv6_prefixes else None
    for col in TABLES[table]:
        values = rows[col.name]
        if col.vocab is not None:
            arrays.append(pa.DictionaryArray.from_arrays(
                pa.array(values.astype(np.int8), pa.int8()), _dictionary(col.name)))
        elif col.ipv4 and v6 is not None:
            arrays.append(ip_to_str(values, v6, ipv6_prefixes[col.name == "dst_ip"]))
        elif col.ipv4:
            arrays.append(ipv4_to_str(values))
        else:
            arrays.append(pa.array(values, col.arrow_type))
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMAS[table])


def empty(table: str, n: int = 0) -> np.ndarray:
    """A zero-filled structured array of ``n`` rows of ``table``."""
    return np.zeros(n, dtype=DTYPES[table])


def concat_rows(parts: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate`` for structured rows of one dtype, as one byte copy per part (numpy
    concatenates structured arrays field by field, several times slower)."""
    dtype = parts[0].dtype
    out = np.empty(sum(p.shape[0] for p in parts), dtype)
    flat = out.view(np.uint8)
    o = 0
    for p in parts:
        n = p.shape[0] * dtype.itemsize
        flat[o:o + n] = np.ascontiguousarray(p).view(np.uint8)
        o += n
    return out


def take_rows(rows: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``rows[order]`` for a structured array, copying whole rows in a kernel (numpy's fancy
    indexing of structured rows goes field by field)."""
    from trafficgen.kernels.stats import gather_rows  # late: numba only where rows are moved
    out = np.empty(order.shape[0], rows.dtype)
    if order.shape[0]:
        gather_rows(rows.view(np.uint8).reshape(rows.shape[0], rows.dtype.itemsize), order,
                    out.view(np.uint8).reshape(order.shape[0], rows.dtype.itemsize))
    return out
