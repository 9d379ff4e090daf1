"""MACsec with a key: frames decrypt (GCM-AES-128, IEEE 802.1AE) back to the plain frames,
independently with ``cryptography`` and with scapy's MACsec SA; integrity-only frames verify;
a wrong key or a flipped byte fails. And the key is a secret: it appears in no output, no
metadata, no report and no error message."""
from __future__ import annotations

import json
import struct
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import trafficgen as tg

from .helpers import TSHARK_CHECKSUMS, TSHARK_FRAME_PROBLEMS, read_pcap, run_tshark
from .netwalk import walk

KEY_HEX = "5ec2e7a11ce0b0b0deadbeef0badf00d"
KEY = bytes.fromhex(KEY_HEX)
COMMON = ["chat.rate=4/s", "network.vlan=100"]


def _gen(tmp_path, name, extra):
    sc = tg.load_scenario("chat", COMMON + extra, duration="3s", seed=5)
    path = tmp_path / f"{name}.pcap"
    tg.generate(sc, pcap=path)
    return read_pcap(path)[1], path


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    d = tmp_path_factory.mktemp("macsec")
    plain, _ = _gen(d, "plain", [])
    enc, enc_path = _gen(d, "enc", ["network.macsec=true", f"network.macsec_key={KEY_HEX}"])
    integ, _ = _gen(d, "integ", ["network.macsec=true", f"network.macsec_key={KEY_HEX}",
                                  "network.macsec_encrypt=false"])
    return plain, enc, integ, enc_path


def _iv(frame: bytes) -> bytes:
    return frame[20:28] + frame[16:20]  # SCI || PN


def test_encrypted_frames_decrypt_to_the_plain_frames(captures):
    plain, enc, _, _ = captures
    assert len(enc) == len(plain) > 1000
    aead = AESGCM(KEY)
    for i, (f, p) in enumerate(zip(enc, plain)):
        w = walk(f, macsec_clear=False)
        tci, _sl, pn, sci, n = w.macsec
        assert tci == 0x2C and pn == i + 1 and sci == f[6:12] + b"\x00\x01", i
        clear = aead.decrypt(_iv(f), f[28:], f[:28])
        assert f[:12] + clear == p, f"frame {i + 1} does not decrypt to the plain frame"
        assert clear[:2] == b"\x81\x00" and f[28:40] != clear[:12], i  # really encrypted


def test_scapy_decrypts_them_too(captures):
    from scapy.contrib.macsec import MACsec, MACsecSA
    from scapy.layers.inet import TCP
    from scapy.layers.l2 import Ether
    plain, enc, _, _ = captures
    for f, p in list(zip(enc, plain))[:200]:
        pkt = Ether(f)
        sa = MACsecSA(sci=f[20:28], an=0, pn=pkt[MACsec].PN, key=KEY, icvlen=16, encrypt=1,
                      send_sci=1)
        clear = sa.decap(sa.decrypt(pkt))
        assert bytes(clear) == p and clear.haslayer(TCP)


def test_integrity_only_frames_verify_and_stay_clear(captures):
    plain, _, integ, _ = captures
    aead = AESGCM(KEY)
    for i, (f, p) in enumerate(zip(integ, plain)):
        assert f[14] == 0x20, i  # SC only: not encrypted
        assert f[:12] + f[28:-16] == p, i
        assert aead.decrypt(_iv(f), f[-16:], f[:-16]) == b"", i
        walk(f)  # clear all the way down, checksums right


def test_a_wrong_key_or_a_flipped_byte_fails(captures):
    _, enc, integ, _ = captures
    f = enc[100]
    with pytest.raises(InvalidTag):
        AESGCM(bytes(16)).decrypt(_iv(f), f[28:], f[:28])
    bad = bytearray(f)
    bad[40] ^= 1
    with pytest.raises(InvalidTag):
        AESGCM(KEY).decrypt(_iv(bad), bytes(bad[28:]), bytes(bad[:28]))
    g = bytearray(integ[100])
    g[-20] ^= 1
    with pytest.raises(InvalidTag):
        AESGCM(KEY).decrypt(_iv(g), bytes(g[-16:]), bytes(g[:-16]))


def test_tshark_reads_encrypted_frames_cleanly(tshark, captures):
    path = captures[3]
    assert run_tshark(tshark, path, *TSHARK_CHECKSUMS, "-Y", TSHARK_FRAME_PROBLEMS, "-T", "fields",
                      "-e", "frame.number").split() == []
    chains = set(run_tshark(tshark, path, "-T", "fields", "-e", "frame.protocols").split())
    assert chains == {"eth:ethertype:macsec:data"}


# --- the key is a secret --------------------------------------------------------------------

def _leaks(blob: bytes) -> bool:
    low = blob.lower()
    return KEY_HEX.encode() in low or KEY in blob or KEY_HEX[:16].encode() in low


def test_the_key_appears_in_no_output(tmp_path):
    out = {k: tmp_path / n for k, n in (("o", "c.pcap"), ("g", "c.pcapng"), ("f", "f.parquet"),
                                         ("r", "r.parquet"), ("p", "p.parquet"))}
    for cap in ("o", "g"):
        cmd = [sys.executable, "-m", "trafficgen", "generate", "chat", "--duration", "2s",
               "-t", "chat.rate=3/s", "-t", "network.macsec=true", "-t",
               f"network.macsec_key={KEY_HEX}", "-o", str(out[cap]), "--json"]
        if cap == "o":
            cmd += ["--flows", str(out["f"]), "--requests", str(out["r"]), "--packets", str(out["p"])]
        done = subprocess.run(cmd, capture_output=True)
        assert done.returncode == 0, done.stderr
        assert not _leaks(done.stdout) and not _leaks(done.stderr)
        json.loads(done.stdout)
    for path in out.values():
        assert not _leaks(path.read_bytes()), path.name
    meta = pq.read_schema(out["f"]).metadata
    scenario = json.loads(meta[b"trafficgen.scenario"])
    assert scenario["network"]["macsec_key"] == "<redacted>"
    assert not any(_leaks(v) for v in meta.values())


def test_the_key_appears_in_no_error_or_repr():
    sc = tg.load_scenario("chat", ["network.macsec=true", f"network.macsec_key={KEY_HEX}"])
    assert sc.network.macsec_key == KEY
    assert not _leaks(repr(sc).encode()) and not _leaks(repr(sc.network).encode())
    for bad in ([f"network.macsec_key={KEY_HEX}0"],  # 33 digits
                [f"network.macsec_key.x={KEY_HEX}"],  # not a table
                [f"network..macsec_key={KEY_HEX}"],  # not a dotted key
                [f"network.macsec_key={KEY_HEX[:-1]}x"],
                [f"network.macsec_key={KEY_HEX}", "network.macsec=false"]):
        done = subprocess.run([sys.executable, "-m", "trafficgen", "generate", "chat", "-o",
                               "/dev/null", *[a for b in bad for a in ("-t", b)]],
                              capture_output=True)
        assert done.returncode == 2 and done.stderr.count(b"\n") == 1, done.stderr
        assert b"macsec" in done.stderr and not _leaks(done.stderr), done.stderr
        assert KEY_HEX[:-1].encode() not in done.stderr


def test_pn_runs_on_across_batches(tmp_path):
    sc = tg.load_scenario("chat", COMMON + ["network.macsec=true", f"network.macsec_key={KEY_HEX}"],
                          duration="3s", seed=5)
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    tg.generate(sc, pcap=a)
    tg.generate(sc, pcap=b, batch_packets=100, window="1s")
    assert a.read_bytes() == b.read_bytes()
    pns = [struct.unpack_from("!I", f, 16)[0] for f in read_pcap(a)[1]]
    assert pns == list(range(1, len(pns) + 1))
