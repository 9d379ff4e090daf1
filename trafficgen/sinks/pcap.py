"""pcap sink: classic libpcap format with nanosecond timestamps (magic 0xa1b23c4d), Ethernet.

Batches arrive with their frames already laid out as pcap records, so writing is one
``write`` per batch. Writes happen on a background thread (a queue of at most ``depth``
batches), so generating the next batch overlaps writing this one: the file's write speed,
not the sum of both, bounds the run."""
from __future__ import annotations

import queue
import struct
import threading

from . import Sink, open_output, removed_on_error

PCAP_NS_MAGIC = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
SNAPLEN = 262144


def global_header(snaplen: int = SNAPLEN, linktype: int = LINKTYPE_ETHERNET) -> bytes:
    return struct.pack("<IHHiIII", PCAP_NS_MAGIC, 2, 4, 0, 0, snaplen, linktype)


def write_all(stream, buf) -> None:
    """Write every byte: an unbuffered file (a FIFO, a device) may take fewer than asked."""
    view = memoryview(buf).cast("B")
    while view.nbytes:
        n = stream.write(view)
        if n is None:  # a non-blocking stream that took nothing: not one we open
            raise BlockingIOError("the capture stream would block")
        view = view[n:]


class BackgroundWriter:
    """Write buffers to a stream on a thread; errors surface on the next call."""

    def __init__(self, stream, depth: int, release=None):
        self.stream = stream
        self.release = release  # called with each buffer once it is written
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="trafficgen-pcap-writer", daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            buf = self.q.get()
            if buf is None:
                return
            if self.error is None:
                try:
                    write_all(self.stream, buf)
                except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                    self.error = e
            if self.release is not None:
                self.release(buf)

    def put(self, buf):
        self._raise()
        self.q.put(buf)

    def finish(self):
        self.q.put(None)
        self.thread.join()
        self._raise()

    def _raise(self):
        if self.error is not None:
            raise self.error


class PcapSink(Sink):
    """Write batches (with frames) to a pcap file or binary stream."""

    def __init__(self, dest, depth: int = 2, release=None):
        """``release(frames)``, if given, is called (on the writer thread) with each batch's
        frame buffer once it is written, so a buffer pool can reuse it."""
        self.stream, self._atomic = open_output(dest, allow_special=True)
        with removed_on_error(self._atomic):
            write_all(self.stream, global_header())
            self.bytes = 24
            self.rows = 0
            self._writer = BackgroundWriter(self.stream, depth, release)

    def write(self, batch) -> None:
        if batch.packets.shape[0] == 0:
            return
        if batch.frames is None:
            raise ValueError("this batch has no frames: generate with frames=True for a capture")
        self._writer.put(batch.frames)
        self.rows += batch.packets.shape[0]
        self.bytes += batch.frames.shape[0]

    def _finish(self) -> None:
        self._writer.finish()
        if not self._atomic:
            self.stream.flush()

    def abort(self) -> None:
        try:
            self._writer.finish()
        except BaseException:  # noqa: BLE001 - already failing; the first error wins
            pass
        finally:
            if self._atomic:
                self._atomic.abort()
