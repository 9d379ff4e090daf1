"""The command line's signals: SIGTERM taken as ^C is (status 143), and a ^C or SIGTERM
remembered (``errors.INTERRUPTED``) where its KeyboardInterrupt may be swallowed (a callback
from numba's LLVM, or one os.fork runs, which Python reports as "Exception ignored"): the run
still stops with status 130 (143) before its outputs appear, and no such report is printed."""
from __future__ import annotations

import fcntl
import os
import signal
import sys
import threading
from contextlib import contextmanager

from trafficgen.errors import INTERRUPTED
from trafficgen.sinks.commit import WRITTEN


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``), taken as ^C is: the run stops and leaves no output."""


_TERMINATED = threading.Event()  # the signal behind INTERRUPTED was a SIGTERM


def _on_sigterm(signum, frame):
    _TERMINATED.set()
    INTERRUPTED.set()
    raise Terminated()


def _on_sigint(signum, frame):
    INTERRUPTED.set()
    raise KeyboardInterrupt


def _quiet(hook):
    """Python's hook for exceptions nobody can catch, quiet for a ^C (the flag stops the run)."""
    def quiet(u):
        if not (INTERRUPTED.is_set() and issubclass(u.exc_type, KeyboardInterrupt)):
            hook(u)
    return quiet


def how_stopped(e: BaseException | None = None) -> tuple[str, int]:
    """``("terminated", 143)`` for a SIGTERM (raised as ``e`` or swallowed on the way), else
    ``("interrupted", 130)``."""
    if isinstance(e, Terminated) or _TERMINATED.is_set():
        return "terminated", 143
    return "interrupted", 130


def stopped(how: str) -> str:
    """The line for a run stopped by a signal (``how``: "interrupted", "terminated"): whether
    its outputs had been put into place (as a set) before the signal was acted on."""
    if WRITTEN:
        return f"error: {how} after the outputs were written whole ({', '.join(WRITTEN)})"
    return f"error: {how}; no output was written"


@contextmanager
def handled():
    """SIGTERM and SIGINT handled as above inside the block (the main thread only)."""
    previous = previous_int = None
    hook = sys.unraisablehook
    WRITTEN.clear()
    try:
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
            sys.unraisablehook = _quiet(hook)
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                previous_int = signal.signal(signal.SIGINT, _on_sigint)
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
            sys.unraisablehook = hook
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)
        INTERRUPTED.clear()
        _TERMINATED.clear()  # WRITTEN stays: a signal just after the block still knows
        forget_caught_interrupt()


def forget_caught_interrupt() -> None:
    """Python remembers a KeyboardInterrupt that ended any ``PyRun_*`` call (a ^C that landed
    in a callback from a compiled library, caught since) and at exit kills the process with
    SIGINT (status -2) whatever status it was given: ``main`` has handled every ^C by the end of
    its block (130 and one line), so the flag is cleared and its status is the one seen."""
    try:
        import ctypes
        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except (ImportError, ValueError, AttributeError, OSError):  # another Python: nothing to clear
        pass


def usable_stderr() -> None:
    """With standard error closed (``2>&-``) a message has nowhere to go: it goes nowhere,
    and the status is still the one the run earns (not 1 from a failed write). Python leaves
    fd 2 on /dev/null opened read-only then; a stream that is no file of the OS (a caller's,
    a test's) is left as it is."""
    err = sys.stderr
    if err is not None:
        try:
            fd = err.fileno()
        except (OSError, ValueError, AttributeError):
            return
        try:
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY:
                return
        except OSError:
            pass
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (for the process's life)
