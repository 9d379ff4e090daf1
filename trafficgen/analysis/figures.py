"""What a plot shows, reduced from the file as it is read (``plot``): a capture in chunks by
the scan kernels (``capinfo.Capture``), so memory is bounded by the flows, not the packets;
a Parquet table a record batch at a time. No matplotlib here: ``plot`` draws the figures."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from trafficgen.errors import TrafficgenError
from trafficgen.schema import CLASSES
from trafficgen.sinks.formats import PCAP_MAGICS, PCAPNG_SHB

from .tables import check_cells, check_columns

NS = 10**9
MAX_SPAN_S = 100 * 86_400  # per-second bins: 100 days of them (the memory of a plot)


def _seconds(path, ts, t0) -> np.ndarray:
    """Whole seconds since ``t0`` (0 for earlier times), refused past :data:`MAX_SPAN_S`."""
    sec = np.maximum((ts - t0) // NS, 0)
    if sec.shape[0] and int(sec.max()) > MAX_SPAN_S:
        raise TrafficgenError(f"{path}: spans {int(sec.max()) / 86_400:,.0f} days; a plot's per-second "
                              f"bins cover at most {MAX_SPAN_S // 86_400} days")
    return sec


# --- captures --------------------------------------------------------------------------------

def capture_figures(path: Path) -> dict:
    """What the four panels show of a capture: bytes per second by transport, packet sizes,
    bytes per flow (5-tuple), new flows per second."""
    from .capinfo import Capture  # late: numba only for a capture

    class Agg(Capture):
        def __init__(self, p):
            super().__init__(p)
            self.per_s = {k: np.zeros(0) for k in ("TCP", "UDP", "other")}
            self.sizes = np.zeros(65536 + 1, np.int64)
            self.fk, self.fb, self.ft = [], [], []
            self.t0 = None

        def _take(self, n):
            super()._take(n)
            if n == 0:
                return
            ts, size, kind, keys = self.ts[:n], self.origlen[:n], self.kind[:n] & 3, self.fkey[:n]
            if self.t0 is None:
                self.t0 = int(ts[ts >= 0].min()) if (ts >= 0).any() else 0
            sec = _seconds(path, ts, self.t0)
            for name, k in (("TCP", 1), ("UDP", 2)):
                self._add(name, sec[kind == k], size[kind == k])
            other = (kind != 1) & (kind != 2)
            self._add("other", sec[other], size[other])
            self.sizes += np.bincount(np.minimum(size, 65536), minlength=65537)
            flows = keys != 0
            self.fk.append(keys[flows].copy())
            self.fb.append(size[flows].copy())
            self.ft.append(ts[flows].copy())
            if sum(a.shape[0] for a in self.fk) > 4 << 20:
                self._reduce()

        def _add(self, name, sec, size):
            if sec.shape[0] == 0:
                return
            b = np.bincount(sec, weights=size)
            cur = self.per_s[name]
            if b.shape[0] > cur.shape[0]:
                cur = np.concatenate((cur, np.zeros(b.shape[0] - cur.shape[0])))
            cur[:b.shape[0]] += b
            self.per_s[name] = cur

        def _reduce(self):
            k, b, t = (np.concatenate(x) for x in (self.fk, self.fb, self.ft))
            u, inv = np.unique(k, return_inverse=True)
            nb = np.bincount(inv, weights=b)
            nt = np.full(u.shape[0], np.iinfo(np.int64).max)
            np.minimum.at(nt, inv, t)
            self.fk, self.fb, self.ft = [u], [nb], [nt]

    agg = Agg(path)
    with open(path, "rb") as fh:
        head = fh.read(4)
    magic = struct.unpack("<I", head)[0]
    if magic == PCAPNG_SHB:
        agg.pcapng()
    else:
        agg.pcap(*PCAP_MAGICS[magic])
    if agg.fk:
        agg._reduce()
    first = agg.ft[0] if agg.ft else np.zeros(0, np.int64)
    starts = np.bincount(_seconds(path, first, agg.t0 or 0)) if first.shape[0] else np.zeros(0)
    return {"throughput": agg.per_s, "sizes": {"all packets": np.repeat(np.arange(65537), agg.sizes)},
            "flow_bytes": {"all flows": agg.fb[0] if agg.fb else np.zeros(0)},
            "arrivals": {"flows (5-tuples)": starts}, "arrival_unit": "new flows",
            "by": "transport (a capture has no class labels; plot its packet table for classes)"}


# --- Parquet tables --------------------------------------------------------------------------

def _table_kind(path: Path) -> tuple[str, object]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as e:  # a column name not UTF-8
        raise TrafficgenError(f"{path}: unreadable Parquet file: {str(e).splitlines()[0]}") from None
    names = set(pf.schema_arrow.names)
    meta = pf.schema_arrow.metadata or {}
    table = meta.get(b"trafficgen.table", b"").decode("utf-8", "replace")
    if table not in ("flows", "requests", "packets"):
        table = ("packets" if {"ts_ns", "wire_len", "flow_id"} <= names else
                 "requests" if {"request_id", "start_ns", "prompt_tokens"} <= names else
                 "flows" if {"flow_id", "start_ns", "bytes_up"} <= names else "")
    if not table:
        raise TrafficgenError(f"{path}: not a trafficgen flow, request or packet table (plot a "
                              f"trace with 'trafficgen compare TRACE TRACE --plot')")
    return table, pf


def _class_names(col) -> np.ndarray:
    import pyarrow as pa
    if pa.types.is_dictionary(col.type) or pa.types.is_string(col.type):
        return np.asarray(col.cast(pa.string()).to_numpy(zero_copy_only=False), object)
    return np.asarray([CLASSES[i] if 0 <= i < len(CLASSES) else str(i) for i in col.to_numpy()], object)


def _spread(path, per_s: dict, cls, start, end, nbytes, t0):
    """Add each row's bytes evenly over the seconds [start, end] of its life."""
    for name in np.unique(cls):
        sel = cls == name
        s = _seconds(path, start[sel], t0)
        e = np.maximum(_seconds(path, end[sel], t0), s)
        rate = nbytes[sel] / (e - s + 1)
        n = int(e.max()) + 2
        diff = np.bincount(s, weights=rate, minlength=n) - np.bincount(e + 1, weights=rate, minlength=n)
        cur = np.cumsum(diff)[:n - 1]
        old = per_s.get(name, np.zeros(0))
        m = max(old.shape[0], cur.shape[0])
        per_s[name] = np.pad(old, (0, m - old.shape[0])) + np.pad(cur, (0, m - cur.shape[0]))


def table_figures(path: Path) -> dict:
    """What the four panels show of a flow, request or packet table, by class."""
    import pyarrow as pa
    table, pf = _table_kind(path)
    try:
        return _table_figures(path, table, pf)
    except (pa.ArrowException, OSError) as e:  # OSError: a corrupt page ("Couldn't deserialize thrift")
        raise TrafficgenError(f"{path}: unreadable Parquet data: {str(e).splitlines()[0]}") from None


def _table_figures(path: Path, table: str, pf) -> dict:
    per_s, sizes, flow_bytes, arrivals = {}, {}, {}, {}
    if table == "packets":
        cols = ["ts_ns", "wire_len", "class", "flow_id"]
        check_columns(path, pf.schema_arrow, cols, table)
        t0 = None
        fb, ft, fc = {}, {}, {}
        for batch in pf.iter_batches(columns=cols, batch_size=1 << 20):
            check_cells(path, batch, cols, table)
            ts = batch.column("ts_ns").to_numpy()
            size = batch.column("wire_len").to_numpy().astype(np.int64)
            cls = _class_names(batch.column("class"))
            fid = batch.column("flow_id").to_numpy()
            t0 = int(ts[0]) if t0 is None and ts.shape[0] else t0
            sec = _seconds(path, ts, t0)
            for name in np.unique(cls):
                sel = cls == name
                b = np.bincount(sec[sel], weights=size[sel])
                cur = per_s.get(name, np.zeros(0))
                m = max(cur.shape[0], b.shape[0])
                per_s[name] = np.pad(cur, (0, m - cur.shape[0])) + np.pad(b, (0, m - b.shape[0]))
                sizes.setdefault(name, []).append(np.bincount(np.minimum(size[sel], 65536), minlength=65537))
                u, first = np.unique(fid[sel], return_index=True)
                w = np.bincount(np.searchsorted(u, fid[sel]), weights=size[sel])
                for k, v, t in zip(u.tolist(), w.tolist(), ts[sel][first].tolist()):
                    fb[k] = fb.get(k, 0) + v
                    ft.setdefault(k, t)
                    fc[k] = name
        sizes = {k: np.repeat(np.arange(65537), np.sum(v, axis=0)) for k, v in sizes.items()}
        names = np.array([fc[k] for k in fb], object)
        b = np.array([fb[k] for k in fb])
        t = np.array([ft[k] for k in fb], np.int64)
        for name in np.unique(names):
            flow_bytes[name] = b[names == name]
            arrivals[name] = np.bincount(_seconds(path, t[names == name], t0))
        unit, size_title = "new flows", "packet sizes"
    else:
        import pyarrow.parquet as pq
        want = (["class", "start_ns", "end_ns", "bytes_up", "bytes_down"]
                + (["prompt_tokens", "output_tokens"] if table == "requests" else ["packets_up", "packets_down"]))
        check_columns(path, pf.schema_arrow, want, table)
        tb = pq.read_table(path, columns=want)
        check_cells(path, tb, want, table)
        cls = _class_names(tb.column("class").combine_chunks())
        col = lambda k: tb.column(k).to_numpy()  # noqa: E731
        start, end = col("start_ns"), col("end_ns")
        total = (col("bytes_up") + col("bytes_down")).astype(np.float64)
        t0 = int(start.min()) if start.shape[0] else 0
        if start.shape[0]:
            _spread(path, per_s, cls, start, end, total, t0)
        for name in np.unique(cls):
            sel = cls == name
            flow_bytes[name] = total[sel]
            arrivals[name] = np.bincount(_seconds(path, start[sel], t0))
            if table == "requests":
                sizes[f"{name} prompt"] = col("prompt_tokens")[sel]
                sizes[f"{name} output"] = col("output_tokens")[sel]
            else:
                pk = col("packets_up")[sel] + col("packets_down")[sel]
                sizes[name] = total[sel] / np.maximum(pk, 1)
        unit = "requests" if table == "requests" else "new flows"
        size_title = "tokens per request" if table == "requests" else "mean packet size per flow"
    by = "class" if table == "packets" else f"class (each {table[:-1]}'s bytes spread evenly over its life)"
    return {"throughput": per_s, "sizes": sizes, "flow_bytes": flow_bytes, "arrivals": arrivals,
            "arrival_unit": unit, "by": by, "table": table, "size_title": size_title}
