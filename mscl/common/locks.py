"""One writer per stage folder: a lock file holding the writer's pid and host.

A second process that asks for the same stage waits until the first is done (then finds the stage
finished), or, past ``timeout``, stops with :class:`StageLockedError` naming the holder. A lock
whose process is gone (killed, machine restarted) is taken over.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from mscl.common.io import read_json

LOCK = ".lock"


class StageLockedError(RuntimeError):
    """Another live process is writing this stage folder."""


def _holder(lock: Path) -> dict | None:
    """The lock's holder; None when the file is gone or was left half-written by a killed process."""
    try:
        return read_json(lock)
    except (OSError, ValueError):
        return None


def _alive(holder: dict | None) -> bool:
    """Whether the holder's process still runs (only decidable on its own host; elsewhere assume so)."""
    if not holder or not isinstance(holder.get("pid"), int):
        return False
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return holder["pid"] != os.getpid() or holder.get("token") == _TOKEN


_TOKEN = f"{os.getpid()}-{time.time_ns()}"


def _try_take(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "token": _TOKEN,
                   "since": time.strftime("%Y-%m-%d %H:%M:%S")}, handle)
    return True


@contextlib.contextmanager
def stage_lock(folder: Path, timeout: float | None = None, poll: float = 2.0, say=print):
    """Hold ``folder``'s lock for the block. A live holder is waited for (``timeout`` seconds, by
    default ``$MSCL_LOCK_TIMEOUT``; unset waits as long as it takes, 0 refuses at once); a dead
    holder's lock is removed and taken."""
    if timeout is None and os.environ.get("MSCL_LOCK_TIMEOUT"):
        timeout = float(os.environ["MSCL_LOCK_TIMEOUT"])
    folder.mkdir(parents=True, exist_ok=True)
    lock, waited, told = folder / LOCK, 0.0, False
    while not _try_take(lock):
        holder = _holder(lock)
        if not _alive(holder):
            say(f"{folder}: taking over the lock of process {holder and holder.get('pid')}, which is gone")
            lock.unlink(missing_ok=True)
            continue
        if timeout is not None and waited >= timeout:
            raise StageLockedError(
                f"{folder} is being written by process {holder['pid']} on {holder['host']} (since "
                f"{holder.get('since')}); wait for it to finish, or stop it, and run again")
        if not told:
            say(f"{folder}: waiting for process {holder['pid']}, which is writing this stage")
            told = True
        time.sleep(poll)
        waited += poll
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
