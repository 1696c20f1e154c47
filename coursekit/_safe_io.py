"""Writing files that are never left half-written, holding values that load safely.

Shared by ``train`` (checkpoints), ``infer`` (bundles, CSVs) and data_scripts (copies);
imports nothing of coursekit, and torch only to check values.

    >>> with atomic_write(Path("runs/table.csv"), "w") as handle:  # doctest: +SKIP
    ...     handle.write("file,label\\n")
"""

from __future__ import annotations

import errno
import glob
import os
import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: What ``torch.load(weights_only=True)`` reads back, besides tensors, lists and dicts.
#: Exact types only: numpy scalars or Path objects would be refused at load time.
PLAIN_TYPES = (str, int, float, bool, type(None))

#: Why a write fails for reasons the learner, not the code, must fix: what to say about each.
_UNWRITABLE = {
    errno.ENOSPC: "the disk holding {folder} is full",
    errno.EDQUOT: "your disk quota for {folder} is used up",
    errno.EROFS: "{folder} is on a read-only disk",
    errno.EACCES: "you may not write into {folder}",
    errno.EPERM: "you may not write into {folder}",
}


class NotWritableError(OSError):
    """A file or folder could not be written: its disk is full, read-only or not ours.

    The message is one line naming what could not be written and what to do; ``errno``
    is the one of the operating system's error.
    """


def unwritable_cause(error: BaseException) -> OSError | None:
    """The full-disk or read-only ``OSError`` behind ``error`` (itself, or one it wraps).

    torch.save reports a failed write as a RuntimeError whose context is the OSError.

    >>> unwritable_cause(OSError(errno.ENOSPC, "No space left on device")).errno == errno.ENOSPC
    True
    """
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _UNWRITABLE:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def explained_write_errors(what: str, folder: Path, fix: str) -> Iterator[None]:
    """Turn a full disk or a read-only folder met inside the block into a ``NotWritableError``.

    ``what`` names what was being written, ``folder`` where, ``fix`` the other way to go.

    >>> with explained_write_errors("the subset", Path("data"), "Use another folder."):  # doctest: +SKIP
    ...     shutil.copy2(source, destination)
    """
    try:
        yield
    except NotWritableError:
        raise
    except Exception as error:
        cause = unwritable_cause(error)
        if cause is None:
            raise
        problem = _UNWRITABLE[cause.errno].format(folder=folder)
        full = cause.errno in (errno.ENOSPC, errno.EDQUOT)
        todo = "free some space there, or " if full else ""
        explained = NotWritableError(
            f"Could not write {what}: {problem} ({os.strerror(cause.errno)}). "
            f"Fix: {todo}{fix[0].lower()}{fix[1:]}"
        )
        explained.errno = cause.errno
        raise explained from error


def _umask() -> int:
    # The only portable way to read the umask is to set it and put it back at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: Path, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Write a temporary file in the target folder and rename it over ``path`` once complete.

    ``os.replace`` within one folder is atomic, so a crash or Ctrl-C mid-write leaves the
    previous file intact and no temporary file behind. The file gets the permissions the
    umask gives a new file (as ``open`` and ``torch.save`` do), not ``mkstemp``'s 0600. A
    full disk or a read-only folder raises ``NotWritableError`` saying so in one line.

    >>> with atomic_write(Path("runs/model.pt")) as handle:  # doctest: +SKIP
    ...     torch.save(state, handle)
    """
    fix = "write to a folder on another disk."
    with explained_write_errors(str(path), path.parent, fix):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp"
        )
        try:
            with os.fdopen(fd, mode, **open_kwargs) as handle:
                yield handle
                handle.flush()
                os.fchmod(handle.fileno(), 0o666 & ~_umask())
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
        except BaseException:  # also Ctrl-C
            Path(tmp_name).unlink(missing_ok=True)
            raise


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def stale_temporary_files(path: Path, older_than: float) -> list[Path]:
    """Temporary files of ``atomic_write(path)`` last written before ``older_than`` (a time).

    A process killed mid-write (kill -9, a crashed kernel) leaves its temporary file behind.

    >>> stale_temporary_files(Path("runs/best.pt"), time.time())  # doctest: +SKIP
    [PosixPath('runs/.best.pt.k2j4h1x9.tmp')]
    """
    pattern = glob.escape(str(path.parent / _temporary_prefix(path))) + "*.tmp"
    return sorted(Path(name) for name in glob.glob(pattern) if os.stat(name).st_mtime < older_than)


def refused_as_unsafe(error: BaseException) -> bool:
    """True when ``torch.load(weights_only=True)`` refused a file for holding Python objects.

    Such a file may run code when loaded the unsafe way, so no message may suggest that.

    >>> refused_as_unsafe(pickle.UnpicklingError("Weights only load failed. ..."))
    True
    """
    return isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error)


def first_unsafe_value(value: Any, name: str) -> tuple[str, str] | None:
    """Where the first value that ``weights_only`` loading would refuse sits, and its type.

    >>> first_unsafe_value({"size": 224, "root": Path("data")}, "metadata")
    ("metadata['root']", 'PosixPath')
    """
    if isinstance(value, dict):
        for key, item in value.items():
            found = first_unsafe_value(key, f"a key of {name}") or first_unsafe_value(
                item, f"{name}[{key!r}]"
            )
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if found := first_unsafe_value(item, f"{name}[{index}]"):
                return found
        return None
    import torch  # here: data_scripts' atomic writes must not load torch

    if type(value) in PLAIN_TYPES or isinstance(value, torch.Tensor):
        return None
    return name, type(value).__name__
