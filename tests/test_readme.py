"""The README's promises: its first two commands, its library example, and what it says of the
CLI hold for the code as it is."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_first_two_commands_install_run_and_test():
    sh = blocks("sh")
    assert len(sh) >= 2
    main_cmd, test_cmd = sh[0].strip(), sh[1].strip()
    assert main_cmd.startswith("pip install . && trafficgen generate ")
    assert test_cmd == "pip install '.[test]' && python -m pytest"
    # .ci/run runs exactly the README's test command (it reads it from the README)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "grep -m1 \"^pip install '\\.\\[test\\]'\" README.md" in ci
    assert 'bash -c "$test_cmd"' in ci


def test_main_command_runs(tmp_path):
    """The first command, minus the install (the package under test is already installed)."""
    cmd = blocks("sh")[0].strip().split(" && ")
    assert cmd[0] == "pip install ."
    for part in cmd[1:]:
        argv = shlex.split(part)
        assert argv[0] == "trafficgen"
        done = subprocess.run([sys.executable, "-m", "trafficgen", *argv[1:]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    for name in ("chat.pcap", "flows.parquet", "requests.parquet", "packets.parquet"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert pq.read_metadata(tmp_path / "packets.parquet").num_rows > 100_000
    assert "packets" in done.stdout  # inspect's report


def test_library_examples_run(tmp_path):
    code, sinks = blocks("python")
    done = subprocess.run([sys.executable, "-c", sinks], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = pq.read_metadata(tmp_path / "first.parquet").num_rows
    data = (tmp_path / "first.pcap").read_bytes()
    assert rows == 10_000 and len(data) > 24 + rows * (16 + 54)  # what the comment says
    o, records = 24, 0
    while o < len(data):  # walk the pcap records: exactly the table's rows
        o += 16 + int.from_bytes(data[o + 8:o + 12], "little")
        records += 1
    assert o == len(data) and records == rows
    # the flow table: exactly the flows of those packets
    kept = set(pq.read_table(tmp_path / "first.parquet")["flow_id"].to_pylist())
    assert sorted(kept) == pq.read_table(tmp_path / "first-flows.parquet")["flow_id"].to_pylist()
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    n = int(done.stdout.split()[0])
    assert n > 1_000
    assert "bytes_down_sum" in done.stdout and "stream" in done.stdout  # the Arrow and pandas tables
    assert pq.read_metadata(tmp_path / "flows.parquet").num_rows > 0
    assert (tmp_path / "chat.pcap").stat().st_size > n * 54


def test_documented_generate_options_exist():
    done = subprocess.run([sys.executable, "-m", "trafficgen", "generate", "--help"],
                          capture_output=True, text=True, check=True)
    usage = re.search(r"```\ntrafficgen generate(.*?)\ntrafficgen inspect", README, flags=re.S)
    assert usage
    for opt in re.findall(r"(--?[a-z]+)", usage.group(1)):
        assert opt in done.stdout, opt


def test_documented_error_line_is_what_the_cli_prints(tmp_path):
    m = re.search(r"\$ (trafficgen generate .*)\n(error: .*)\n", README)
    assert m
    argv = shlex.split(m.group(1))[1:]
    done = subprocess.run([sys.executable, "-m", "trafficgen", *argv], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == m.group(2)
    assert list(tmp_path.iterdir()) == []
