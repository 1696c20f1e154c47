"""Filesystem helpers: what counts as an image, and how a folder is published atomically.

Every command builds its result in a hidden scratch folder next to the target and then
renames it into place, so a dataset folder either does not exist or is complete:

    >>> with scratch_dir(Path(tmp), "demo") as scratch:  # doctest: +SKIP
    ...     (scratch / "built").mkdir(); publish(scratch / "built", Path(tmp) / "demo")
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

# One definition of "hidden" and of the label map's name for the lessons' loaders and
# these scripts (coursekit.folders loads without torch).
from coursekit._safe_io import atomic_write, unwritable_cause
from coursekit.config import get_settings
from coursekit.folders import LABEL_MAP_NAME, is_hidden
from data_scripts.locks import is_held_elsewhere, try_lock


def resolve_data_root(root: Path | str | None) -> Path:
    """``root``, or the course's data folder (``COURSE_DATA_ROOT``, default ``<repo>/data``).

    >>> resolve_data_root("/tmp/course-data")
    PosixPath('/tmp/course-data')
    """
    if root is not None:
        return Path(root).expanduser()
    return get_settings().data_root


def write_label_map(folder: Path, names: Sequence[str]) -> Path:
    """Write ``cat_to_name.json`` mapping "1".."N" to ``names`` (class folders are numbers).

    >>> write_label_map(Path(tmp), ["circle", "square"]).name  # doctest: +SKIP
    'cat_to_name.json'
    """
    path = folder / LABEL_MAP_NAME
    mapping = {str(number): name for number, name in enumerate(names, start=1)}
    path.write_text(json.dumps(mapping, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


#: Next to each scratch folder while its run is alive: the file its owner holds locked.
SCRATCH_LOCK_SUFFIX = ".lock"


@contextmanager
def scratch_dir(parent: Path, label: str) -> Iterator[Path]:
    """A hidden temporary folder in ``parent`` with a unique name, removed on exit whatever happens.

    It lives next to the target so that ``publish`` is a rename on the same filesystem.
    Leftovers of earlier runs that were killed (same ``label``) are removed first; the
    folder of a run that is still going is recognised by its held lock and left alone.

    >>> with scratch_dir(Path(tmp), "synthetic") as scratch:  # doctest: +SKIP
    ...     scratch.name.startswith(".synthetic.tmp-")
    True
    """
    parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{label}.tmp-"
    _remove_abandoned_scratch(parent, prefix)
    # The lock exists and is held before the folder does, so no other run can ever see
    # the folder without its owner's lock.
    handle, lock_name = tempfile.mkstemp(prefix=prefix, suffix=SCRATCH_LOCK_SUFFIX, dir=parent)
    os.close(handle)
    lock = Path(lock_name)
    held = try_lock(lock)
    assert held is not None, lock  # mkstemp's name is new: nobody else holds it
    scratch = lock.with_name(lock.name.removesuffix(SCRATCH_LOCK_SUFFIX))
    try:
        scratch.mkdir()
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        held.release()
        lock.unlink(missing_ok=True)


def _remove_abandoned_scratch(parent: Path, prefix: str) -> None:
    for folder in parent.glob(prefix + "*"):
        if folder.name.endswith(SCRATCH_LOCK_SUFFIX):
            continue
        lock = folder.with_name(folder.name + SCRATCH_LOCK_SUFFIX)
        if not is_held_elsewhere(lock):
            shutil.rmtree(folder, ignore_errors=True)
            lock.unlink(missing_ok=True)


def publish(built: Path, target: Path) -> None:
    """Move the finished folder ``built`` to ``target``, replacing an old ``target`` whole.

    The old folder is renamed aside first and deleted last, so at no moment does a
    mixture of old and new files sit at ``target``. Old folders that a killed run left
    renamed aside are deleted too.

    >>> publish(scratch / "synthetic", data_root / "synthetic")  # doctest: +SKIP
    """
    if target.exists():
        retired = target.with_name(f"{_retired_prefix(target)}{uuid.uuid4().hex[:8]}")
        os.replace(target, retired)
        try:
            os.replace(built, target)
        except OSError:
            os.replace(retired, target)  # put the old, complete folder back
            raise
    else:
        os.replace(built, target)
    for old in target.parent.glob(_retired_prefix(target) + "*"):
        shutil.rmtree(old, ignore_errors=True)


def _retired_prefix(target: Path) -> str:
    return f".{target.name}.old-"


def copy_visible_tree(source: Path, destination: Path) -> None:
    """Copy a folder tree, leaving out hidden files and folders.

    >>> copy_visible_tree(Path("my_photos"), scratch / "copy")  # doctest: +SKIP
    """

    def hidden_names(_folder: str, names: list[str]) -> list[str]:
        return [name for name in names if is_hidden(Path(name))]

    def copy(from_path: str, to_path: str) -> None:
        try:
            shutil.copy2(from_path, to_path)
        except OSError as error:
            if unwritable_cause(error):
                raise _StopCopying(error) from error  # copytree would collect it and go on
            raise

    try:
        shutil.copytree(source, destination, ignore=hidden_names, copy_function=copy)
    except _StopCopying as stop:
        raise stop.error from None


class _StopCopying(Exception):
    """A full or read-only disk: not one of the per-file errors copytree collects."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def copy_file_atomically(source: Path, destination: Path) -> None:
    """Copy one file so that ``destination`` never exists half-written.

    Through coursekit's one ``atomic_write``: a temporary file, fsynced, then renamed, so a
    power cut cannot leave a renamed but empty weights file either.

    >>> copy_file_atomically(Path("resnet18-f37072fd.pth"), cache / "resnet18-f37072fd.pth")  # doctest: +SKIP
    """
    with source.open("rb") as original, atomic_write(destination) as copy:
        shutil.copyfileobj(original, copy)
