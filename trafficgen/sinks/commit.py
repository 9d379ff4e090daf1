"""A run's outputs made to appear as one set, and what a killed run left behind.

``commit_set(staged)`` puts every staged output (a finished temporary file or folder beside its
target, ``.tmp`` -> ``.target``) into place with SIGINT and SIGTERM held off: each existing
target is first moved aside to a hidden backup, then each temporary renamed into place; a
failure part-way puts every backup back (the new files go back to their temporary names, which
the caller's abort removes) and raises :class:`CommitError`, saying which file failed and what
was restored; on success the backups are removed. A signal that came meanwhile is acted on
right after (the outputs are then all in place: ``WRITTEN`` says which).

Hidden names carry the pid of the process that made them, ``.NAME.PID.XXXXXXXX.part`` (a
temporary) and ``.NAME.PID.XXXXXXXX.old`` (a backup); ``sweep(folder)`` removes those whose
process is gone (a killed run's), and puts back a backup whose target is missing.

Before anything moves, the commit writes a journal beside its first output
(``.NAME.PID.XXXXXXXX.journal``: each output's target, backup and temporary, and whether it
had a previous file), synced to disk, and removes it once every output is in place, before
the backups go. A run killed with ``kill -9`` part-way through its renames leaves the journal;
``sweep`` finds it (its owner gone) and rolls the set back: every previous file returns, every
new file that had no previous one goes. So a killed run leaves the old set or the new one,
never a mix, once a later run (or ``sweep``) has been in the folder.
"""
from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

# the outputs this process has put into place since the command line's run began (the CLI
# clears it): a signal acted on after they appeared must not say "no output was written"
WRITTEN: list[str] = []

HIDDEN = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}\.(?P<kind>part|old|journal)$")

rename = os.rename  # every rename of a commit goes through this name (tests replace it)


class CommitError(OSError):
    """Outputs that could not all be put into place; the message says which file failed, why,
    and that the previous files are back as they were (or, should that fail too, where)."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def hidden_name(target: Path, kind: str) -> str:
    """A hidden name beside ``target`` for this process: ``.NAME.PID.XXXXXXXX.KIND``."""
    rand = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789_") for _ in range(8))
    return f".{target.name}.{os.getpid()}.{rand}.{kind}"


def owner_gone(pid: int) -> bool:
    """True when no process has this pid (one we may not signal is someone's: kept)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def sweep(folder: str | os.PathLike) -> list[str]:
    """Remove the temporaries and backups in ``folder`` left by runs of ours that were killed
    (our naming pattern, our user, a pid that no longer runs); a backup whose target is missing
    is put back instead. Nothing else is touched. Returns what was removed or put back."""
    done = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return done
    uid = os.geteuid()
    # a killed commit's journal first: its rollback needs the backups and temporaries
    entries.sort(key=lambda e: not e.name.endswith(".journal"))
    for entry in entries:
        m = HIDDEN.match(entry.name)
        if m is None or not owner_gone(int(m["pid"])):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if st.st_uid != uid:
                continue
            if m["kind"] == "journal":
                done += roll_back(entry.path)
                continue
            target = os.path.join(folder, m["name"])
            if not os.path.lexists(entry.path):  # (a journal's rollback took it)
                continue
            if m["kind"] == "old" and not os.path.lexists(target):
                os.rename(entry.path, target)
            elif entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            done.append(entry.path)
        except OSError:
            continue
    return done


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def roll_back(journal: str) -> list[str]:
    """Undo the commit a killed run's ``journal`` describes (see the module), then remove the
    journal. A journal cut short was written before anything moved: it is only removed.
    Returns the paths put back or removed."""
    done = []
    try:
        with open(journal, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError):
        entries = []
    for e in reversed(entries if isinstance(entries, list) else []):
        try:
            target, backup, tmp = e["target"], e.get("backup"), e["tmp"]
            if e.get("had_old"):
                if backup and os.path.lexists(backup):  # moved aside: the new one (if in) goes
                    if os.path.lexists(target):
                        _remove(target)
                    os.rename(backup, target)
                    done.append(target)
            elif not os.path.lexists(tmp) and os.path.lexists(target):
                _remove(target)  # new, and renamed into place: not part of the old set
                done.append(target)
            if os.path.lexists(tmp):
                _remove(tmp)
                done.append(tmp)
        except (OSError, KeyError, TypeError):
            continue
    try:
        os.unlink(journal)
        done.append(journal)
    except OSError:
        pass
    return done


def _write_journal(staged, backup_of: dict) -> Path:
    """The commit's journal beside its first output, on disk before anything moves."""
    first = Path(staged[0].target)
    path = first.with_name(hidden_name(first, "journal"))
    entries = [{"target": os.path.abspath(s.target), "tmp": os.path.abspath(s.tmp),
                "backup": os.path.abspath(backup_of[Path(s.target)]) if Path(s.target) in backup_of else None,
                "had_old": Path(s.target) in backup_of} for s in staged]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, json.dumps(entries).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_folder(path.parent)
    return path


@contextmanager
def signals_held():
    """SIGINT and SIGTERM held off inside the block (main thread only; elsewhere a no-op) and
    delivered to their previous handlers right after it, in the order they came."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {}
    try:
        for s in held:
            if signal.getsignal(s) is not None:  # None: set outside Python, left alone
                previous[s] = signal.signal(s, lambda signum, frame: came.append(signum))
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(came):
            signal.raise_signal(s)  # the previous handler (or the default action) takes it


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _refuse(target: Path, folder: bool) -> str | None:
    """Why ``target`` cannot be replaced now (it changed while the run went on), or None."""
    if folder:
        if os.path.lexists(target):
            return "appeared while the run went on (a folder output must be new)"
        return None
    if target.is_dir() and not target.is_symlink():
        return "became a folder while the run went on"
    if os.path.lexists(target) and not target.is_file() and not target.is_symlink():
        return "became a special file while the run went on"
    return None


def commit_set(staged: list) -> list[str]:
    """Put each of ``staged`` (objects with ``tmp`` and ``target`` paths, and ``folder``: a
    folder output) into place, all or none (see the module). Returns the targets written."""
    if not staged:
        return []
    backups: list[tuple[Path, Path]] = []  # (backup, target)
    journal = None
    placed: list[tuple[Path, Path]] = []  # (target, tmp)
    with signals_held():
        previous = [Path(s.target) for s in staged if os.path.lexists(s.target)]
        current = None
        try:
            for s in staged:
                current = s.target
                why = _refuse(Path(s.target), getattr(s, "folder", False))
                if why:
                    previous.remove(Path(s.target))  # not ours: left as it is, not named
                    raise OSError(errno.EEXIST if getattr(s, "folder", False) else errno.EISDIR, why)
            backup_of = {Path(s.target): Path(s.target).with_name(hidden_name(Path(s.target), "old"))
                          for s in staged if os.path.lexists(s.target)}
            current = staged[0].target
            journal = _write_journal(staged, backup_of)
            for s in staged:  # every existing target aside first
                current = target = Path(s.target)
                if target in backup_of:
                    rename(target, backup_of[target])
                    backups.append((backup_of[target], target))
            for s in staged:
                current = target = Path(s.target)
                rename(s.tmp, target)
                placed.append((target, Path(s.tmp)))
            for folder in dict.fromkeys(Path(s.target).parent for s in staged):
                _fsync_folder(folder)
        except OSError as e:
            err = _rolled_back(e, current, previous, placed, backups)
            if journal is not None and err.rolled_back:
                _unlink(journal)
            raise err from e
        _unlink(journal)  # every output in place: from here a killed run leaves the new set
        written = [os.fspath(s.target) for s in staged]
        WRITTEN.extend(written)
        for backup, _ in backups:
            try:
                os.unlink(backup)
            except OSError:
                pass  # a later run's sweep takes it (its owner is gone by then)
    return written


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _rolled_back(e: OSError, failed, previous: list[Path], placed, backups) -> CommitError:
    """Undo a commit part-way: the new files back to their temporary names, every backup back
    to its target. The error that says what happened (``previous``: the targets that were
    there before, now as they were)."""
    lost = []
    for target, tmp in reversed(placed):
        try:
            rename(target, tmp)
        except OSError:
            lost.append((target, "the new file could not be moved away"))
    for backup, target in reversed(backups):
        try:
            rename(backup, target)
        except OSError:
            lost.append((target, f"its previous file is at {backup}"))
    back = [os.fspath(t) for t in previous if all(t != x for x, _ in lost)]
    text = f"{failed}: {e.strerror or e}; no output was written"
    if back:
        text += f" (the previous {'file is' if len(back) == 1 else 'files are'} as they were: " \
                f"{', '.join(back)})"
    if lost:
        text += "; could not restore " + ", ".join(f"{t} ({why})" for t, why in lost)
    err = CommitError(e.errno or errno.EIO, text, os.fspath(failed) if failed else None)
    err.rolled_back = not lost
    return err
