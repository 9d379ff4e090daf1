"""What the command line says while numba compiles kernels: "compiling kernels (first run
only)" on stderr, with a count of the functions done on a terminal (``-q``: nothing); and
the kernel cache's warning as one ``warning: ...`` line."""
from __future__ import annotations

import os
import sys
import warnings

FIRST_RUN = "compiling kernels (first run only)"
UNCACHED = "compiling kernels (no cache folder: every run)"


class CompileProgress:
    """``progress(done, total)`` for ``engine.compile.compile_kernels``: a bar on a terminal,
    one line otherwise (a log keeps it)."""

    def __init__(self, label: str = FIRST_RUN, file=None):
        self.label, self.file = label, file or sys.stderr
        self.bar = None
        self.said = False

    def __call__(self, done: int, total: int) -> None:
        if not self.said:
            self.said = True
            if self.file.isatty():
                from tqdm import tqdm
                tqdm.monitor_interval = 0  # no monitor thread: worker processes fork from this one
                self.bar = tqdm(total=total, desc=self.label, unit=" functions", file=self.file,
                                bar_format="{desc}: {n}/{total} functions [{elapsed}<{remaining}]")
            else:
                print(f"{self.label} ...", file=self.file, flush=True)
        if self.bar is not None:
            self.bar.update(min(done, total) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def compile_first(scenario, args, capture) -> None:
    """Before ``generate``: compile what the run needs and is not cached yet, saying so (see
    ``engine.compile``); later compiles (functions the plan does not know) say it too."""
    if args.scheduler is not None:  # the cluster's workers compile for themselves
        return
    from trafficgen.engine.compile import compile_kernels, on_compile
    from trafficgen.kernels import cache_dir
    label = FIRST_RUN if cache_dir() is not None else UNCACHED
    quiet = args.quiet
    progress = None if quiet else CompileProgress(label)
    name = capture if isinstance(capture, str) else ""
    try:
        compile_kernels(scenario, pcapng=name.endswith(".pcapng"),
                        tables=any((args.flows, args.requests, args.packets)), progress=progress)
    finally:
        if progress is not None:
            progress.close()
    if not quiet:
        told = []

        def tell(_name):
            if not told:
                told.append(True)
                from tqdm import tqdm
                tqdm.write(f"{label} ...", file=sys.stderr)
        on_compile(tell)


def warnings_on_one_line() -> None:
    """The kernel cache's warning as ``warning: ...`` (not Python's file:line form)."""
    show = warnings.showwarning
    if getattr(show, "one_line", False):  # main() called again in this process: wrapped once
        return

    def one_line(message, category, filename, lineno, file=None, line=None):
        if category.__name__ == "KernelCacheWarning":
            print(f"warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    one_line.one_line = True
    warnings.showwarning = one_line


BLAS_PROBE = "scipy.linalg.cython_blas"


def import_numba() -> None:
    """Import numba without its BLAS probe: on import, numba looks for BLAS by importing
    ``scipy.linalg.cython_blas`` where SciPy is installed, 0.2 s of every command's start-up
    (half of numba's import). No kernel of ours calls BLAS (``np.dot``, ``np.linalg``), so the
    command line's own process hides that module while numba loads; numba then reports no
    BLAS, and the module imports as usual afterwards. For the same reason NumPy's OpenBLAS
    starts no thread pool (``OPENBLAS_NUM_THREADS=1`` unless set): its threads spin for about
    0.1 s of CPU after they start, which a run on two cores pays. A library user's process is
    left alone: only the command line calls this, before anything else has imported numba."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "numba" in sys.modules or BLAS_PROBE in sys.modules:
        return
    sys.modules[BLAS_PROBE] = None  # an import of it raises ImportError at once
    try:
        import numba.np.arraymath  # noqa: F401 - where the probe is (numba loads it with the kernels)
    finally:
        if sys.modules.get(BLAS_PROBE, 0) is None:
            del sys.modules[BLAS_PROBE]
