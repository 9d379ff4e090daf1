"""``python -m trafficgen``: a SIGINT or SIGTERM at any moment of the process is the one line and
status 130 / 143 of a stopped run, or, once ``main`` has returned (the run is over, its outputs
in place or not as it said), changes nothing: the status ``main`` gave stands."""
import signal
import sys

came = []


def _early(signum, frame):  # SIGTERM while the modules load, before main's own handler
    came.append(signum)
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _early)
try:  # a ^C while the command line's modules load: one line, status 130, as after
    from trafficgen.cli.main import main
    from trafficgen.cli.signals import stopped
except KeyboardInterrupt:
    how, code = ("terminated", 143) if came else ("interrupted", 130)
    print(f"error: {how}; no output was written", file=sys.stderr)
    raise SystemExit(code) from None

try:
    status = main()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the run is over: nothing left to stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
except KeyboardInterrupt:  # in the instant between main's handlers and those
    how, status = ("terminated", 143) if came else ("interrupted", 130)
    print(stopped(how), file=sys.stderr)

raise SystemExit(status)
