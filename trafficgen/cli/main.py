"""Command line: argument parsing -> the same config objects -> the library API.

Exit status: 0 success; 2 bad input (one ``error: ...`` line on stderr naming the file, key or
value and what is allowed); 1 anything unexpected; 130 interrupted. Outputs appear whole or not
at all.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from trafficgen.errors import INTERRUPTED, TrafficgenError
from trafficgen.sinks.commit import CommitError
from trafficgen.version import __version__

from .generate import auto_workers, duration_option, pipe_capture, quiet_stdout, seed_option, summary
from .replay import EXAMPLE as REPLAY_EXAMPLE
from .replay import LIVE_EXAMPLE, add_rate_options, add_replay_parser, cli_message
from .signals import handled, how_stopped, stopped, usable_stderr

EXAMPLES = {
    "generate": """examples:
  trafficgen generate chat --duration 60s --seed 7 -o chat.pcap
  trafficgen generate chat -o chat.pcap --flows flows.parquet --requests requests.parquet \\
      --packets packets.parquet
  trafficgen generate chat --duration 10m --requests requests.parquet   # tables only: fast
  trafficgen generate my-scenario.toml -t chat.rate=80/s -t topology.capture=server -o lab.pcap
  trafficgen generate chat --duration 30s -o - | tshark -r - -q -z conv,tcp
  trafficgen generate reasoning --duration 60 --stop-at 90 -o r.pcap   # a tap stopped at 90 s
  trafficgen generate chat -t network.encap=vxlan -t network.vlan=100 -o lab.pcapng
  trafficgen generate coding --trace azure-code.csv --requests r.parquet   # one request per row
  trafficgen generate chat --trace mooncake.jsonl --time-scale 0.5 --duration 10m -o m.pcap
  trafficgen generate enterprise-mix --duration 1h --workers 8 -o mix.pcap   # same bytes as 1
  trafficgen generate chat --duration 24h --shards -o day.pcap --flows flows.parquet
  trafficgen generate chat --duration 1h --scheduler tcp://10.0.0.5:8786 -o chat.pcap
""" + LIVE_EXAMPLE,
    "replay": REPLAY_EXAMPLE,
    "inspect": """examples:
  trafficgen inspect chat.pcap
  trafficgen inspect requests.parquet --json | jq .classes
  trafficgen inspect requests.parquet --stats      # what to check a model with
""",
    "fit": """examples:
  trafficgen fit azure-code.csv --base coding -o fitted.toml
  trafficgen generate fitted.toml --duration 1h --requests r.parquet
""",
    "compare": """examples:
  trafficgen compare azure-code.csv r.parquet
  trafficgen compare azure-code.csv r.parquet --json --plot compare.png
""",
    "plot": """examples:
  trafficgen plot chat.pcap -o chat.png
  trafficgen plot packets.parquet -o classes.png
""",
    "models": """examples:
  trafficgen models
  trafficgen models --json
""",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit status 2)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="trafficgen",
                description="Packet-level traffic of AI-inference services: statistical models "
                            "to pcap and Parquet with ground-truth labels.",
                epilog="run 'trafficgen COMMAND --help' for examples of each command",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"trafficgen {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    g = sub.add_parser("generate", help="generate a scenario to pcap and/or Parquet tables",
                       epilog=EXAMPLES["generate"], formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("scenario", metavar="SCENARIO", help="built-in name (see 'trafficgen models') or TOML path")
    g.add_argument("-o", "--output", metavar="OUT",
                   help="capture file; the suffix picks the format (.pcap, or .pcapng with each "
                        "packet's labels as a comment); '-' writes the pcap "
                        "to standard output, and a FIFO or device is written in place")
    g.add_argument("--duration", help="how long requests keep starting, e.g. 90s, 5m, 1h, or 90 "
                                      "(seconds); in-flight requests then finish and connections "
                                      "close, so the capture runs past it (see --stop-at)")
    g.add_argument("--stop-at", metavar="DURATION", help="cut the capture at this time from its "
                   "start, as a tap that stops recording: no later packet is written; flows and "
                   "requests left open stay in the tables, marked truncated")
    g.add_argument("--seed", help="random seed (same seed, same bytes)")
    g.add_argument("--flows", metavar="F.parquet", help="write the flow table")
    g.add_argument("--requests", metavar="R.parquet", help="write the request table")
    g.add_argument("--packets", metavar="P.parquet", help="write the packet table")
    g.add_argument("-t", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario value by its dotted key (repeatable)")
    g.add_argument("--window", metavar="DURATION", default="10s",
                   help="session time generated at once (default 10s): smaller uses less memory; "
                        "never changes the output")
    g.add_argument("--trace", metavar="FILE", help="one request per row of this request trace "
                   "(Azure CSV, Mooncake JSONL, BurstGPT CSV, or a generic CSV/Parquet), at its "
                   "time with its tokens; SCENARIO supplies the rest")
    g.add_argument("--time-scale", metavar="X", type=float, default=1.0,
                   help="with --trace: multiply the trace's times by X (2 stretches, 0.5 compresses)")
    g.add_argument("--trace-format", choices=("azure", "mooncake", "burstgpt", "generic"),
                   help="with --trace: the format, if not told from the file")
    g.add_argument("--workers", metavar="N", type=_workers_arg,
                   help="processes to spread the work over (default: the machine's cores, for "
                        "runs of 5 minutes or more; shorter runs stay in this process); never "
                        "changes the output")
    g.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler's workers "
                   "instead (e.g. tcp://10.0.0.5:8786; pip install 'trafficgen-ai[dask]')")
    g.add_argument("--shards", action="store_true", help="each output path names a new folder "
                   "of one file per minute of session starts (day.pcap/part-00000.pcap, ...; "
                   "flows.parquet/ reads as one dataset) instead of one merged file")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary "
                                                              "(warnings still print)")
    g.add_argument("--json", action="store_true", help="print the run report as JSON")
    g.add_argument("--iface", metavar="IF", help="send the frames onto this interface as they "
                                                 "are generated, instead of writing a file")
    add_rate_options(g.add_argument_group("with --iface (default: the scenario's own timing)"))

    i = sub.add_parser("inspect", help="what is in a pcap, pcapng or Parquet file",
                       epilog=EXAMPLES["inspect"], formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("file", metavar="FILE")
    i.add_argument("--json", action="store_true", help="print the report as JSON")
    i.add_argument("--stats", action="store_true",
                   help="for a request table: per class, token medians and p90s, bytes, the "
                        "arrivals' gap cv, index of dispersion at 1/10/60 s and Hurst estimate; "
                        "for a packet table: per class, retransmission and loss rates")

    add_replay_parser(sub)

    f = sub.add_parser("fit", help="fit a scenario (token lengths, arrival process) to a request trace",
                       epilog=EXAMPLES["fit"], formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("file", metavar="FILE", help="a request trace (see generate --trace)")
    f.add_argument("-o", "--output", metavar="SCENARIO.toml", required=True, help="the scenario to write")
    f.add_argument("--base", default="chat", help="the built-in scenario it starts from (default chat)")
    f.add_argument("--class", dest="cls", help="the class section to fit (default: the base's first)")
    f.add_argument("--trace-format", choices=("azure", "mooncake", "burstgpt", "generic"))
    f.add_argument("--json", action="store_true", help="print the fit's figures as JSON")

    c = sub.add_parser("compare", help="two request sets side by side (a trace, a request table)",
                       epilog=EXAMPLES["compare"], formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("a", metavar="A")
    c.add_argument("b", metavar="B")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON")
    c.add_argument("--plot", metavar="OUT.png", help="also draw token CDFs, arrivals and burstiness")

    pl = sub.add_parser("plot", help="throughput, packet and flow sizes, arrivals of a capture or table",
                        epilog=EXAMPLES["plot"], formatter_class=argparse.RawDescriptionHelpFormatter)
    pl.add_argument("file", metavar="FILE", help="pcap, pcapng, or a flow, request or packet table")
    pl.add_argument("-o", "--output", metavar="OUT.png", required=True)

    m = sub.add_parser("models", help="list the built-in scenarios", epilog=EXAMPLES["models"],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("--json", action="store_true", help="print the list as JSON")
    return p


def _workers_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of processes >= 1, got {text!r}")
    return n


class _Progress:
    """A tqdm bar over simulated seconds, on stderr, only for a terminal."""

    def __init__(self, total_ns: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm
            tqdm.monitor_interval = 0  # no monitor thread: worker processes fork from this one
            self.bar = tqdm(total=round(total_ns / 1e9, 3), unit="s", unit_scale=False,
                            desc="loading kernels", file=sys.stderr, leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
                                       "simulated [{elapsed}<{remaining}]")

    def __call__(self, done_ns: int, total_ns: int):
        if self.bar is not None:
            self.bar.set_description_str("generating", refresh=False)
            self.bar.update(round(done_ns / 1e9, 3) - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def cmd_generate(args) -> int:
    from trafficgen.api import generate, load_scenario
    from trafficgen.engine.malloc import tune_malloc
    tune_malloc()
    duration = args.duration
    if duration is not None:
        duration_option("--duration", duration)  # checked here, so the message names the option
    stop_at = args.stop_at
    stop_ns = duration_option("--stop-at", stop_at) if stop_at is not None else None
    seed = seed_option(args.seed) if args.seed is not None else None
    from trafficgen.config.scenario import read_toml
    read_toml(args.scenario)  # an unknown name says so (and lists the built-ins) before all else
    from .replay import check_rate_needs_iface, cmd_generate_live
    check_rate_needs_iface(args)
    if args.iface is not None:
        if args.workers is not None or args.scheduler is not None or args.shards:
            raise TrafficgenError("--iface sends the frames as they are generated, in this process: "
                                  "--workers, --scheduler and --shards go with files")
        if stop_at is not None:
            raise TrafficgenError("--stop-at cuts a capture file; with --iface, --limit N stops "
                                  "the sending after N packets")
        return cmd_generate_live(args, load_scenario(args.scenario, args.overrides,
                                                     duration=duration, seed=seed))
    if not any((args.output, args.flows, args.requests, args.packets)):
        raise TrafficgenError("nothing to write: give -o OUT.pcap and/or --flows, --requests, "
                              "--packets")
    say = sys.stdout
    if args.output == "-":  # the capture on standard output (e.g. into tcpdump -r -); talk on stderr
        if sys.stdout.isatty():
            raise TrafficgenError("-o -: standard output is a terminal; pipe it into a program "
                                  "or give a file name")
        say = sys.stderr
    tables = [t for t in (args.flows, args.requests, args.packets) if t]
    capture = pipe_capture(args.output, bool(tables))
    if args.trace is not None:
        from trafficgen.traces.scenario import trace_scenario
        scenario = trace_scenario(args.scenario, args.trace, args.overrides, time_scale=args.time_scale,
                                  duration=duration, seed=seed, fmt=args.trace_format)
    elif args.time_scale != 1.0 or args.trace_format:
        raise TrafficgenError("--time-scale and --trace-format go with --trace FILE")
    else:
        scenario = load_scenario(args.scenario, args.overrides, duration=duration, seed=seed)
    if args.shards and args.output == "-":
        raise TrafficgenError("--shards: -o names a folder of captures, not standard output")
    from trafficgen.api import check_workers
    from trafficgen.engine.build import check_load
    check_load(scenario, args.window)  # bad input is one line: checked before anything compiles
    workers = auto_workers(args, scenario, stop_ns)
    check_workers(workers, args.scheduler)
    from .compiling import compile_first
    compile_first(scenario, args, capture)  # a first run: "compiling kernels (first run only)"
    import gc
    gc.freeze()  # the interpreter, numba and the kernels: never garbage, never traversed again
    if INTERRUPTED.is_set():  # a ^C that landed in a compiler callback (and was swallowed there)
        raise KeyboardInterrupt
    progress = _Progress(min(scenario.duration_ns, stop_ns or scenario.duration_ns),
                         not args.quiet and sys.stderr.isatty())
    try:
        report = generate(scenario, pcap=capture, flows=args.flows, requests=args.requests,
                          packets=args.packets, window=args.window, progress=progress,
                          workers=workers, scheduler=args.scheduler,
                          shards=args.shards, stop_at=stop_at)
    except BrokenPipeError:  # a reader left a capture we could not take as a pipe (FIFO .pcapng)
        if not tables or capture is not args.output:
            raise
        print(f"error: {args.output}: its reader closed it before the end; the run stopped, so "
              f"{', '.join(tables)} were not written", file=sys.stderr)
        return 1
    finally:
        progress.close()
        if capture is not args.output:
            capture.close()
    if capture is not args.output:  # a pipe: standard output or a FIFO
        report["outputs"] = {"capture": args.output, **report["outputs"]}
        if capture.gone:  # its reader went away; the other outputs were written whole
            report.update(capture_reader_left=True, capture_bytes_written=capture.written)
    if args.trace is not None:
        report["trace"] = {"file": args.trace, "time_scale": args.time_scale,
                           "rows": {c: int(r["t"].shape[0]) for c, r in scenario.trace.items()}}
    if args.json:
        print(json.dumps(report, indent=2), file=say)
    elif not args.quiet:
        print(summary(report), file=say)
    for text in report["warnings"]:  # also with -q: a warning is not the summary
        print(f"warning: {text}", file=sys.stderr)
    return 0


def cmd_inspect(args) -> int:
    from trafficgen.analysis.report import format_report, inspect_file
    info = inspect_file(args.file, stats=args.stats)
    print(json.dumps(info, indent=2) if args.json else format_report(info))
    return 0


def cmd_fit(args) -> int:
    from trafficgen.analysis.fit import fit_trace
    from trafficgen.sinks import AtomicFile
    from trafficgen.traces.read import read_trace
    text, report = fit_trace(read_trace(args.file, args.trace_format), base=args.base, cls=args.cls)
    out = AtomicFile(args.output)
    try:
        out.file.write(text.encode())
        out.commit()
    except BaseException:
        out.abort()
        raise
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        from trafficgen.analysis.fit import stats_line
        print(f"wrote {args.output}: {report['requests']:,} requests at {report['rate_per_s']:.3f}/s; "
              f"fitted {stats_line(report['fitted_stats'])}; trace {stats_line(report['trace_stats'])}")
    return 0


def cmd_compare(args) -> int:
    from trafficgen.analysis.compare import compare, format_compare
    from trafficgen.traces.read import read_trace
    a, b = read_trace(args.a), read_trace(args.b)
    result = compare(a, b)
    if args.plot:
        from trafficgen.analysis.plot import plot_compare
        plot_compare(a, b, args.plot)
        result["plot"] = args.plot
    print(json.dumps(result, indent=2) if args.json else format_compare(result))
    return 0


def cmd_plot(args) -> int:
    from trafficgen.analysis.plot import plot_file
    plot_file(args.file, args.output)
    print(f"wrote {args.output}")
    return 0


def cmd_models(args) -> int:
    from trafficgen.config.catalog import describe_builtins  # the TOML files alone: quick
    rows = describe_builtins()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            print(f"{r['name']:<{width}}  {r['description']}")
    return 0


# the commands that load kernels at start-up: numba imported first, without its BLAS probe
NUMBA_COMMANDS = ("generate", "inspect", "replay")


def main(argv: list[str] | None = None) -> int:
    usable_stderr()
    with handled():  # from the start: a ^C while the modules load is one line too
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        from .compiling import import_numba, warnings_on_one_line
        warnings_on_one_line()
        if args.command in NUMBA_COMMANDS:
            import_numba()
        from .replay import cmd_replay
        handler = {"generate": cmd_generate, "inspect": cmd_inspect, "models": cmd_models,
                   "replay": cmd_replay, "fit": cmd_fit, "compare": cmd_compare,
                   "plot": cmd_plot}[args.command]
        status = handler(args)
        if INTERRUPTED.is_set():  # swallowed where it landed (the outputs did not appear)
            raise KeyboardInterrupt
        return status
    except TrafficgenError as e:
        print(f"error: {cli_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        how, status = how_stopped(e)
        print(stopped(how), file=sys.stderr)
        return status
    except BrokenPipeError:  # the reader of our output went away (| head): done, as head expects
        quiet_stdout()
        return 0
    except CommitError as e:  # the outputs could not all be put into place: it says what is where
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, status 1
        if INTERRUPTED.is_set():  # what a swallowed ^C broke (numba's half-made library)
            how, status = how_stopped()
            print(stopped(how), file=sys.stderr)
            return status
        if os.environ.get("TRAFFICGEN_DEBUG"):
            raise
        if isinstance(e, OSError) and e.filename is not None:  # a full disk: the file, the reason
            print(f"error: {e.filename}: {e.strerror or e}; the run stopped", file=sys.stderr)
            return 1
        print(f"error: unexpected {type(e).__name__}: {e} (set TRAFFICGEN_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1
