"""What came back: frames arriving on each port while sending (those the device passed).

One AF_PACKET socket per port, bound to it, that ignores what this host sends
(PACKET_IGNORE_OUTGOING) and is never read: the kernel counts every frame it would have
queued (PACKET_STATISTICS: delivered plus dropped for a full buffer), so counting costs no
work per frame here, whatever the rate.
"""
from __future__ import annotations

import socket
import struct
import time

SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
ETH_P_ALL = 0x0003
SETTLE_S = 0.2  # frames in flight through the device when sending ends


class CountBack:
    """Open with the port names; ``counts()`` (once, after sending) gives frames per port."""

    def __init__(self, names: list[str]):
        self.socks = {}
        for name in names:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            try:
                s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError:
                pass  # Linux before 4.20: a sender bypassing the qdisc is not seen anyway
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.bind((name, 0))
            self._stats(s)  # reading the statistics resets them: start from zero
            self.socks[name] = s

    @staticmethod
    def _stats(s) -> int:
        packets, drops = struct.unpack("II", s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        return packets  # tp_packets already counts the drops

    def counts(self, settle_s: float = SETTLE_S) -> dict:
        time.sleep(settle_s)
        out = {name: self._stats(s) for name, s in self.socks.items()}
        self.close()
        return out

    def close(self) -> None:
        for s in self.socks.values():
            s.close()
