"""One writer per store: `sn extract` holds an exclusive lock file beside the store while it writes it. A second
extraction of the same store waits (saying so) and then finds it complete, instead of repeating all the work. The
leaderboard's writers take the same kind of lock beside the database.

The lock is `fcntl.flock` on `.<store name>.lock` in the store's folder: the kernel drops it when its process dies,
so a killed writer never leaves a stale lock (only, harmlessly, its file). Stores at fsspec URLs (s3://...) have no
local folder: no lock."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import SnError

_POLL_S = 0.2


def lock_path(store: str) -> Path | None:
    if "://" in store:
        return None
    path = Path(store).expanduser().absolute()
    return path.with_name(f".{path.name}.lock")


@contextmanager
def writer_lock(store: str, wait_s: float | None = None, what: str = "store",
                hint: str = "or choose another --store") -> Iterator[None]:
    """Hold the writer lock of `store` (a `what`: store, database). Another process holding it: wait up to `wait_s`
    seconds (None: as long as it takes, 0: refuse at once), saying once on stderr what it waits for; a refusal ends
    with `hint`. The lock file is removed on release."""
    path = lock_path(store)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = None if wait_s is None else time.monotonic() + wait_s
    said = [False]
    while True:
        f = open(path, "a+")  # noqa: SIM115 (held past this loop, closed in the finally below)
        try:
            _acquire(f, f"{what} {store}", hint, deadline, said)
        except BaseException:
            f.close()
            raise
        if _same_file(f, path):
            break
        f.close()  # locked a file its holder removed on release: lock the one now at the path
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")  # for the message of a process that waits
        f.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # before unlocking: a waiter then sees its file is gone and retries
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def _same_file(f, path: Path) -> bool:
    try:
        return os.fstat(f.fileno()).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _acquire(f, name: str, hint: str, deadline: float | None, said: list[bool]) -> None:
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            if deadline is not None and time.monotonic() >= deadline:
                raise SnError(f"{name} is being written by another process (pid {holder}); wait for it to "
                              f"finish, {hint}") from None
            if not said[0]:
                print(f"{name} is being written by another process (pid {holder}): waiting for it to finish",
                      file=sys.stderr, flush=True)
                said[0] = True
            time.sleep(_POLL_S)
