"""``[hosts]``: how fast the hosts' kernels react and how fast their links are.

Each reaction of a host's TCP stack (SYN -> SYN/ACK, SYN/ACK -> ACK, data -> ACK, an ACK that
releases data, FIN -> FIN/ACK) happens after a delay drawn per event from its end's
distribution; the application reads arrived data after ``app_read`` (meanwhile it narrows the
receive window). The servers' side of a path ends on the data centre fabric
(``fabric_bandwidth``); the clients' on the topology's access link (``topology.bandwidth``).

Figures (MODELS.md, Hosts, stacks and paths; est): kernel turnaround a few to tens of
microseconds on a server (softirq to transmit), more on a client, with a long tail (kernel
tracing studies: median ~10-20 us, p99 ~10x); a 25 Gb/s server NIC on the fabric.
"""
from __future__ import annotations

from .keys import Key, bounded, dist, params_class
from .units import parse_bandwidth

HOSTS_KEYS = (
    Key("server_turnaround", dist("duration"),
        {"median": "15us", "p90": "45us", "min": "2us", "max": "5ms"},
        "a server kernel's reaction to a segment (per event; est)"),
    Key("client_turnaround", dist("duration"),
        {"median": "25us", "p90": "90us", "min": "3us", "max": "10ms"},
        "a client kernel's reaction to a segment (per event; est)"),
    Key("app_read", dist("duration"),
        {"median": "30us", "p90": "300us", "min": "1us", "max": "50ms"},
        "arrived data waits this long for the application (narrows the receive window; est)"),
    Key("fabric_bandwidth", bounded(parse_bandwidth, 1e5, 1e12, lambda x: f"{x:g}bps"), "25Gbps",
        "the servers' link into the fabric (the clients' is topology.bandwidth)"),
)
HostsParams = params_class("HostsParams", HOSTS_KEYS, "``[hosts]``: kernel turnaround, the "
                           "application's reads, the servers' link.", __name__)


def default_hosts() -> HostsParams:
    """Every ``[hosts]`` key at its default (a scenario built without the section)."""
    return HostsParams(**{k.name: k.parse(k.default) for k in HOSTS_KEYS})
