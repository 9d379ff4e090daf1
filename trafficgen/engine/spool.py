"""The spool: where local workers put their partitions' streams for the merge to read.

A run has one temporary folder (``spool_dir``: /dev/shm when it has room); a partition's
stream is three files in a folder of its own (``{pkts,flows,reqs}``, the raw rows), written by
the worker (``stream_files``) and mapped read-only by the merge (``mapped``), which removes
the folder once it has passed the stream. The run's folder carries its pid
(``trafficgen-spool-PID-XXXXXXXX``): a run removes those whose process is gone (``new_spool``).
"""
from __future__ import annotations

import mmap
import os
import re
import shutil
import tempfile

import numpy as np

from trafficgen.sinks.commit import owner_gone

from . import phases

SPOOL_NAME = re.compile(r"^trafficgen-spool-(?P<pid>[0-9]+)-[a-z0-9_]{8}$")

SHM_SPOOL_MIN_FREE = 2 << 30


def spool_dir() -> str | None:
    """Where local workers spool their rows: ``TMPDIR`` if set, else /dev/shm when it has room
    (memory, no disk writes; about 55 bytes a packet of the partitions in flight), else the
    system's temporary folder."""
    if "TMPDIR" in os.environ:
        return None
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None
    return "/dev/shm" if st.f_bavail * st.f_frsize >= SHM_SPOOL_MIN_FREE else None


def new_spool() -> str:
    """A new spool folder for this run, where ``spool_dir`` says, once the spools of killed
    runs there are removed (``sweep_spools``)."""
    where = sweep_spool_dir()
    return tempfile.mkdtemp(prefix=f"trafficgen-spool-{os.getpid()}-", dir=where)


def sweep_spool_dir() -> str | None:
    """The spools of killed runs removed from where this run's would go (every run does this
    first, whether it spools or not); returns ``spool_dir()``."""
    where = spool_dir()
    sweep_spools(where or tempfile.gettempdir())
    return where


def sweep_spools(folder: str) -> list[str]:
    """Remove the spool folders in ``folder`` whose run is gone (our name, our user, a pid no
    process has): a run killed with ``kill -9`` leaves its spool. Returns those removed."""
    gone = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return gone
    for entry in entries:
        m = SPOOL_NAME.match(entry.name)
        try:
            if m is None or not entry.is_dir(follow_symlinks=False) \
                    or entry.stat(follow_symlinks=False).st_uid != os.geteuid() \
                    or not owner_gone(int(m["pid"])):
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        gone.append(entry.path)
    return gone


def stream_files(token: str, scenario, opts: phases.Options, lo: int, hi: int, first_ids: dict,
                 sim, folder: str) -> dict:
    """Phase two, spooled to ``folder/{pkts,flows,reqs}``: returns the row counts."""
    os.makedirs(folder, exist_ok=True)
    files = {k: open(os.path.join(folder, k), "wb") for k in phases.PARTS}  # noqa: SIM115
    n = dict.fromkeys(phases.PARTS, 0)
    try:
        engine = phases.partition_engine(token, scenario, opts, False)
        for b in engine.run(lo, hi, first_ids, sim, tap=False):  # the merge runs the tap's pass
            for k, rows in phases.pieces(b):
                files[k].write(memoryview(np.ascontiguousarray(rows)).cast("B"))
                n[k] += rows.shape[0]
    finally:
        for f in files.values():
            f.close()
    return n


def mapped(path: str, dtype) -> np.ndarray:
    """A spool file as a read-only array, its pages mapped in one go (MAP_POPULATE: one fault
    per file, not one per page, for a file read once from start to end)."""
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                       prot=mmap.PROT_READ)
    return np.frombuffer(mm, dtype)
