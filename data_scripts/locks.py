"""Operating-system file locks, to tell a command that is still running from one that was killed.

A thin layer over the ``filelock`` package (which does this on every OS): the lock belongs
to the process that holds it and vanishes when the process ends, however it ends, so a
killed run never leaves a lock that blocks the next one.

    >>> lock = try_lock(Path(tmp) / ".demo.lock")  # doctest: +SKIP
    >>> is_held_elsewhere(Path(tmp) / ".demo.lock")  # doctest: +SKIP
    True
"""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout


def try_lock(path: Path) -> FileLock | None:
    """Lock ``path`` (created if missing) for this process without waiting.

    Returns the held lock (keep a reference; ``.release()`` frees it), or None when another
    process, or another lock object of this one, holds it.

    >>> try_lock(Path(tmp) / ".demo.lock") is not None  # doctest: +SKIP
    True
    """
    lock = FileLock(path, mode=0o644)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


def is_held_elsewhere(path: Path) -> bool:
    """True while a running process holds the lock on ``path``; False if nobody does.

    >>> is_held_elsewhere(Path(tmp) / ".nobody.lock")  # doctest: +SKIP
    False
    """
    if not path.exists():
        return False
    lock = try_lock(path)
    if lock is None:
        return True
    lock.release()
    return False
