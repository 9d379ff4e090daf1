"""Sinks: where batches go. Each accepts a path or a binary file object, works as a context
manager, reports rows and bytes, and (for paths) writes under a temporary name in the same
folder, renamed into place only when whole: a failed run leaves the user's files untouched.

Owns: this module (AtomicFile, StagedFolder, output checks), ``pcap``, ``pcapng``, ``parquet``,
``outputs`` (a run's sinks as one: open_sinks), ``commit`` (outputs put into place as one set,
signals held off; the sweep of a killed run's hidden files), ``buffers`` (BufferPool, the frame
buffers the engine fills and the sinks hand back), ``formats`` (capture-format facts the readers share).
May import: ``config``, ``schema``, ``errors``, ``version``, ``kernels``. Never the engine,
replay, analysis, the API or the CLI.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from trafficgen.errors import TrafficgenError

from .commit import commit_set, sweep


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would have given the file


class AtomicFile:
    """A binary file at ``target`` that appears only on :meth:`commit`: written under a hidden
    name beside it that carries this process's pid (``.NAME.PID.XXXXXXXX.part``; a later run
    removes it if this process is killed), then :meth:`finish` (flushed, synced, closed) and
    put into place with the others of its set (``commit.commit_set``)."""

    folder = False

    def __init__(self, target: str | os.PathLike):
        self.target = Path(target)
        check_writable(self.target)
        parent = self.target.parent if str(self.target.parent) else Path(".")
        sweep(parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.target.name}.{os.getpid()}.", suffix=".part",
                                   dir=parent)
        self.tmp = Path(tmp)
        self.file: BinaryIO = os.fdopen(fd, "wb", buffering=0)

    def finish(self):
        """The file whole on disk under its temporary name (synced, closed, its mode set)."""
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.chmod(self.tmp, _FILE_MODE)

    def commit(self):
        self.finish()
        commit_set([self])

    def abort(self):
        try:
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class StagedFolder:
    """A new folder at ``target``, filled under a hidden name beside it (``tmp``, with this
    process's pid, as :class:`AtomicFile`'s) and renamed into place on :meth:`commit` (or with
    the others of its set, ``commit.commit_set``); an existing path is never touched."""

    folder = True

    def __init__(self, target: str | os.PathLike, what: str = "output"):
        self.target = Path(target)
        if self.target.exists() or self.target.is_symlink():
            raise TrafficgenError(f"{target}: already exists (the {what} shards go into a new folder)")
        parent = self.target.parent if str(self.target.parent) else Path(".")
        if not parent.is_dir():
            raise TrafficgenError(f"{target}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise TrafficgenError(f"{target}: folder {parent} is not writable")
        sweep(parent)
        self.tmp = tempfile.mkdtemp(prefix=f".{self.target.name}.{os.getpid()}.", suffix=".part",
                                    dir=parent)
        self._done = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self._done:
            self.abort()
        return False

    def finish(self):
        os.chmod(self.tmp, 0o777 & ~_umask())

    def commit(self):
        self.finish()
        commit_set([self])
        self.committed()

    def committed(self):
        """Put into place (by :meth:`commit` or a set's commit): nothing left to remove."""
        self._done = True

    def abort(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._done = True


class DirectFile:
    """An existing special file (a FIFO, a character device such as /dev/null) written in place:
    it cannot be replaced by a rename, and replacing it would be wrong."""

    def __init__(self, target: str | os.PathLike):
        self.target = Path(target)
        self.file: BinaryIO = open(self.target, "wb", buffering=0)  # noqa: SIM115 - closed below

    def commit(self):
        self.file.close()

    def abort(self):
        self.file.close()


def is_special(target: Path) -> bool:
    """An existing path that is neither a regular file nor a folder."""
    return target.exists() and not target.is_file() and not target.is_dir()


def check_writable(target: Path, allow_special: bool = False) -> None:
    """One-line error for an output path that cannot be written (before any work is done)."""
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise TrafficgenError(f"{target}: is a directory (expected an output file path)")
    if is_special(target):
        if not allow_special:
            raise TrafficgenError(f"{target}: is not a regular file (tables need a file path)")
        if not os.access(target, os.W_OK):
            raise TrafficgenError(f"{target}: is not writable")
        return
    if not parent.is_dir():
        raise TrafficgenError(f"{target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise TrafficgenError(f"{target}: folder {parent} is not writable")


class Sink:
    """Base: ``write(batch)``, then ``finish()`` (trailers; the file is whole under its temporary
    name) and ``commit()`` (renamed into place), or ``abort()``. ``close()`` does both steps;
    several sinks that must appear together are finished first and committed last."""

    rows = 0
    bytes = 0
    _atomic: "AtomicFile | DirectFile | None" = None
    _finished = False
    _committed = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    @property
    def target(self) -> Path | None:
        """The path written (None for a file object given)."""
        return None if self._atomic is None else self._atomic.target

    def write(self, batch) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _finish(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self) -> None:
        if not self._finished:
            self._finish()
            if isinstance(self._atomic, AtomicFile):
                self._atomic.finish()
            self._finished = True

    @property
    def staged(self) -> "AtomicFile | None":
        """The finished temporary file that a commit puts into place (None: nothing to rename)."""
        return self._atomic if isinstance(self._atomic, AtomicFile) else None

    def commit(self) -> None:
        self.finish()
        if not self._committed:
            if self.staged is not None:
                commit_set([self.staged])
            self.committed()

    def committed(self) -> None:
        """Its file is in place (renamed by :meth:`commit` or with a set): a special file
        written in place is closed."""
        if not self._committed:
            if self._atomic is not None and self.staged is None:
                self._atomic.commit()
            self._committed = True

    def close(self) -> None:
        self.commit()

    def abort(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


@contextmanager
def removed_on_error(opened):
    """Inside a sink's constructor, after ``open_output``: an error (or a signal) before the
    sink exists removes its temporary file (no caller holds the sink to abort it)."""
    try:
        yield
    except BaseException:
        if opened is not None:
            opened.abort()
        raise


def open_output(dest, allow_special: bool = False) -> tuple[BinaryIO, AtomicFile | DirectFile | None]:
    """A writable binary stream for a path (atomic; written in place if it is an existing
    special file and ``allow_special``) or a file object (used as is)."""
    if hasattr(dest, "write"):
        return dest, None
    if allow_special and is_special(Path(dest)):
        df = DirectFile(dest)
        return df.file, df
    af = AtomicFile(dest)
    return af.file, af
