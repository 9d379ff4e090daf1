"""Capture-format facts shared by the sinks that write captures and the code that reads them
back (``analysis`` for inspect and plot, ``replay`` for sending): the pcap magics, the pcapng
section header and byte-order magic, link-type names and an interface's timestamp resolution.
Plain ``struct``: nothing here loads numba or pyarrow."""
from __future__ import annotations

import struct

PCAP_MAGICS = {  # magic as read little-endian -> (big-endian file, ns per sub-second unit)
    0xA1B2C3D4: (False, 1000), 0xA1B23C4D: (False, 1),
    0xD4C3B2A1: (True, 1000), 0x4D3CB2A1: (True, 1),
}
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
LINKTYPES = {1: "Ethernet", 101: "raw IP", 113: "Linux cooked", 276: "Linux cooked v2"}


def tsresol(options: bytes, e: str) -> tuple[int, int, float, str]:
    """(mult, div, scale, label) of an interface's if_tsresol option (default microseconds)."""
    o = 0
    value = 6
    while o + 4 <= len(options):
        code, length = struct.unpack_from(e + "HH", options, o)
        if code == 0:
            break
        if code == 9 and length >= 1:
            value = options[o + 4]
        o += 4 + ((length + 3) & ~3)
    if value & 0x80:
        k = value & 0x7F
        return 0, 1, 1e9 / 2**k, f"2^-{k} s"
    if value <= 9:
        return 10 ** (9 - value), 1, 0.0, {6: "us", 9: "ns", 3: "ms", 0: "s"}.get(value, f"1e-{value} s")
    if value <= 27:  # the divisor fits an int64
        return 1, 10 ** (value - 9), 0.0, f"1e-{value} s"
    return 0, 1, 1e9 / 10.0**value, f"1e-{value} s"  # finer: a float scale, as for powers of 2
