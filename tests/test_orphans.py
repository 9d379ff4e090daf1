"""Nothing outlives a run and outputs appear as a set (issue 17).

A run's outputs are put into place all or none (``sinks/commit.py``): a signal while they are
renamed is acted on after the whole set is in place; a rename that fails part-way puts every
previous file back. Workers die with their coordinator even on ``kill -9``; the spool and the
hidden temporaries of a killed run carry its pid and the next run removes them.

Random signal trials: a handful here; ``TRAFFICGEN_FAULT_TRIALS=100`` runs that many of each
kind (one and two workers), seeded by ``TRAFFICGEN_FAULT_SEED`` (default 17).
"""
from __future__ import annotations

import errno
import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import trafficgen as tg
from trafficgen.cli.main import main
from trafficgen.sinks import commit
from trafficgen.sinks.commit import CommitError

from .helpers import SMALL_ARGS, listing, without_compiling

NAMES = {"-o": "cap.pcap", "--flows": "flows.parquet", "--packets": "packets.parquet"}
OLD = {name: f"the user's previous {name}\n".encode() for name in NAMES.values()}


def _outputs(folder: Path) -> list[str]:
    return [a for flag, name in NAMES.items() for a in (flag, str(folder / name))]


def _old_set(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    for name, data in OLD.items():
        (folder / name).write_bytes(data)


def _digests(folder: Path) -> dict[str, str]:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in NAMES.values()}


def _hidden(folder: Path) -> list[str]:
    return [n for n in listing(folder) if n.startswith(".")]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict[str, str]:
    """The digests of a whole new set of the small run (what any complete set must equal)."""
    folder = tmp_path_factory.mktemp("fresh")
    assert main(["generate", "chat", *SMALL_ARGS, *_outputs(folder), "-q"]) == 0
    return _digests(folder)


# --- the set's commit, in this process ------------------------------------------------------


def _renames(monkeypatch, on_place):
    """Every rename of a commit through ``on_place(n, src, dst)`` for the n-th temporary put
    into place (0, 1, ...) before it is done."""
    real, placed = commit.rename, []

    def rename(src, dst):
        if str(src).endswith(".part"):
            on_place(len(placed), src, dst)
            placed.append(dst)
        real(src, dst)
    monkeypatch.setattr(commit, "rename", rename)


@pytest.mark.parametrize("sig, code, how", [(signal.SIGTERM, 143, "terminated"),
                                            (signal.SIGINT, 130, "interrupted")])
def test_a_signal_between_renames_waits_for_the_whole_set(tmp_path, monkeypatch, capsys, fresh,
                                                          sig, code, how):
    out = tmp_path / "out"
    _old_set(out)

    def on_place(n, src, dst):
        if n == 1:  # one new file in place, two to go
            os.kill(os.getpid(), sig)
    _renames(monkeypatch, on_place)
    assert main(["generate", "chat", *SMALL_ARGS, *_outputs(out), "-q"]) == code
    err = capsys.readouterr().err
    assert err.startswith(f"error: {how} after the outputs were written whole (") \
        and err.count("\n") == 1, err
    assert _digests(out) == fresh and listing(out) == sorted(NAMES.values())


@pytest.mark.parametrize("failing", [0, 1, 2])
def test_a_rename_that_fails_puts_every_previous_file_back(tmp_path, monkeypatch, capsys, failing):
    out = tmp_path / "out"
    _old_set(out)
    (out / "packets.parquet").unlink()  # one output that did not exist before

    def on_place(n, src, dst):
        if n == failing:
            raise OSError(errno.ENOSPC, "No space left on device")
    _renames(monkeypatch, on_place)
    assert main(["generate", "chat", *SMALL_ARGS, *_outputs(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device; no output was written" in err, err
    assert "(the previous files are as they were: " in err, err
    assert listing(out) == ["cap.pcap", "flows.parquet"]  # no new file, no temporary, no backup
    assert all((out / n).read_bytes() == OLD[n] for n in listing(out))


def test_a_target_that_became_a_folder_mid_run(tmp_path):
    out = tmp_path / "out"
    _old_set(out)

    def progress(done, total):
        if not (out / "flows.parquet").is_dir():
            (out / "flows.parquet").unlink()
            (out / "flows.parquet").mkdir()
    paths = {"pcap": out / "cap.pcap", "flows": out / "flows.parquet",
             "packets": out / "packets.parquet"}
    with pytest.raises(CommitError) as caught:
        tg.generate(tg.load_scenario("chat", {"chat.rate": "4/s"}, duration="3s", seed=3), **paths,
                    progress=progress)
    text = str(caught.value)
    assert text.startswith(f"{out / 'flows.parquet'}: became a folder while the run went on; "
                           "no output was written"), text
    assert text.endswith(f"(the previous files are as they were: {out / 'cap.pcap'}, "
                         f"{out / 'packets.parquet'})"), text
    assert listing(out) == sorted(NAMES.values()) and (out / "flows.parquet").is_dir()
    assert all((out / n).read_bytes() == OLD[n] for n in ("cap.pcap", "packets.parquet"))


def test_the_cli_says_what_happened_when_a_target_became_a_folder(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    _old_set(out)
    real = commit.commit_set

    def commit_set(staged):  # the moment before the set is put into place
        (out / "packets.parquet").unlink()
        (out / "packets.parquet").mkdir()
        return real(staged)
    monkeypatch.setattr("trafficgen.sinks.outputs.commit_set", commit_set)
    assert main(["generate", "chat", *SMALL_ARGS, *_outputs(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: {out / 'packets.parquet'}: became a folder while the run went on; no "
                   f"output was written (the previous files are as they were: {out / 'cap.pcap'}, "
                   f"{out / 'flows.parquet'})\n")
    assert listing(out) == sorted(NAMES.values())
    assert [(out / n).read_bytes() for n in ("cap.pcap", "flows.parquet")] == \
        [OLD["cap.pcap"], OLD["flows.parquet"]]


# --- what a killed run leaves, and the next run's sweep --------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_sweep_removes_only_dead_runs_files(tmp_path):
    dead, me = _dead_pid(), os.getpid()
    mine = tmp_path / f".cap.pcap.{me}.abcd1234.part"
    theirs = tmp_path / f".cap.pcap.{dead}.abcd1234.part"
    folder = tmp_path / f".shards.{dead}.zz_00011.part"
    backup = tmp_path / f".flows.parquet.{dead}.q1w2e3r4.old"
    others = [tmp_path / ".cap.pcap.part", tmp_path / f"cap.{dead}.abcd1234.part",
              tmp_path / f".cap.pcap.{dead}.abcd1234.partial"]
    for p in (mine, theirs, backup, *others):
        p.write_bytes(b"x")
    folder.mkdir()
    (folder / "part-00000.pcap").write_bytes(b"x")
    gone = commit.sweep(tmp_path)
    assert sorted(gone) == sorted(map(str, (theirs, folder, backup)))
    assert (tmp_path / "flows.parquet").read_bytes() == b"x"  # a backup without target: back
    assert mine.exists() and all(p.exists() for p in others)


def _stat(pid) -> list[str] | None:
    """``/proc/PID/stat`` after the command's name: state, ppid, pgrp, ... (None: no process)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _running(pid) -> bool:
    """A process that is alive (a zombie, dead and not yet reaped by whoever adopted it, is not)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _run_group(pgid: int) -> list[int]:
    """The live processes whose process group is ``pgid`` (each run below is a session of its
    own, so its workers and helpers are in its group)."""
    return [int(pid) for pid in filter(str.isdigit, os.listdir("/proc"))
            if (f := _stat(pid)) is not None and int(f[2]) == pgid and _running(pid)]


def _end_group(pgid: int) -> None:
    """Kill what is left of the run a test started (its own session), so that a failing test
    leaves no process behind either."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def _gone_within(pgid: int, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (alive := _run_group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def _start(args, spool: Path, script: str | None = None) -> subprocess.Popen:
    def child():  # a session of its own; ^C as a terminal delivers it (not ignored)
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    cmd = [sys.executable, "-c", script] if script else [sys.executable, "-m", "trafficgen"]
    return subprocess.Popen([*cmd, *map(str, args)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(spool)}, preexec_fn=child)


def test_kill_9_takes_the_workers_and_the_next_run_sweeps(tmp_path):
    spool, out = tmp_path / "tmp", tmp_path / "out"
    spool.mkdir()
    out.mkdir()
    proc = _start(["generate", "chat", "--duration", "2h", "--seed", "3", "--workers", "2",
                   "-o", out / "c.pcap", "--flows", out / "f.parquet", "-q"], spool)
    deadline = time.monotonic() + 90
    while not (list(spool.iterdir()) and len(_run_group(proc.pid)) >= 3):  # workers at work
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    time.sleep(1.0)
    workers = set(_run_group(proc.pid)) - {proc.pid}
    proc.kill()
    proc.wait()
    proc.stderr.close()  # not read to its end: a worker that outlived the run would hold it
    try:
        assert not _gone_within(proc.pid, 10), "a worker outlived its coordinator"
    finally:
        _end_group(proc.pid)
    assert workers and not any(_running(w) for w in workers)
    left = listing(out)  # hidden, named for the dead run: nothing that looks like an output
    assert left and all(n.startswith(".") and f".{proc.pid}." in n for n in left), left
    assert [p.name.split("-")[2] for p in spool.iterdir()] == [str(proc.pid)]
    again = _start(["generate", "chat", "-t", "chat.rate=1/s", "--duration", "90s", "--seed", "3",
                    "--workers", "2", "-o", out / "c.pcap", "-q"], spool)
    err = without_compiling(again.communicate(timeout=120)[1])
    assert again.returncode == 0, err
    assert listing(out) == ["c.pcap"] and listing(spool) == []


COMMIT_SLOWLY = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from trafficgen.sinks import commit
    real = commit.rename
    def rename(src, dst):
        if str(src).endswith(".part"):
            Path(sys.argv[1]).touch()  # the parent sends its signal now
            time.sleep(0.7)
        real(src, dst)
    commit.rename = rename
    from trafficgen.cli.main import main
    raise SystemExit(main(sys.argv[2:]))
""")


def test_sigterm_between_renames_in_a_real_process(tmp_path, fresh):
    out, marker = tmp_path / "out", tmp_path / "renaming"
    _old_set(out)
    proc = _start([marker, "generate", "chat", *SMALL_ARGS, *_outputs(out), "-q"], tmp_path,
                  COMMIT_SLOWLY)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    err = without_compiling(proc.communicate(timeout=60)[1])
    assert proc.returncode == 143, err
    assert err.startswith("error: terminated after the outputs were written whole"), err
    assert _digests(out) == fresh and listing(out) == sorted(NAMES.values())
    assert not _gone_within(proc.pid, 10)


# --- signals at random moments ---------------------------------------------------------------

TRIALS = int(os.environ.get("TRAFFICGEN_FAULT_TRIALS", "0"))
TRIAL_SEED = int(os.environ.get("TRAFFICGEN_FAULT_SEED", "17"))
TRIAL_ARGS = ["-t", "chat.rate=1/s", "--duration", "150s", "--seed", "3"]
OUTCOMES: dict = {}


@pytest.fixture(scope="module")
def trial_reference(tmp_path_factory) -> tuple[dict, float]:
    """The complete new set of a trial's run, and how long the run takes (seconds)."""
    folder = tmp_path_factory.mktemp("trial_reference")
    t0 = time.monotonic()
    proc = _start(["generate", "chat", *TRIAL_ARGS, "--workers", "2", *_outputs(folder), "-q"],
                  folder)
    err = without_compiling(proc.communicate(timeout=300)[1])
    assert proc.returncode == 0, err
    return _digests(folder), time.monotonic() - t0


def _trial_run(folder: Path, workers: int, delay: float):
    """A trial's run over the user's old set in ``folder/out``, ``delay`` s under way: its
    spool folder, output folder and process."""
    spool, out = folder / "tmp", folder / "out"
    spool.mkdir(parents=True)
    _old_set(out)
    proc = _start(["generate", "chat", *TRIAL_ARGS, "--workers", workers, *_outputs(out), "-q"],
                  spool)
    time.sleep(delay)
    return spool, out, proc


def _trial(folder: Path, workers: int, sig: int, delay: float, reference: dict) -> str:
    spool, out, proc = _trial_run(folder, workers, delay)
    proc.send_signal(sig)
    try:
        err = without_compiling(proc.communicate(timeout=120)[1])
        code = proc.returncode
        where = f"workers={workers} signal={signal.Signals(sig).name} after {delay:.2f}s: {code} {err!r}"
        assert not _gone_within(proc.pid, 10), f"orphans: {where}"
    finally:
        _end_group(proc.pid)
    # a signal that lands in a temporary's first instant (mkstemp made it, the sink does not
    # exist yet) leaves it, named for the dead run: the next run's sweep takes it
    left = [n for n in listing(out) if n.startswith(".")]
    assert all(commit.HIDDEN.match(n) and f".{proc.pid}." in n for n in left), where
    assert sorted(commit.sweep(out)) == [str(out / n) for n in left], where
    assert listing(out) == sorted(NAMES.values()) and listing(spool) == [], \
        f"leftovers {listing(out)} {listing(spool)}: {where}"
    old = all((out / n).read_bytes() == OLD[n] for n in NAMES.values())
    new = _digests(out) == reference
    assert old or new, f"a mixed set: {where}"
    if (code == 1 and err.startswith("Fatal Python error: init_import_site")) or \
            (code == -signal.SIGTERM and err == ""):
        # a loaded machine: the signal came while the interpreter itself started, before
        # trafficgen's handlers exist (CPython's own exit, or the default SIGTERM); nothing
        # was touched
        assert old, where
        return "before Python started"
    assert code in (0, 130 if sig == signal.SIGINT else 143), where
    if code == 0:
        assert new and err == "", where
        return "finished"
    assert err.count("\n") == 1, where
    if old:
        assert err.endswith("; no output was written\n"), where
        return "stopped" + (", a temporary left for the sweep" if left else "")
    assert "after the outputs were written whole" in err, where
    return "stopped after the commit"


CASES = [(w, s) for w in (1, 2) for s in (signal.SIGTERM, signal.SIGINT)]


@pytest.mark.parametrize("workers, sig", CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_signals_at_random_moments(tmp_path, trial_reference, workers, sig):
    reference, took = trial_reference
    rng = random.Random(f"{TRIAL_SEED}-{workers}-{int(sig)}")
    outcomes: dict[str, int] = {}
    for i in range(max(1, TRIALS)):
        delay = rng.uniform(0.3, 1.2 * took)
        kind = _trial(tmp_path / str(i), workers, sig, delay, reference)
        outcomes[kind] = outcomes.get(kind, 0) + 1
    print(f"\nworkers={workers} {signal.Signals(sig).name}: {outcomes}")


def _kill_trial(folder: Path, workers: int, delay: float, reference: dict) -> str:
    """``kill -9`` of the run (its main process alone) after ``delay``: no process of it alive
    10 s later, and once a later run's sweeps have been (``commit.sweep`` in the output
    folder, ``sweep_spools`` in the spool's), the old set or the new one, nothing else."""
    from trafficgen.engine.spool import sweep_spools
    spool, out, proc = _trial_run(folder, workers, delay)
    proc.kill()
    try:
        proc.communicate(timeout=60)
        where = f"workers={workers} SIGKILL after {delay:.2f}s: {proc.returncode}"
        assert not _gone_within(proc.pid, 10), f"orphans: {where}"
    finally:
        _end_group(proc.pid)
    left = [n for n in listing(out) if n.startswith(".")]
    assert all(commit.HIDDEN.match(n) and f".{proc.pid}." in n for n in left), where
    commit.sweep(out)
    sweep_spools(str(spool))
    assert listing(out) == sorted(NAMES.values()) and listing(spool) == [], \
        f"leftovers {listing(out)} {listing(spool)}: {where}"
    old = all((out / n).read_bytes() == OLD[n] for n in NAMES.values())
    new = _digests(out) == reference
    assert old or new, f"a mixed set: {where}"
    return ("finished" if proc.returncode == 0 else "killed, the new set") if new else \
        "killed, the old set" + (" (a journal rolled back)" if any(n.endswith(".journal") for n in left) else "")


@pytest.mark.parametrize("workers", [1, 2])
def test_kill_at_random_moments(tmp_path, trial_reference, workers):
    reference, took = trial_reference
    rng = random.Random(f"{TRIAL_SEED}-{workers}-kill")
    outcomes: dict[str, int] = {}
    for i in range(max(1, TRIALS)):
        kind = _kill_trial(tmp_path / str(i), workers, rng.uniform(0.3, 1.2 * took), reference)
        outcomes[kind] = outcomes.get(kind, 0) + 1
    print(f"\nworkers={workers} SIGKILL: {outcomes}")


class _Staged:
    def __init__(self, tmp: Path, target: Path):
        self.tmp, self.target, self.folder = tmp, target, False


@pytest.mark.parametrize("dies_at", range(1, 7))
def test_a_commit_killed_between_renames_rolls_back(tmp_path, dies_at):
    """A process killed (``os._exit``, no cleanup) at each rename of a three-file commit, two of
    whose targets existed: the next sweep brings the old set back whole (the journal says how),
    and removes every hidden file; killed after the last rename, the new set stays."""
    old = {"a.pcap": b"old a", "b.parquet": b"old b"}
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)
    pid = os.fork()
    if pid == 0:  # the run: stage three outputs, then commit; die at the dies_at-th rename
        try:
            staged = []
            for name in ("a.pcap", "b.parquet", "c.parquet"):
                tmp = tmp_path / commit.hidden_name(tmp_path / name, "part")
                tmp.write_bytes(b"new " + name.encode())
                staged.append(_Staged(tmp, tmp_path / name))
            calls = []

            def rename(a, b):
                calls.append(1)
                if len(calls) == dies_at:
                    os._exit(9)
                os.rename(a, b)
            commit.rename = rename
            commit.commit_set(staged)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    killed = os.waitstatus_to_exitcode(status) == 9
    assert killed == (dies_at <= 5)  # 2 aside + 3 into place: five renames
    commit.sweep(tmp_path)
    names = listing(tmp_path)
    assert not [n for n in names if n.startswith(".")], names
    got = {n: (tmp_path / n).read_bytes() for n in names}
    if killed:
        assert got == old
    else:
        assert got == {n: b"new " + n.encode() for n in ("a.pcap", "b.parquet", "c.parquet")}


def test_shard_folders_appear_as_a_set(tmp_path):
    """--shards: a folder output whose name was taken meanwhile fails the set; the other
    folder does not appear and no staged folder is left."""
    out = tmp_path / "out"
    out.mkdir()

    def progress(done, total):
        if not (out / "flows").exists():
            (out / "flows").write_bytes(b"someone else's")
    with pytest.raises(CommitError) as caught:
        tg.generate(tg.load_scenario("chat", {"chat.rate": "2/s"}, duration="70s", seed=3),
                    pcap=out / "caps", flows=out / "flows", shards=True, workers=1,
                    progress=progress)
    assert str(caught.value).startswith(f"{out / 'flows'}: appeared while the run went on"), \
        str(caught.value)
    assert listing(out) == ["flows"] and (out / "flows").read_bytes() == b"someone else's"


def test_each_worker_sees_the_end_of_its_pipe():
    """A forked worker closes the coordinator's ends of the pipes it inherited (its own and the
    earlier workers'): once the coordinator's end is closed, it reads end of file and exits,
    also where no parent-death signal would stop it."""
    from trafficgen.engine import pool as local_pool
    from trafficgen.engine.phases import Options
    if local_pool._start_method() != "fork":
        pytest.skip("workers are spawned here: they inherit no descriptor")
    sc = tg.load_scenario("chat", {"chat.rate": "1/s"}, duration="5s", seed=3)
    workers = local_pool.LocalPool(2, "t", sc, Options(False, True, 10**10, 1 << 16))
    try:
        for conn in workers.conns:
            conn.close()
        for p in workers.procs:
            p.join(20)
        assert [p.exitcode for p in workers.procs] == [0, 0]
    finally:
        workers.close(abort=True)


def test_a_swallowed_sigterm_still_stops_the_run(tmp_path, monkeypatch, capsys):
    """A SIGTERM raised inside a callback Python cannot let it out of (logging's at-fork hook
    as a worker is forked: "Exception ignored ...") went on to finish with status 0 and that
    report on stderr; the handler's flag stops the run before its outputs appear: 143."""
    from trafficgen.sinks import outputs
    real = outputs.SinkSet.finish

    def finish(self):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs here
        except KeyboardInterrupt:
            pass  # swallowed, as in a callback
        real(self)
    monkeypatch.setattr(outputs.SinkSet, "finish", finish)
    out = tmp_path / "out"
    _old_set(out)
    assert main(["generate", "chat", *SMALL_ARGS, *_outputs(out), "-q"]) == 143
    assert capsys.readouterr().err == "error: terminated; no output was written\n"
    assert listing(out) == sorted(NAMES.values())
    assert all((out / n).read_bytes() == OLD[n] for n in NAMES.values())
