"""A device under test made of real Linux parts, for tests/test_dut.py: a namespace ``dut``
that routes between two veth pairs (what arrives on one side leaves by the other: policy
routing by input interface, so any addresses pass) under an nftables stateful firewall. The
two ports replay sends out of (``port_a``, ``port_b``) are the pairs' other ends, in this
namespace, so replay runs in the test's own process (a fresh process per replay cost seconds
each): no address, IPv6 off, and forwarding off on them, so what comes back from the device
goes no further (nor draws an ICMP error). Everything is deleted on exit, also when the body
fails.

    with DutLab() as lab:
        main(["replay", f, "--iface", lab.port_a, "--peer-iface", lab.port_b,
              "--dmac", lab.dmac_a, "--peer-dmac", lab.dmac_b])
        lab.conntrack_tcp(), lab.nft_counters()
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

_serial = itertools.count()
JUMBO = 9000

RULESET = """
table inet dutfw {
    chain forward {
        type filter hook forward priority 0; policy drop;
        ct state established,related counter accept
        tcp flags & (syn|ack) == syn ct state new counter accept
        counter drop
    }
}
"""


def sh(*args, ns: str | None = None, check: bool = True, timeout: float = 20, **kw):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + [str(a) for a in args]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout, **kw)


class DutLab:
    """Ports ``port_a``, ``port_b`` (here) <-> ``dut_a``, ``dut_b`` (in namespace ``dut``);
    ``tag``: a prefix for more namespaces a test makes."""

    def __init__(self):
        tag = f"{os.getpid() % 100000:05d}{next(_serial) % 100:02d}"
        self.tag, self.dut = f"tgt{tag}", f"tgd{tag}"
        self.port_a, self.port_b = f"tga{tag}", f"tgb{tag}"
        self.dut_a, self.dut_b = f"tda{tag}", f"tdb{tag}"
        self.made: list[str] = []
        self.ports: list[str] = []

    def __enter__(self) -> "DutLab":
        try:
            self.create()
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.delete()

    def mac(self, dev: str, ns: str | None) -> str:
        return sh("cat", f"/sys/class/net/{dev}/address", ns=ns).stdout.strip()

    def create(self) -> None:
        sh("ip", "netns", "add", self.dut)
        self.made.append(self.dut)
        for port, far in ((self.port_a, self.dut_a), (self.port_b, self.dut_b)):
            sh("ip", "link", "add", port, "type", "veth", "peer", "name", far, "netns", self.dut)
            self.ports.append(port)
        for dev in (self.port_a, self.port_b):  # nothing of this namespace's stack goes out
            sh("sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
            sh("sysctl", "-qw", f"net.ipv4.conf.{dev}.forwarding=0")
        sh("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", ns=self.dut)
        sh("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", ns=self.dut)
        for ns, devs in ((None, (self.port_a, self.port_b)), (self.dut, (self.dut_a, self.dut_b))):
            for dev in devs:
                sh("ip", "link", "set", dev, "addrgenmode", "none", ns=ns)
                sh("ip", "link", "set", dev, "mtu", JUMBO, ns=ns)  # kv-transfer's jumbo frames
                sh("ip", "link", "set", dev, "up", ns=ns)
        sh("ip", "link", "set", "lo", "up", ns=self.dut)
        d = self.dut
        for k in ("all", "default", self.dut_a, self.dut_b):
            sh("sysctl", "-qw", f"net.ipv4.conf.{k}.rp_filter=0", ns=d)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=d)
        sh("ip", "addr", "add", "10.250.1.254/24", "dev", self.dut_a, ns=d)
        sh("ip", "addr", "add", "10.250.2.254/24", "dev", self.dut_b, ns=d)
        for gw, dev, port, table in (("10.250.1.1", self.dut_a, self.port_a, 201),
                                     ("10.250.2.1", self.dut_b, self.port_b, 202)):
            sh("ip", "neigh", "replace", gw, "lladdr", self.mac(port, None), "dev", dev,
               "nud", "permanent", ns=d)
            sh("ip", "route", "add", "default", "via", gw, "dev", dev, "table", table, ns=d)
        # what arrives on one side leaves by the other, whatever its addresses
        sh("ip", "rule", "add", "iif", self.dut_a, "lookup", 202, ns=d)
        sh("ip", "rule", "add", "iif", self.dut_b, "lookup", 201, ns=d)
        sh("nft", "-f", "-", ns=d, input=RULESET)
        self.dmac_a, self.dmac_b = self.mac(self.dut_a, d), self.mac(self.dut_b, d)
        deadline = time.monotonic() + 5
        while any(sh("cat", f"/sys/class/net/{p}/carrier", check=False).stdout.strip() != "1"
                  for p in (self.port_a, self.port_b)):
            if time.monotonic() > deadline:
                raise RuntimeError("the lab's ports have no carrier after 5 s")
            time.sleep(0.01)

    def delete(self) -> None:
        for dev in self.ports:  # deleting one end deletes the pair
            subprocess.run(["ip", "link", "del", dev], capture_output=True, timeout=20)
        self.ports = []
        for ns in reversed(self.made):  # deleting a namespace deletes its veth ends
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        self.made = []

    # --- what the device saw ----------------------------------------------------------------

    def conntrack_tcp(self) -> int:
        """TCP connections in the device's connection tracking table."""
        out = sh("conntrack", "-L", "-p", "tcp", ns=self.dut, check=False)
        return sum(1 for ln in out.stdout.splitlines() if ln.startswith("tcp"))

    def flush_conntrack(self) -> None:
        sh("conntrack", "-F", ns=self.dut, check=False)

    def nft_counters(self) -> dict:
        """Packets through each rule of the forward chain: established, new (a SYN), dropped."""
        js = json.loads(sh("nft", "-j", "list", "chain", "inet", "dutfw", "forward", ns=self.dut).stdout)
        counts = [it["rule"]["expr"][-2]["counter"]["packets"] for it in js["nftables"] if "rule" in it]
        return dict(zip(("established", "new", "dropped"), counts))

    def reset(self) -> None:
        """Forget earlier tests: connection tracking flushed, the firewall's counters zeroed."""
        self.flush_conntrack()
        sh("nft", "-f", "-", ns=self.dut, input="flush ruleset\n" + RULESET)


class NsCapture:
    """tcpdump of what arrives (``-Q in``) on each of ``devs`` in namespace ``ns`` (None:
    this one), into
    ``paths``. In immediate mode (no 1 s wait for a ring block to retire on exit) with a
    snap length of 2,048 bytes: the 64 MiB ring holds some 30,000 frames, so even a top-speed
    burst the reader has not caught up with fits (a ring of 64 KiB slots, the default with
    offloads on, held 1,024 and dropped); a longer frame would arrive cut and fail the
    byte comparisons, not pass them. ``dropped``: what each tcpdump says the kernel dropped."""

    def __init__(self, ns: str, devs, paths):
        self.ns = ns
        self.devs = [devs] if isinstance(devs, str) else list(devs)
        self.paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "NsCapture":
        try:
            for dev, path in zip(self.devs, self.paths):
                proc = subprocess.Popen(
                    (["ip", "netns", "exec", self.ns] if self.ns else []) + [
                        "tcpdump", "-i", dev, "-Q", "in", "-w", str(path), "-s", "2048", "-B", "65536",
                        "-n", "--immediate-mode"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                self.procs.append(proc)
                line = proc.stderr.readline()
                if "listening" not in line:
                    raise RuntimeError(f"tcpdump did not start: {line.strip()}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.3)  # the reader's last wake-ups
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        self.dropped = []
        for proc in self.procs:
            try:
                err = proc.communicate(timeout=10)[1]
            except subprocess.TimeoutExpired:
                proc.kill()
                err = proc.communicate()[1]
            self.dropped += [int(ln.split()[0]) for ln in err.splitlines() if "dropped by kernel" in ln]
