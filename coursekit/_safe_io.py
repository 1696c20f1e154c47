"""Writing files that are never left half-written, holding values that load safely.

Shared by ``train`` (checkpoints) and ``infer`` (bundles, CSVs); imports nothing of coursekit.

    >>> with atomic_write(Path("runs/table.csv"), "w") as handle:  # doctest: +SKIP
    ...     handle.write("file,label\\n")
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch

#: What ``torch.load(weights_only=True)`` reads back, besides tensors, lists and dicts.
#: Exact types only: numpy scalars or Path objects would be refused at load time.
PLAIN_TYPES = (str, int, float, bool, type(None))


@contextmanager
def atomic_write(path: Path, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Write a temporary file in the target folder and rename it over ``path`` once complete.

    ``os.replace`` within one folder is atomic, so a crash or Ctrl-C mid-write leaves the
    previous file intact and no temporary file behind.

    >>> with atomic_write(Path("runs/model.pt")) as handle:  # doctest: +SKIP
    ...     torch.save(state, handle)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:  # also Ctrl-C
        Path(tmp_name).unlink(missing_ok=True)
        raise


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
    if type(value) in PLAIN_TYPES or isinstance(value, torch.Tensor):
        return None
    return name, type(value).__name__
