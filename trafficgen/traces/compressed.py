"""Trace files as they are stored: plain, or compressed with gzip, xz or bzip2, told by the
file's first bytes (not its name), and read as a stream: memory holds a block of the
decompressed text at a time, never the whole file.

``codec_of(path)`` names the compression; ``Source(path, codec)`` is what the readers take;
``open_binary(path)`` is a Python binary file of the
decompressed bytes (line scans on the error path, the sniffed head); ``arrow_input(path)`` is
the same for pyarrow's CSV and JSON readers (gzip and bzip2 decompressed by Arrow itself where
it has the codec, xz through Python's ``lzma``, as Arrow has none). ``DecompressError`` lists what corrupt or truncated
compressed data raises.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from pathlib import Path
from typing import BinaryIO

MAGICS = ((b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"BZh", "bz2"))
SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".xz": "xz", ".bz2": "bz2"}
_OPENERS = {"gzip": gzip.open, "xz": lzma.open, "bz2": bz2.open}

# what Python's decompressors raise on corrupt or truncated data (gzip.BadGzipFile is an OSError)
DecompressError = (EOFError, OSError, zlib.error, lzma.LZMAError)


def codec_of(path) -> str | None:
    """``"gzip"``, ``"xz"``, ``"bz2"`` or ``None`` (plain), from the file's magic bytes."""
    with open(path, "rb") as fh:
        return codec_of_head(fh.read(6))


def codec_of_head(head: bytes) -> str | None:
    """The compression whose magic bytes ``head`` starts with, or ``None``."""
    for magic, codec in MAGICS:
        if head.startswith(magic):
            return codec
    return None


def plain_name(path) -> str:
    """The file's name without a compression suffix (``a.jsonl.gz`` -> ``a.jsonl``)."""
    p = Path(path)
    return p.stem if p.suffix.lower() in SUFFIXES else p.name


def open_binary(path, codec: str | None = None) -> BinaryIO:
    """The file's decompressed bytes as a binary file (``codec`` as ``codec_of`` gives it)."""
    if codec is None:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    return _OPENERS[codec](path, "rb")


def arrow_input(path, codec: str | None = None):
    """The file's decompressed bytes as a pyarrow input stream (closed by the caller)."""
    import pyarrow as pa
    if codec is not None and (codec == "xz" or not pa.Codec.is_available(codec)):
        return pa.PythonFile(open_binary(path, codec), mode="r")
    # compression=None: never guessed from the name (a plain file called x.csv.gz stays plain)
    return pa.input_stream(str(path), compression=codec)


class Source:
    """A trace file and its compression (``None``: plain), as the readers open it."""

    def __init__(self, path, codec: str | None = None):
        self.path, self.codec = Path(path), codec

    def __str__(self) -> str:
        return str(self.path)

    def binary(self) -> BinaryIO:
        """The decompressed bytes as a Python binary file."""
        return open_binary(self.path, self.codec)

    def arrow(self):
        """The decompressed bytes as a pyarrow input stream."""
        return arrow_input(self.path, self.codec)
