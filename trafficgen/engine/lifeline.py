"""Processes of a run that must not outlive it (local workers, the compile helper): each asks
the kernel to kill it when the process that started it dies (Linux's parent-death signal, set
by ``prctl``), then checks that this parent is still the one it was started by, which closes
the race of a parent that died before the signal was set."""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> bool:
    """Be killed (SIGKILL) when the process ``parent`` ends; exit at once if it already has.
    Returns whether the kernel took the request (False off Linux: the caller's pipes, which
    end with the parent, are then what stops it)."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # the parent died before the signal was set: no one to work for
        os._exit(1)
    return armed


def close_fds(fds) -> None:
    """Close descriptors a forked process inherited but must not hold (the coordinator's ends
    of the other workers' pipes, and of its own: held here, its pipe would never end)."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
