"""A seeded, class-balanced small copy of a dataset folder, for CI and quick runs.

>>> report = make_subset(Path("data/flowers102"), Path("data/flowers-mini"), per_class=5)  # doctest: +SKIP
>>> report.copied["train"]["1"]  # doctest: +SKIP
5
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from coursekit._safe_io import explained_write_errors
from coursekit.folders import LABEL_MAP_NAME, split_folders, visible_subdirs, walk_folder
from data_scripts.errors import DataScriptError
from data_scripts.files import publish, scratch_dir


@dataclass
class Shortfall:
    """A class that had fewer images than asked for: all of them were copied."""

    split: str
    class_name: str
    available: int


@dataclass
class SubsetReport:
    """What ``make_subset`` copied: images per split and class, and the shortfalls."""

    destination: Path
    per_class: int
    copied: dict[str, dict[str, int]] = field(default_factory=dict)
    shortfalls: list[Shortfall] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the terminal, naming every class that had fewer images than asked.

        >>> print(report.summary())  # doctest: +SKIP
        Subset at data/mini: train 24, valid 12 images (2 per class asked).
        """
        splits = ", ".join(
            f"{split} {sum(n.values())}" for split, n in self.copied.items()
        )
        lines = [
            f"Subset at {self.destination}: {splits} images ({self.per_class} per class asked)."
        ]
        lines += [
            f"  {Path(s.split, s.class_name).as_posix()}: only {s.available} image(s), all copied"
            for s in self.shortfalls
        ]
        return "\n".join(lines)


def make_subset(
    source: Path, destination: Path, per_class: int, seed: int = 0, *, force: bool = False
) -> SubsetReport:
    """Copy ``per_class`` randomly chosen images of every class of every split.

    The choice depends only on ``seed``, split and class. ``cat_to_name.json`` comes
    along; hidden files and folders stay behind. ``destination`` appears complete or not at all.

    >>> make_subset(Path("data/synthetic"), tmp_path / "mini", per_class=2).per_class  # doctest: +SKIP
    2
    """
    source, destination = Path(source).expanduser(), Path(destination).expanduser()
    _check_arguments(source, destination, per_class, force)
    report = SubsetReport(destination, per_class)
    fix = "choose a destination on another disk."
    with (
        explained_write_errors(f"the subset {destination}", destination.parent, fix),
        scratch_dir(destination.parent, destination.name) as scratch,
    ):
        build = scratch / destination.name
        # The splits and images the lessons would load ("all" for one folder of classes).
        for split, folder in split_folders(source)[0].items():
            report.copied[split] = {}
            for class_folder in visible_subdirs(folder):
                class_name = class_folder.name
                images = walk_folder(class_folder, tree=folder).images
                chosen = _choose(images, per_class, seed, split, class_name)
                out = build / class_folder.relative_to(source)
                out.mkdir(parents=True)
                for image in chosen:  # images in sub-folders keep their sub-folder
                    copy = out / image.relative_to(class_folder)
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(image, copy)
                report.copied[split][class_name] = len(chosen)
                if len(chosen) < per_class:
                    report.shortfalls.append(Shortfall(split, class_name, len(chosen)))
        if (source / LABEL_MAP_NAME).is_file():
            shutil.copy2(source / LABEL_MAP_NAME, build / LABEL_MAP_NAME)
        publish(build, destination)
    return report


def _check_arguments(source: Path, destination: Path, per_class: int, force: bool) -> None:
    if per_class < 1:
        raise DataScriptError(f"--per-class must be at least 1 (got {per_class}).")
    if not source.is_dir():
        raise DataScriptError(
            f"{source} is not a folder. Fix: give the dataset folder to copy from."
        )
    if not split_folders(source)[0]:
        raise DataScriptError(
            f"{source} has no class folders with images. Fix: give a dataset folder such as "
            "data/flowers102 (splits with class folders) or a folder of class folders."
        )
    # --force replaces the destination whole: it must neither be nor hold the source.
    if destination.resolve() == source.resolve():
        raise DataScriptError(
            f"{destination} is the source folder itself; the subset would replace the dataset "
            "it samples from. Fix: choose a new folder, such as data/flowers102-mini."
        )
    if destination.resolve().is_relative_to(source.resolve()):
        raise DataScriptError(
            f"{destination} is inside {source}; the subset would copy itself. "
            "Fix: choose a destination outside the source folder."
        )
    if source.resolve().is_relative_to(destination.resolve()):
        raise DataScriptError(
            f"{destination} contains the source folder {source}; replacing it would delete "
            "the dataset (and everything next to it). Fix: choose a new folder for the "
            "subset, such as data/flowers102-mini."
        )
    if destination.exists() and not force:
        raise DataScriptError(
            f"{destination} already exists. Fix: choose another folder, or pass --force to replace it."
        )


def _choose(images: list[Path], count: int, seed: int, split: str, class_name: str) -> list[Path]:
    # A string seed is hashed deterministically, so every class draws independently of the
    # others and of the listing order of other folders.
    rng = random.Random(f"{seed}/{split}/{class_name}")
    return sorted(rng.sample(images, min(count, len(images))))
