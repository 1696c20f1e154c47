"""Operating-system file locks, to tell a command that is still running from one that was killed.

The lock belongs to the process that holds the file open: it vanishes when the process
ends, however it ends, so a killed run never leaves a lock that blocks the next one.

    >>> descriptor = try_lock(Path(tmp) / ".demo.lock")  # doctest: +SKIP
    >>> is_held_elsewhere(Path(tmp) / ".demo.lock")  # doctest: +SKIP
    False
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if sys.platform == "win32":
    import msvcrt

    def _lock(descriptor: int) -> bool:
        try:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _lock(descriptor: int) -> bool:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def try_lock(path: Path) -> int | None:
    """Lock ``path`` (created if missing) for this process without waiting.

    Returns the open descriptor that holds the lock (``os.close`` releases it), or None
    when another process holds it.

    >>> try_lock(Path(tmp) / ".demo.lock") is not None  # doctest: +SKIP
    True
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if _lock(descriptor):
        return descriptor
    os.close(descriptor)
    return None


def is_held_elsewhere(path: Path) -> bool:
    """True while a running process holds the lock on ``path``; False if nobody does.

    >>> is_held_elsewhere(Path(tmp) / ".nobody.lock")  # doctest: +SKIP
    False
    """
    if not path.exists():
        return False
    descriptor = try_lock(path)
    if descriptor is None:
        return True
    os.close(descriptor)
    return False
