"""The command line of sending onto an interface: ``trafficgen replay FILE --iface IF`` and
``trafficgen generate SCENARIO --iface IF``. Arguments become a :class:`Replay`, the same
object the library offers; the report is printed as text or JSON."""
from __future__ import annotations

import argparse
import json
import sys

from trafficgen.config.units import parse_duration
from trafficgen.errors import ArgumentError, TrafficgenError

from .signals import how_stopped

# The library's arguments as the command line gives them: an ArgumentError names the argument
# (``pps``), and the CLI prints the same message with the flag (``--pps``).
FLAGS = {
    "pps": "--pps", "mbps": "--mbps", "multiplier": "--multiplier", "topspeed": "--topspeed",
    "iface": "--iface", "loop": "--loop", "limit": "--limit", "duration": "--duration",
    "realtime": "--realtime", "qdisc_bypass": "--qdisc-bypass",
    "workers": "--workers", "scheduler": "--scheduler", "shards": "--shards", "window": "--window",
    "stop_at": "--stop-at",
    "pcap": "-o", "flows": "--flows", "requests": "--requests", "packets": "--packets",
    "peer_iface": "--peer-iface", "dmac": "--dmac", "peer_dmac": "--peer-dmac", "smac": "--smac",
    "peer_smac": "--peer-smac", "map_client": "--map-client", "map_server": "--map-server",
    "client_net": "--client-net", "split": "--split", "unique_ip": "--unique-ip",
    "count_back": "--count-back", "tx_threads": "--tx-threads",
}
DUT_KEYS = ("dmac", "peer_dmac", "smac", "peer_smac", "map_client", "map_server", "count_back")


def cli_message(e: TrafficgenError) -> str:
    """An error's message as the command line words it: arguments named by their flags."""
    if isinstance(e, ArgumentError):
        return e.render(lambda name: FLAGS.get(name, name))
    return str(e)

EXAMPLE = """examples:
  trafficgen replay lab.pcap --iface veth0                  # the file's own timing
  trafficgen replay lab.pcap --iface veth0 --pps 20000 --loop 10
  trafficgen replay lab.pcapng --iface veth0 --multiplier 2 --limit 100000
  trafficgen replay big.pcap --iface veth0 --topspeed --duration 60s --json
  trafficgen replay lab.pcap --iface veth0 --mbps 500 --loop 0 --duration 1h
  trafficgen replay c.pcapng --iface A --peer-iface B --dmac 2:0:0:0:1:fe --peer-dmac 2:0:0:0:2:fe --loop 3 --unique-ip
  trafficgen replay other.pcap --iface A --peer-iface B --client-net 10.1.0.0/16 --map-server 10.9.0.0/24=10.99.0.0/24
  trafficgen replay other.pcap --iface A --peer-iface B --split syn  # the SYN's sender is the client
"""
LIVE_EXAMPLE = """  trafficgen generate chat --iface veth0 --duration 10m  # sent live at the scenario's timing
  trafficgen generate chat --iface veth0 --pps 50000 --limit 1000000
  trafficgen generate chat --iface A --peer-iface B --dmac 2:0:0:0:1:fe --peer-dmac 2:0:0:0:2:fe --count-back
"""


def _number(text: str) -> float:
    return float(text)


_number.__name__ = "number"


def add_rate_options(p: argparse.ArgumentParser) -> None:
    """The mutually exclusive speeds, as tcpreplay spells them."""
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--multiplier", type=_number, metavar="X",
                       help="the file's timing sped up X times (0.5: half speed)")
    speed.add_argument("--pps", type=_number, metavar="N", help="N packets per second")
    speed.add_argument("--mbps", type=_number, metavar="N",
                       help="N megabits per second of frame bytes")
    speed.add_argument("--topspeed", action="store_true", help="as fast as possible")
    p.add_argument("--limit", type=int, metavar="N", help="send at most N packets")
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                   help="schedule the sending thread SCHED_FIFO, so timing holds on a busy "
                        "machine (default: when permitted, as root)")
    p.add_argument("--qdisc-bypass", action=argparse.BooleanOptionalAction, default=True,
                   help="send past the interface's queueing discipline (default; a tcpdump on "
                        "the sending interface then does not see the frames)")
    add_dut_options(p)


def add_dut_options(p) -> None:
    """Two ports around a device under test, and the addresses the frames carry to it."""
    p.add_argument("--peer-iface", metavar="IF",
                   help="a second port: client-side frames go out of --iface, server-side "
                        "ones out of this, on one schedule")
    p.add_argument("--dmac", metavar="MAC", help="destination MAC of the frames out of --iface "
                   "(arp:IPV4: the MAC that answers ARP for that address, e.g. the device's port)")
    p.add_argument("--peer-dmac", metavar="MAC", help="destination MAC out of --peer-iface (or arp:IPV4)")
    p.add_argument("--smac", metavar="MAC", help="source MAC out of --iface (default with two "
                   "ports: the port's own)")
    p.add_argument("--peer-smac", metavar="MAC", help="source MAC out of --peer-iface")
    p.add_argument("--map-client", action="append", metavar="OLD=NEW",
                   help="map addresses in network OLD to NEW (host bits kept, checksums "
                        "fixed; repeatable); under VXLAN/GRE only the outer header")
    p.add_argument("--map-server", action="append", metavar="OLD=NEW",
                   help="the same for the servers' addresses")
    p.add_argument("--tx-threads", type=int, default=1, metavar="N",
                   help="with --topspeed: send on N threads (cores); each flow keeps to one, so "
                        "its frames stay in order (default 1: one order for all)")
    p.add_argument("--xdp", action="store_true",
                   help="send through AF_XDP sockets (copy mode where the driver has no zero-copy; "
                        "no XDP program, no libxdp) where the ports take them, else through "
                        "AF_PACKET with one line saying why; the report's path says which sent")
    p.add_argument("--count-back", action="store_true",
                   help="count the frames arriving on each port while sending (what a device "
                        "between the ports passed)")


def add_replay_parser(sub) -> None:
    r = sub.add_parser("replay", help="send a pcap or pcapng onto a network interface",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Send the frames of a capture onto an interface through "
                                   "AF_PACKET, at the file's own timing (the default) or one "
                                   "chosen speed; report what was achieved.")
    r.add_argument("file", metavar="FILE", help="pcap (us or ns) or pcapng of Ethernet frames")
    r.add_argument("--iface", metavar="IF", help="the interface to send on (required: "
                                                       "nothing is sent without it)")
    add_rate_options(r)
    r.add_argument("--loop", type=int, default=1, metavar="N",
                   help="passes over the file (default 1; 0: until --duration or Ctrl-C)")
    r.add_argument("--duration", metavar="S", help="stop after this long, e.g. 30 or 90s or 1h")
    r.add_argument("--client-net", action="append", metavar="CIDR",
                   help="with --peer-iface: frames from this network are client-side "
                        "(repeatable; default: the capture's ground truth)")
    r.add_argument("--split", choices=["syn"],
                   help="with --peer-iface: the host that sent a flow's SYN is its client "
                        "(flows without one: who sent first)")
    r.add_argument("--unique-ip", action="store_true",
                   help="with --loop: pass k shifts every client address by k times the span "
                        "of client addresses, within the client net (the --map-client target, "
                        "else --client-net, else a /16): new connections each pass")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress line or summary")


def rate_of(args):
    from trafficgen.playback.rate import Rate
    return Rate.choose(pps=args.pps, mbps=args.mbps, multiplier=args.multiplier,
                       topspeed=args.topspeed)


def as_seconds(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        ns = parse_duration(text)  # '30' is seconds, as everywhere
    except ValueError as e:
        raise TrafficgenError(f"--duration: {e}") from None
    if ns == 0:
        raise TrafficgenError("--duration: expected a duration above zero")
    return ns / 1e9


class _Progress:
    """One line, rewritten about once a second on a terminal; warnings as they appear."""

    def __init__(self, enabled: bool, quiet: bool):
        self.enabled, self.quiet, self.warned, self.drawn = enabled, quiet, False, False

    def __call__(self, stats: dict) -> None:
        if self.enabled:
            pps = stats.get("packets_per_s") or 0
            sys.stderr.write(f"\rsent {stats['packets']:,} packets, {stats['bytes'] / 1e6:,.1f} MB, "
                             f"{pps:,.0f} packets/s, {stats.get('send_errors', 0)} errors   ")
            sys.stderr.flush()
            self.drawn = True

    def warn(self, text: str | None) -> None:
        if text and not self.warned and not self.quiet:
            self.close()
            print(f"warning: {text}", file=sys.stderr)
            self.warned = True

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            self.drawn = False


def run_and_report(r, args) -> int:
    """Prepare and run ``r``; print the report (also when stopped: then exit 130 for ^C, 143
    for SIGTERM)."""
    progress = _Progress(not args.quiet and not args.json and sys.stderr.isatty(), args.quiet)
    r.progress = lambda st: (progress(st), progress.warn(r.tx.warning))
    r.prepare()
    interrupted = 0
    try:
        r.run()
    except KeyboardInterrupt as e:
        interrupted = how_stopped(e)[1]
    finally:
        progress.close()
    report = r.report
    progress.warn(r.tx.warning)
    if args.json:
        print(json.dumps(report, indent=2))
    elif not args.quiet:
        print(format_report(report))
    return interrupted


def format_report(rep: dict) -> str:
    pps = f"{rep['packets_per_s']:,.0f} packets/s" if rep["packets_per_s"] else "- packets/s"
    mbps = f"{rep['mbps']:,.1f} Mbit/s" if rep["mbps"] else "- Mbit/s"
    onto = rep["iface"] + (f" and {rep['peer_iface']}" if rep.get("peer_iface") else "")
    onto += " through AF_XDP" if rep.get("path") == "af_xdp" else ""
    lines = [f"sent {rep['packets']:,} packets ({rep['bytes'] / 1e6:,.1f} MB) onto "
             f"{onto} in {rep['elapsed_s']:.3f} s: {pps}, {mbps} "
             f"(stopped by: {rep['stopped_by']})"]
    err = rep.get("departure_error_us")
    if err:
        lines.append(f"departure error: p50 {err['p50']:,.1f} us, p99 {err['p99']:,.1f} us, "
                     f"max {err['max']:,.1f} us; last packet {rep['finish_late_ms']:,.3f} ms late")
    lines.append(f"send errors: {rep['send_errors']:,}")
    for p in rep.get("ports", ()):
        rate = f"{p['packets_per_s']:,.0f} packets/s" if p["packets_per_s"] else "- packets/s"
        line = (f"  {p['side']} port {p['iface']}: {p['packets']:,} packets, "
                f"{p['bytes'] / 1e6:,.1f} MB, {rate}")
        err = p.get("departure_error_us")
        if err:
            line += f", departure error p50 {err['p50']:,.1f} us, p99 {err['p99']:,.1f} us"
        if p.get("came_back") is not None:
            line += f"; {p['came_back']:,} came back on the other port"
        lines.append(line)
    u = rep.get("unique_ip")
    if u:
        lines.append(f"unique ip: pass k added k x {u['shift_per_pass']:,} to every client "
                     f"address (within its /{u['within_prefix']}), {u['passes']} passes")
    return "\n".join(lines)


def cmd_replay(args) -> int:
    from trafficgen.playback.replayer import Replay
    r = Replay(args.file, args.iface, rate_of(args), loop=args.loop, limit=args.limit,
               duration=as_seconds(args.duration), realtime=args.realtime,
               qdisc_bypass=args.qdisc_bypass, **dut_kwargs(args), client_net=args.client_net or (),
               split=args.split, unique_ip=args.unique_ip)
    return run_and_report(r, args)


def dut_kwargs(args) -> dict:
    out = {k: getattr(args, k) for k in DUT_KEYS}
    out["map_client"], out["map_server"] = out["map_client"] or (), out["map_server"] or ()
    return {"peer_iface": args.peer_iface, "tx_threads": args.tx_threads, "xdp": args.xdp, **out}


def check_rate_needs_iface(args) -> None:
    """``generate`` without ``--iface``: the sending options have nothing to act on."""
    if args.iface is None:
        given = [f"--{k.replace('_', '-')}" for k in ("pps", "mbps", "multiplier", "limit")
                 if getattr(args, k) is not None] + (["--topspeed"] if args.topspeed else []) + (
                ["--realtime"] if args.realtime else []) + [
                FLAGS[k] for k in ("peer_iface", *DUT_KEYS) if getattr(args, k)]
        if given:
            raise TrafficgenError(f"{given[0]}: sends onto an interface: give --iface IF too")


def cmd_generate_live(args, scenario) -> int:
    """``generate --iface``: send the scenario as it is generated."""
    from trafficgen.playback.replayer import Replay
    if any((args.output, args.flows, args.requests, args.packets)):
        raise TrafficgenError("--iface sends the scenario instead of writing it: give either "
                              "--iface or -o/--flows/--requests/--packets")
    r = Replay(scenario, args.iface, rate_of(args), limit=args.limit, live=True,
               realtime=args.realtime, qdisc_bypass=args.qdisc_bypass, **dut_kwargs(args))
    return run_and_report(r, args)
