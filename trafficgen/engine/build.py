"""An engine from the library's arguments: the window and batch size checked as the API and
the CLI give them (``trafficgen.api``, live replay), one-line errors for bad values."""
from __future__ import annotations

from trafficgen.config.scenario import Scenario
from trafficgen.config.units import parse_duration
from trafficgen.errors import Arg, ArgumentError

from .core import GEN_WORKERS, MIN_WINDOW_NS, Engine
from .report import rates_of

# requests (and media sessions) a window may start: chat at 2000/s in 10 s windows (20,000)
# peaks at 1.5 GB; past this a window's rows would not fit in memory
MAX_WINDOW_STARTS = 50_000


def check_load(scenario: Scenario, window) -> None:
    """Refuse a scenario whose rates start more in one window than memory holds (before any
    work), naming the busiest rate key and the window that would hold them."""
    span = min(window_ns(window), scenario.duration_ns) / 1e9  # a window never outlasts the run
    rates = rates_of(scenario)
    total = sum(r for _, r, _ in rates)
    if total * span <= MAX_WINDOW_STARTS:
        return
    key, _, shown = max(rates, key=lambda kr: kr[1])
    fits_ms = int(MAX_WINDOW_STARTS / total * 1e3)
    head = (f"{key}: {shown} starts {total * span:.3g} requests and sessions in each "
            f"{span:g} s window (")
    tail = f"), at most {MAX_WINDOW_STARTS} fit in memory: "
    if fits_ms * 10**6 < MIN_WINDOW_NS:
        most = MAX_WINDOW_STARTS / (MIN_WINDOW_NS / 1e9)
        raise ArgumentError(head, Arg("window"), tail + f"lower {key} (together at most "
                            f"{most:g}/s, at the smallest ", Arg("window"), " of 100ms)")
    raise ArgumentError(head, Arg("window"), tail + "give ", Arg("window"),
                        f" {fits_ms}ms or less, or lower {key}")


def window_ns(window) -> int:
    """A generation window given as ns (int) or a duration string; at least 100 ms.

    Raises
    ------
    ArgumentError
        Not a duration, or shorter than 100 ms.
    """
    given = window
    if isinstance(window, str):
        try:
            window = parse_duration(window)
        except ValueError as e:
            raise ArgumentError(Arg("window"), f": {e}") from None
    if isinstance(window, bool) or not isinstance(window, int) or window < MIN_WINDOW_NS:
        raise ArgumentError(Arg("window"), f": expected a duration of at least 100ms, got {given!r}")
    return window


def stop_at_ns(stop_at) -> int | None:
    """The capture's cut (``generate(stop_at=...)``) as ns from the capture start: ``None``
    (no cut), or a duration as ``parse_duration`` reads it (``"90s"``, ``"5m"``; a number, or a
    number without a unit, is seconds, as ``load_scenario(duration=...)`` takes it).

    Raises
    ------
    ArgumentError
        Not a duration, or not above zero.
    """
    if stop_at is None:
        return None
    try:
        ns = parse_duration(stop_at)
    except ValueError as e:
        raise ArgumentError(Arg("stop_at"), f": {e}") from None
    if ns <= 0:
        raise ArgumentError(Arg("stop_at"), ": expected a time above zero (a cut at the start "
                            f"leaves nothing), got {stop_at!r}")
    return ns


def check_batch(batch_packets) -> int:
    """``batch_packets`` if it is a whole number >= 1, else an ``ArgumentError``."""
    if isinstance(batch_packets, bool) or not isinstance(batch_packets, int) or batch_packets < 1:
        raise ArgumentError(Arg("batch_packets"), f": expected a whole number >= 1, got {batch_packets!r}")
    return batch_packets


def make_engine(scenario: Scenario, frames: bool, batch_packets, window, alloc=None,
                packets: bool = True, gen_threads: int = GEN_WORKERS,
                stop_at_ns: int | None = None) -> Engine:
    """An ``Engine`` for ``scenario`` with the batch size and window checked.

    Parameters
    ----------
    scenario : Scenario
        What to generate.
    frames : bool
        Build the frame bytes (a capture) or not (labels and tables only).
    batch_packets : int
        Packets per batch at most.
    window : int or str
        Session time generated at once: ns, or a duration such as ``"10s"``.
    alloc : callable, optional
        ``alloc(nbytes)``: the frame buffers (``BufferPool.get``).
    packets : bool
        Sort and emit the packets (a capture or a packet table), not only the tables.
    gen_threads : int
        Windows generated ahead, in parallel.
    stop_at_ns : int, optional
        Cut the capture there (ns from its start; see ``Engine``).
    """
    check_batch(batch_packets)
    check_load(scenario, window)
    return Engine(scenario, frames=frames, batch_packets=batch_packets,
                  window_ns=window_ns(window), alloc=alloc, packets=packets, gen_threads=gen_threads,
                  stop_at_ns=stop_at_ns)
