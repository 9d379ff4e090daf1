"""pcap sink: classic libpcap format with nanosecond timestamps (magic 0xa1b23c4d), Ethernet.

Batches arrive with their frames already laid out as pcap records, so writing is one
``write`` call per batch."""
from __future__ import annotations

import struct

from . import Sink, open_output

PCAP_NS_MAGIC = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
SNAPLEN = 262144


def global_header(snaplen: int = SNAPLEN, linktype: int = LINKTYPE_ETHERNET) -> bytes:
    return struct.pack("<IHHiIII", PCAP_NS_MAGIC, 2, 4, 0, 0, snaplen, linktype)


class PcapSink(Sink):
    """Write batches (with frames) to a pcap file or binary stream."""

    def __init__(self, dest):
        self.stream, self._atomic = open_output(dest)
        self.stream.write(global_header())
        self.bytes = 24
        self.rows = 0

    def write(self, batch) -> None:
        if batch.packets.shape[0] == 0:
            return
        if batch.frames is None:
            raise ValueError("this batch has no frames: generate with frames=True for a capture")
        self.stream.write(memoryview(batch.frames))
        self.rows += batch.packets.shape[0]
        self.bytes += batch.frames.shape[0]

    def close(self) -> None:
        if self._atomic:
            self._atomic.commit()
        else:
            self.stream.flush()

    def abort(self) -> None:
        if self._atomic:
            self._atomic.abort()
