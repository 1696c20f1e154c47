"""From folders of images to datasets, loaders, transforms and label names.

The course's data lives in ImageFolder trees, one folder per class and split::

    data/flowers102/train/1/image_06734.jpg    data/flowers102/valid/1/image_06739.jpg

Everything here is built so that real-world folders do not break a lesson halfway:
ONE class-to-index mapping is shared by all splits (a class missing from ``valid/`` keeps
its label), hidden folders such as ``.ipynb_checkpoints`` are ignored, every image mode
becomes RGB with its EXIF orientation applied, and broken files are reported by name
(with the fix) instead of crashing an epoch.

    >>> train_ds, valid_ds = build_datasets("data/synthetic", train_transforms(64, 72),
    ...                                     eval_transforms(64, 72))  # doctest: +SKIP
    >>> loaders = make_loaders(train_ds, valid_ds, batch_size=8)     # doctest: +SKIP

This module imports only :mod:`coursekit.config` from coursekit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset
from torchvision import models, transforms
from torchvision.models import WeightsEnum

from coursekit.config import IMAGENET_MEAN, IMAGENET_STD, Settings, get_settings

#: File extensions read as images (compared in lower case).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
#: Names of the validation split, in the order they are looked for.
VALID_SPLIT_NAMES: tuple[str, ...] = ("valid", "val", "validation")
TRAIN_SPLIT_NAME = "train"
#: The label map a dataset may keep next to its splits: ``{"folder": "readable name"}``.
LABEL_MAP_NAME = "cat_to_name.json"
SYNTHETIC_DATASET = "synthetic"
#: Names that operating systems and tools drop into folders; never classes or images.
_SYSTEM_NAMES = frozenset({".ipynb_checkpoints", ".DS_Store", "Thumbs.db", "desktop.ini"})
_EXPECTED_LAYOUT = (
    "ROOT/train/<class>/image.jpg (one folder per class, optional ROOT/valid/<class>/...)"
)
_CHECK_COMMAND = "python -m coursekit check-data"

Sample = tuple[Path, int]
Transform = Callable[[Image.Image], Any]
MeanStd = tuple[tuple[float, ...], tuple[float, ...]]


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; the message names the file and the fix."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        # DataLoader workers rebuild exceptions from their message alone, so ``path``
        # must stay optional.
        super().__init__(message)
        self.path = path


class DatasetLayoutError(ValueError):
    """A dataset folder that does not have the ImageFolder layout."""


class DatasetMissingError(FileNotFoundError):
    """A dataset that is not on disk; the message names the command that fetches it."""


def printable_path(path: str | os.PathLike[str]) -> str:
    """``path`` as text any terminal or UTF-8 file takes: bytes of a file name that are not
    UTF-8 (a Latin-1 name copied from an old disk) are shown as ``\\xe9``-style escapes.

    >>> printable_path(os.fsdecode(b"caf\\xe9.jpg"))
    'caf\\\\xe9.jpg'
    """
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: which path, what is wrong, and how to fix it."""

    path: Path
    problem: str
    fix: str

    def __str__(self) -> str:
        return printable_path(f"{self.path}: {self.problem}. Fix: {self.fix}.")


# --------------------------------------------------------------------------- files


def is_hidden(path: str | os.PathLike[str]) -> bool:
    """Whether a file or folder is system clutter that must never become a class or sample.

    >>> is_hidden("train/.ipynb_checkpoints"), is_hidden("train/__MACOSX"), is_hidden("train/1")
    (True, True, False)
    """
    name = Path(path).name
    return name in _SYSTEM_NAMES or name.startswith((".", "__"))


def _has_image_extension(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _visible_subdirs(folder: Path) -> list[Path]:
    """Sub-folders of ``folder`` that are not hidden, sorted by name (empty if missing)."""
    if not folder.is_dir():
        return []
    return sorted(
        (entry for entry in folder.iterdir() if entry.is_dir() and not is_hidden(entry)),
        key=lambda entry: entry.name,
    )


@dataclass(frozen=True)
class FolderWalk:
    """What :func:`walk_folder` found: the visible files, and the linked folders it skipped."""

    files: list[Path]
    #: Linked folders (symlinks) not followed: they lead back into the tree being walked.
    loops: list[Path]
    #: The folder whose images must be counted once each (a split folder for a class).
    tree: Path

    @property
    def images(self) -> list[Path]:
        return [path for path in self.files if _has_image_extension(path)]

    def loop_problems(self) -> list[Problem]:
        return [
            Problem(
                link,
                f"this linked folder leads back into {self.tree} (to "
                f"{os.path.realpath(link)}), so its images would be counted again or under "
                "the wrong class; it is not followed",
                f"delete the link (rm '{link}'), or put a copy of the images it should add there",
            )
            for link in self.loops
        ]


def walk_folder(
    folder: str | os.PathLike[str], tree: str | os.PathLike[str] | None = None
) -> FolderWalk:
    """Every non-hidden file under ``folder`` (recursively, hidden folders skipped), sorted.

    A linked folder is followed when it leads outside ``tree`` (default ``folder``) to a
    folder not walked yet; one leading back in (``ln -s .. cat/loop``, ``ln -s . cat/self``)
    would repeat images forever or give one class another's, so it is skipped and listed
    in ``loops``. The one walk of the datasets, ``check-data``, ``predict_folder`` and
    ``python -m data_scripts verify``, so they always count the same files.

    >>> walk_folder("data/hymenoptera/train/ants", tree="data/hymenoptera/train").loops  # doctest: +SKIP
    []
    """
    root = Path(folder)
    inside = Path(os.path.realpath(tree if tree is not None else root))
    walked = {Path(os.path.realpath(root))}
    files: list[Path] = []
    loops: list[Path] = []
    for directory, subdirs, names in os.walk(root, followlinks=True):
        here = Path(os.path.realpath(directory))
        followed = []
        for name in subdirs:
            path = Path(directory, name)
            if is_hidden(name):
                continue  # prune, do not descend
            if path.is_symlink():
                target = Path(os.path.realpath(path))
                leads_back = target.is_relative_to(inside) or inside.is_relative_to(target)
                if leads_back or here.is_relative_to(target) or target in walked:
                    loops.append(path)
                    continue
                walked.add(target)
            followed.append(name)
        subdirs[:] = followed
        files.extend(Path(directory, name) for name in names if not is_hidden(name))
    return FolderWalk(sorted(files), sorted(loops), inside)


def _visible_files(folder: Path) -> list[Path]:
    return walk_folder(folder).files


def _image_files(folder: Path) -> list[Path]:
    return walk_folder(folder).images


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` and its sub-folders, sorted; hidden files/folders ignored.

    The same walk as the datasets use (:func:`walk_folder`: linked sub-folders followed
    unless they lead back into ``folder``, ``.ipynb_checkpoints`` skipped), so that no image
    is seen twice.

    >>> image_files("my_photos")[:2]  # doctest: +SKIP
    [PosixPath('my_photos/cat.jpg'), PosixPath('my_photos/dog.png')]
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Image folder {root} does not exist (or is not a folder). Check the path; "
            f"relative paths start at the current directory, {Path.cwd()}."
        )
    files = _image_files(root)
    if not files:
        raise FileNotFoundError(
            f"No image files in {root} or its sub-folders (looked for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}). Put some images there or pick another folder."
        )
    return files


# --------------------------------------------------------------------------- one image


@contextmanager
def _open_image(path: Path) -> Iterator[Image.Image]:
    """``Image.open`` that treats Pillow's decompression-bomb *warning* as an error too.

    The filter is local to this block: Pillow's global settings are left untouched.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            yield image


def _diagnose(path: Path, error: BaseException) -> Problem:
    """Turn whatever Pillow raised for ``path`` into a Problem a beginner can act on."""
    if path.is_file() and path.stat().st_size == 0:
        return Problem(path, "the file is empty (0 bytes)", "delete it, or copy the image again")
    if isinstance(error, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return Problem(
            path,
            f"the image is too large to load safely, it could be a decompression bomb ({error})",
            "shrink it (for example with PIL's Image.thumbnail or any image editor), or if you "
            "trust the file raise the limit before loading: PIL.Image.MAX_IMAGE_PIXELS = <pixels>",
        )
    if isinstance(error, UnidentifiedImageError):
        return Problem(
            path,
            "it is not an image Pillow can read (perhaps a web page or another file saved "
            "with an image extension)",
            "delete it or replace it with a real image",
        )
    if isinstance(error, PermissionError):
        return Problem(path, "it cannot be read (permission denied)", "make it readable: chmod +r")
    return Problem(
        path,
        f"the image is truncated or corrupt ({type(error).__name__}: {error})",
        "download or copy it again, or delete it",
    )


def _white_level(mode: str, peak: float) -> float:
    """The pixel value that means white for a high-bit-depth image (I;16, I or F)."""
    if mode.startswith("I;16"):
        return 65535.0
    # "I" and "F" do not say their bit depth: pick the smallest usual range that holds the data.
    usual_ranges = (1.0, 255.0, 65535.0) if mode == "F" else (255.0, 65535.0)
    return next((level for level in usual_ranges if peak <= level), peak)


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """Scale a 16-bit / 32-bit / float grayscale image down to 8 bits (Pillow would clip it)."""
    values = np.asarray(image, dtype=np.float64)
    white = _white_level(image.mode, float(values.max(initial=0.0)))
    scaled = np.clip(np.rint(values * (255.0 / white)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled)


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in image.info


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image as RGB: transparency composited on white, 16-bit scaled to 8-bit.

    >>> to_rgb(Image.new("RGBA", (2, 2), (0, 0, 0, 0))).getpixel((0, 0))
    (255, 255, 255)
    """
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        image = _high_depth_to_l(image)
    if _has_transparency(image):
        # Transparent pixels often store black (or junk) colour; white is what viewers show.
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _read_rgb(path: Path) -> Image.Image:
    with _open_image(path) as image:
        upright = ImageOps.exif_transpose(image)  # phones store portraits rotated + a flag
        return to_rgb(upright)


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read an image file as an upright RGB image, or explain clearly why it cannot be read.

    >>> load_image("data/synthetic/train/1/0000.png").mode  # doctest: +SKIP
    'RGB'
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No image file at {path}: check the path and the file name.")
    try:
        return _read_rgb(path)
    # Pillow raises OSError, SyntaxError, struct.error, ... for bad files: catch them all.
    except Exception as error:
        raise UnreadableImageError(f"Cannot read image {_diagnose(path, error)}", path) from error


def _quick_check(path: Path) -> None:
    """Raise if ``path`` cannot be read, decoding as little as is safe for its format.

    PNG: ``verify()`` reads every chunk and checks its CRC, which catches a truncated or
    garbled file without decoding pixels. JPEG: ``verify()`` does not look at the data at
    all, so a JPEG is decoded at 1/8 scale, which still reads every coded byte at about half
    the cost of a full decode. Every other format (GIF, BMP, TIFF, WebP) is decoded in full:
    for them ``verify()`` passes files cut short that would stop training mid-epoch.
    """
    with _open_image(path) as image:
        if image.format == "PNG":
            image.verify()
            return
        if image.format in ("JPEG", "MPO"):  # MPO: a camera's JPEG with extra pictures
            image.draft(image.mode, (image.width // 8, image.height // 8))
        image.load()


def _problem_with(path: Path, *, thorough: bool) -> Problem | None:
    """The Problem of one image file, or None; ``thorough`` decodes every pixel."""
    try:
        (_read_rgb if thorough else _quick_check)(path)
    except Exception as error:  # see load_image: every decoding failure is a Problem
        return _diagnose(path, error)
    return None


# --------------------------------------------------------------------------- datasets


def find_classes(*split_dirs: str | os.PathLike[str]) -> list[str]:
    """The sorted union of the class folders of all splits: ONE mapping for every split.

    >>> find_classes("data/hymenoptera/train", "data/hymenoptera/val")  # doctest: +SKIP
    ['ants', 'bees']
    """
    folders = [Path(folder) for folder in split_dirs]
    classes = sorted({sub.name for folder in folders for sub in _visible_subdirs(folder)})
    for problem in _look_alike_classes(classes):
        print(f"WARNING: {printable_path(problem.problem)}. Fix: {problem.fix}.")
    if not classes:
        searched = ", ".join(f"{f}{'' if f.is_dir() else ' (does not exist)'}" for f in folders)
        raise DatasetLayoutError(
            f"No class folders found in {searched or 'no folder given'}. "
            f"Expected the layout {_EXPECTED_LAYOUT}."
        )
    return classes


def _scan_samples(root: Path, classes: Sequence[str]) -> list[Sample]:
    """(path, class index) for every image in ``root/<class>/``; absent classes give none.

    Files and linked folders that cannot be used (see :func:`_unused`) are printed, once.
    """
    walks = [walk_folder(root / name, tree=root) for name in classes]
    unused = [problem for walk in walks for problem in _unused(walk)]
    if unused:
        print(
            f"Not used: {len(unused)} file(s) or linked folder(s) in {printable_path(root)}:\n"
            + "\n".join(f"  {problem}" for problem in unused)
        )
    return [(path, index) for index, walk in enumerate(walks) for path in walk.images]


#: Photo formats Pillow cannot read: named with the way to convert them, never skipped silently.
_UNREADABLE_PHOTO_FORMATS = frozenset({".heic", ".heif"})


def _unreadable_format(path: Path) -> Problem:
    return Problem(
        path,
        f"{path.suffix} photos (the iPhone's HEIF format) cannot be read here, so it is ignored",
        "convert it to JPEG: on the iPhone choose Settings > Camera > Formats > Most "
        "Compatible, on a Mac open it in Preview and use File > Export, or install "
        "pillow-heif (pip install pillow-heif) and save it as JPEG with PIL",
    )


def _unused(walk: FolderWalk) -> list[Problem]:
    """The linked folders a walk skipped and the photos it found in formats Pillow cannot read."""
    unreadable = [p for p in walk.files if p.suffix.lower() in _UNREADABLE_PHOTO_FORMATS]
    return walk.loop_problems() + [_unreadable_format(path) for path in unreadable]


def _by_class(samples: Iterable[Sample]) -> dict[int, list[Path]]:
    groups: dict[int, list[Path]] = {}
    for path, target in samples:
        groups.setdefault(target, []).append(path)
    return groups


def _folder_name(paths: Sequence[Path]) -> str:
    """The name of the folder that holds all of ``paths``: the class folder of ImageFolder.

    >>> _folder_name([Path("train/cats/a.jpg"), Path("train/cats/sub/b.jpg")])
    'cats'
    """
    common = os.path.commonprefix([path.parent.parts for path in paths])  # part by part
    return common[-1] if common else ""


def _seeded_shuffle(paths: Sequence[Path], seed: int) -> list[Path]:
    """A copy of one class's ``paths``, shuffled by ``seed`` and the name of the class folder.

    The class NAME (not its index) goes into the seed, so adding or removing another class
    leaves this class's order, and so its train/valid split, exactly as it was. Sorting by
    the text of the path keeps the order the same on every OS (Windows compares Paths
    without case) and independent of the order the files were listed in.
    """
    shuffled = sorted(paths, key=str)
    random.Random(f"{seed}/{_folder_name(shuffled)}").shuffle(shuffled)
    return shuffled


def _sorted_samples(samples: Iterable[Sample]) -> list[Sample]:
    return sorted(samples, key=lambda sample: (sample[1], str(sample[0])))


def _take_per_class(samples: Sequence[Sample], per_class: int, seed: int) -> list[Sample]:
    """The first ``per_class`` images of each class after a seeded shuffle."""
    return _sorted_samples(
        (path, target)
        for target, paths in _by_class(samples).items()
        for path in _seeded_shuffle(paths, seed)[:per_class]
    )


class ImageFolderDataset(Dataset):
    """Images in ``root/<class>/...`` with labels from ONE shared class list.

    Like ``torchvision.datasets.ImageFolder``, but ``classes`` can be given (so that every
    split uses the same indices), hidden folders are skipped, images are loaded with
    :func:`load_image`, and ``per_class`` keeps a seeded, class-balanced subset.

    >>> ds = ImageFolderDataset("data/synthetic/train", per_class=4)  # doctest: +SKIP
    >>> ds.classes[:3], len(ds)                                         # doctest: +SKIP
    (['1', '10', '11'], 48)
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        classes: Sequence[str] | None = None,
        transform: Transform | None = None,
        per_class: int | None = None,
        seed: int = 0,
        samples: Sequence[Sample] | None = None,
    ) -> None:
        self.root = Path(root)
        self.classes: list[str] = list(classes) if classes is not None else find_classes(self.root)
        self.class_to_idx: dict[str, int] = {name: i for i, name in enumerate(self.classes)}
        self.transform = transform
        self.per_class = per_class
        if per_class is not None and per_class < 1:
            raise ValueError(f"per_class={per_class} must be at least 1 (or None for all images).")
        if samples is None:
            samples = _scan_samples(self.root, self.classes)
        if per_class is not None:
            samples = _take_per_class(samples, per_class, seed)
        self.samples: list[Sample] = [(Path(path), int(target)) for path, target in samples]

    @property
    def targets(self) -> list[int]:
        """The class index of every sample, in sample order."""
        return [target for _, target in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        try:
            image = load_image(path)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{printable_path(path)} was in {printable_path(self.root)} when this dataset was "
                "built, but it is gone now: the folder changed during training (it was "
                "replaced, e.g. by `python -m data_scripts synthetic --force` or a new "
                "download, or files were moved). Fix: run the cell that builds the datasets "
                "again, then train again."
            ) from None
        return (self.transform(image) if self.transform else image), target

    def __repr__(self) -> str:
        counts = class_counts(self)
        empty = [name for name, count in counts.items() if count == 0]
        lines = [
            f"{type(self).__name__}",
            f"    Root: {self.root}",
            f"    Images: {len(self)} in {len(self.classes)} classes "
            f"({min(counts.values(), default=0)} to {max(counts.values(), default=0)} per class"
            + (f", per_class={self.per_class}" if self.per_class is not None else "")
            + ")",
        ]
        if empty:
            lines.append(f"    Classes without images: {', '.join(empty)}")
        if self.transform is not None:
            lines.append("    Transform: " + repr(self.transform).replace("\n", "\n    "))
        return "\n".join(lines)


def split_samples(
    samples: Sequence[Sample], validation_split: float = 0.2, seed: int = 123
) -> tuple[list[Sample], list[Sample]]:
    """Split the samples of ONE folder into (train, valid), seeded and stratified per class.

    This is the PyTorch counterpart of Keras'
    ``image_dataset_from_directory(dir, validation_split=0.2, seed=123, subset=...)``:
    one call returns both subsets, the same seed always gives the same split, and the two
    parts are disjoint and cover every file. Keras shuffles the whole file list with NumPy
    and cuts the last ``int(0.2 * total)`` files off as validation, so a small class may
    end up entirely on one side. Here each class is shuffled on its own and contributes
    ``round(fraction * n)`` images, at least one when it has two or more (and always
    leaves one for training). The files chosen differ from Keras' for the same seed.
    A class's shuffle depends on the seed, its own files and the name of its folder, so
    adding a class later does not move any image of the other classes between the splits.

    >>> train, valid = split_samples([(Path(f"{i}.png"), i % 2) for i in range(10)])
    >>> len(train), len(valid)
    (8, 2)
    """
    if not 0.0 < validation_split < 1.0:
        raise ValueError(
            f"validation_split={validation_split} must be between 0 and 1 (0.2 keeps 20% for "
            "validation)."
        )
    train: list[Sample] = []
    valid: list[Sample] = []
    for target, paths in _by_class(samples).items():
        shuffled = _seeded_shuffle(paths, seed)
        wanted = math.floor(len(shuffled) * validation_split + 0.5)
        n_valid = min(max(wanted, 1), len(shuffled) - 1)  # >= 1 for validation, >= 1 for training
        valid.extend((path, target) for path in shuffled[:n_valid])
        train.extend((path, target) for path in shuffled[n_valid:])
    return _sorted_samples(train), _sorted_samples(valid)


def _valid_dir(root: Path) -> Path | None:
    """The first of ``valid/``, ``val/``, ``validation/`` that exists in ``root``."""
    return next((root / name for name in VALID_SPLIT_NAMES if (root / name).is_dir()), None)


def _single_folder(root: Path) -> Path:
    """The one folder to split when ``root`` has no train/valid pair, or a layout error."""
    train_dir = root / TRAIN_SPLIT_NAME
    if train_dir.is_dir():
        return train_dir
    if _valid_dir(root) is not None:
        raise DatasetLayoutError(
            f"{root} has a validation folder but no train/ folder. Add {train_dir} with one "
            f"folder per class (expected layout: {_EXPECTED_LAYOUT})."
        )
    return root


def _split_one_folder(
    root: Path, folder: Path, validation_split: float, split_seed: int
) -> tuple[list[str], list[Sample], list[Sample]]:
    classes = find_classes(folder)
    train, valid = split_samples(_scan_samples(folder, classes), validation_split, split_seed)
    print(
        f"{root} has no validation folder: split {folder} into {1 - validation_split:.0%} "
        f"train / {validation_split:.0%} valid per class (validation_split={validation_split}, "
        f"split_seed={split_seed})."
    )
    return classes, train, valid


def _drop_unreadable(datasets: Sequence[ImageFolderDataset], root: Path) -> None:
    """Remove files that fail the quick check and print ONE report naming each of them."""
    problems: list[Problem] = []
    for dataset in datasets:
        kept: list[Sample] = []
        for path, target in dataset.samples:
            problem = _problem_with(path, thorough=False)
            if problem is None:
                kept.append((path, target))
            else:
                problems.append(problem)
        dataset.samples = kept
    if problems:
        lines = [f"  {problem}" for problem in problems]  # the file, what is wrong, the fix
        print(
            f"Skipped {len(problems)} unreadable image(s) (check every file with: "
            f"{_CHECK_COMMAND} {printable_path(root)}):\n" + "\n".join(lines)
        )


def _warn_about_classes_without_images(
    train_ds: ImageFolderDataset, valid_ds: ImageFolderDataset
) -> None:
    """One warning per split that has class folders without images (their labels remain)."""
    consequences = {
        "training": "the model cannot learn them",
        "validation": "their accuracy is never measured",
    }
    checked = (("training", train_ds), ("validation", valid_ds))
    if len(valid_ds) == 0 and valid_ds.root != train_ds.root:
        # An empty valid/ is almost always left over: without it the train folder is split.
        print(
            f"WARNING: {valid_ds.root} has no readable images, so nothing is validated. "
            f"Remove that folder to have {train_ds.root} split into train and valid "
            f"(settings.validation_split), or add images to {valid_ds.root / '<class>'}."
        )
        checked = checked[:1]
    for role, dataset in checked:
        missing = [name for name, count in class_counts(dataset).items() if count == 0]
        if missing:
            print(
                f"WARNING: class(es) {', '.join(missing)} have no {role} images in "
                f"{dataset.root}, so {consequences[role]}. Add images to "
                f"{dataset.root / '<class>'}, or delete the class folders that should not be there."
            )


def build_datasets(
    root: str | os.PathLike[str],
    train_transform: Transform | None,
    eval_transform: Transform | None,
    *,
    train_per_class: int | None = None,
    valid_per_class: int | None = None,
    validation_split: float = 0.2,
    split_seed: int = 123,
    seed: int = 0,
    verify: bool = True,
) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """The (train, valid) datasets of a dataset folder, sharing one class list.

    ``root/train`` is the train split and the first of ``root/valid``, ``root/val``,
    ``root/validation`` the valid split. Without a valid split, the train folder (or
    ``root`` itself when it holds the class folders directly) is split with
    :func:`split_samples`. ``verify=True`` drops files that cannot be read.

    >>> train_ds, valid_ds = build_datasets("data/hymenoptera", None, None)  # doctest: +SKIP
    >>> train_ds.class_to_idx == valid_ds.class_to_idx                       # doctest: +SKIP
    True
    """
    root = Path(root)
    if not root.is_dir():
        problem = _not_a_folder(root)
        raise DatasetLayoutError(f"Dataset folder {root}: {problem.problem}. Fix: {problem.fix}.")
    train_dir, valid_dir = root / TRAIN_SPLIT_NAME, _valid_dir(root)
    if train_dir.is_dir() and valid_dir is not None:
        classes = find_classes(train_dir, valid_dir)
        train_samples = _scan_samples(train_dir, classes)
        valid_samples = _scan_samples(valid_dir, classes)
    else:
        train_dir = valid_dir = _single_folder(root)
        classes, train_samples, valid_samples = _split_one_folder(
            root, train_dir, validation_split, split_seed
        )
    train_ds = ImageFolderDataset(
        train_dir, classes, train_transform, train_per_class, seed, samples=train_samples
    )
    valid_ds = ImageFolderDataset(
        valid_dir, classes, eval_transform, valid_per_class, seed, samples=valid_samples
    )
    if verify:
        _drop_unreadable((train_ds, valid_ds), root)
    _warn_about_classes_without_images(train_ds, valid_ds)
    return train_ds, valid_ds


def make_loaders(
    train_ds: Dataset, valid_ds: Dataset, batch_size: int, num_workers: int = 0, seed: int = 0
) -> dict[str, DataLoader]:
    """``{"train": shuffled seeded loader, "valid": loader in order}``.

    Worker processes start again every epoch and take their seeds from the train loader's
    generator, the one ``fit`` saves in checkpoints: so a run resumed with
    ``fit(resume_from=...)`` draws the same augmentations as one that was never stopped.
    (Workers kept alive between epochs would carry random states no checkpoint holds.)

    >>> loaders = make_loaders(train_ds, valid_ds, batch_size=8)  # doctest: +SKIP
    >>> images, labels = next(iter(loaders["train"]))             # doctest: +SKIP
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1.")
    if len(train_ds) == 0:  # type: ignore[arg-type]
        raise ValueError(
            "The training dataset is empty: there is nothing to train on. Check the dataset "
            f"folder with: {_CHECK_COMMAND} ROOT"
        )
    shared: dict[str, Any] = {
        "batch_size": batch_size,
        "num_workers": num_workers,
        "pin_memory": torch.cuda.is_available(),
    }
    # The generator makes the shuffle order (and worker seeds) repeat for a given seed.
    generator = torch.Generator().manual_seed(seed)
    return {
        "train": DataLoader(train_ds, shuffle=True, generator=generator, **shared),
        "valid": DataLoader(valid_ds, shuffle=False, **shared),
    }


# --------------------------------------------------------------------------- which dataset


def _looks_like_dataset(folder: Path) -> bool:
    """A train split with a class folder, or class folders directly (a "bring your own" set).

    data_scripts installs datasets atomically, so the layout alone tells a complete one.
    """
    if (folder / TRAIN_SPLIT_NAME).is_dir():
        return bool(_visible_subdirs(folder / TRAIN_SPLIT_NAME))
    return _valid_dir(folder) is None and bool(_visible_subdirs(folder))


def _fetch_command(name: str) -> str:
    """The one command that puts dataset ``name`` into the data folder."""
    if name == SYNTHETIC_DATASET:
        return "python -m data_scripts synthetic"
    return f"python -m data_scripts get {name}"


def _chosen_by_settings(dataset: str, data_root: Path) -> Path:
    """The folder ``settings.dataset`` names: a dataset name in data_root, or a path."""
    as_path = Path(dataset).expanduser()
    is_path = as_path.is_absolute() or os.sep in dataset or "/" in dataset or dataset[0] in ".~"
    folder = as_path if is_path else data_root / dataset
    if _looks_like_dataset(folder):
        return folder
    fix = (
        f"point it at a folder laid out as {_EXPECTED_LAYOUT}"
        if is_path
        else f"run: {_fetch_command(dataset)}"
    )
    raise DatasetMissingError(
        f"settings.dataset (COURSE_DATASET) = {dataset!r}, but {folder} is not a dataset "
        f"folder. Either {fix}, or unset COURSE_DATASET to use the lesson's own dataset."
    )


def find_dataset(name: str, settings: Settings | None = None, required: bool = False) -> Path:
    """The folder of the dataset a lesson should use.

    ``settings.dataset`` (``COURSE_DATASET``, "synthetic" in smoke mode) wins. Otherwise
    ``data_root/name`` if it is there; if not, one printed line names the command that
    fetches it and the synthetic set is used, unless ``required`` (then it raises).

    >>> find_dataset("flowers102", get_settings("smoke")).name  # doctest: +SKIP
    'synthetic'
    """
    settings = settings or get_settings()
    if settings.dataset:
        return _chosen_by_settings(settings.dataset, settings.data_root)
    folder = settings.data_root / name
    if _looks_like_dataset(folder):
        return folder
    if required or name == SYNTHETIC_DATASET:
        raise DatasetMissingError(
            f"Dataset {name!r} is not in {folder} and this lesson needs it. "
            f"To get it, run: {_fetch_command(name)}"
        )
    synthetic = settings.data_root / SYNTHETIC_DATASET
    if not _looks_like_dataset(synthetic):
        raise DatasetMissingError(
            f"Neither {folder} nor the offline fallback {synthetic} is present. Run "
            f"{_fetch_command(name)}, or {_fetch_command(SYNTHETIC_DATASET)} for the offline set."
        )
    print(
        f"Dataset {name!r} is not in {folder}: to get it, run `{_fetch_command(name)}`. "
        "Using the synthetic dataset meanwhile."
    )
    return synthetic


#: The datasets the lessons use, in the order lesson 00 lists them.
COURSE_DATASETS: tuple[str, ...] = (SYNTHETIC_DATASET, "hymenoptera", "flowers102")


@dataclass(frozen=True)
class DatasetStatus:
    """Whether one course dataset is on this machine, and how to get it if not."""

    name: str
    folder: Path
    present: bool
    images: int
    fetch_command: str

    def __str__(self) -> str:
        if self.present:
            return f"{self.name:12} present  {self.images:6d} images  {self.folder}"
        return f"{self.name:12} missing  -> {self.fetch_command}"


def dataset_status(
    settings: Settings | None = None, names: Sequence[str] = COURSE_DATASETS
) -> list[DatasetStatus]:
    """Which course datasets are in ``settings.data_root``, with the command for the rest.

    >>> for status in dataset_status(get_settings("smoke")):  # doctest: +SKIP
    ...     print(status)
    """
    settings = settings or get_settings()
    statuses = []
    for name in names:
        folder = settings.data_root / name
        present = _looks_like_dataset(folder)
        images = sum(1 for p in folder.rglob("*") if _has_image_extension(p)) if present else 0
        statuses.append(DatasetStatus(name, folder, present, images, _fetch_command(name)))
    return statuses


def load_label_names(json_path: str | os.PathLike[str], classes: Sequence[str]) -> list[str]:
    """Readable names in class-index order, from a ``{"folder": "name"}`` json map.

    >>> load_label_names("data/flowers102/cat_to_name.json", ["1", "10"])  # doctest: +SKIP
    ['pink primrose', 'globe thistle']
    """
    json_path = Path(json_path)
    try:
        mapping = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Label map {json_path} does not exist: check the path (it sits next to the "
            "train/ folder, e.g. data/flowers102/cat_to_name.json)."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"Label map {json_path} is not valid JSON ({error}). Fix the file, or fetch the "
            "dataset again."
        ) from None
    if not isinstance(mapping, dict):
        raise ValueError(
            f'Label map {json_path} must be a JSON object like {{"1": "pink primrose"}}, '
            f"not a {type(mapping).__name__}."
        )
    # A Mac writes "é" as e + accent (NFD), most editors as one character (NFC): same name.
    by_key = {_comparable(str(key)): value for key, value in mapping.items()}
    not_text = [(key, value) for key, value in mapping.items() if not isinstance(value, str)]
    if not_text:
        key, value = not_text[0]
        raise ValueError(
            f"Label map {json_path} gives {key!r} the name {json.dumps(value)}, which is not "
            f'text. Fix the file: every value must be a name in quotes, like {{"1": "pink '
            'primrose"}.'
        )
    missing = [name for name in classes if _comparable(name) not in by_key]
    if missing:
        print(
            f"WARNING: {json_path} has no name for class folder(s) {', '.join(missing)}; "
            "using the folder name instead."
        )
    names = [by_key.get(_comparable(name), name) for name in classes]
    for name, folders in _shared_by(names, classes).items():
        print(
            f"WARNING: {json_path} names the class folders {', '.join(folders)} all {name!r}, "
            "so their predictions could not be told apart. Fix the file: give each folder "
            "its own name (or merge those folders if they are one class)."
        )
    return names


def _comparable(name: str) -> str:
    """A name as a reader sees it: one Unicode form (NFC), no spaces at either end."""
    return unicodedata.normalize("NFC", name).strip()


def _shared_by(names: Sequence[str], classes: Sequence[str]) -> dict[str, list[str]]:
    """Names given to more than one class folder: {name: [folders]}."""
    folders: dict[str, list[str]] = {}
    for name, folder in zip(names, classes, strict=True):
        folders.setdefault(_comparable(name), []).append(folder)
    return {name: shared for name, shared in folders.items() if len(shared) > 1}


def _look_alike_classes(classes: Sequence[str]) -> list[Problem]:
    """Class folders whose names look the same (Unicode forms, spaces at the ends)."""
    return [
        Problem(
            Path(folders[0]),
            f"the class folders {', '.join(map(repr, folders))} look like one name but are "
            "different folders (a trailing space, or an accent stored two ways), so they "
            "are different classes",
            "rename or merge them so that each class has one folder with one spelling",
        )
        for folders in _shared_by(classes, classes).values()
    ]


def readable_class_names(data_dir: str | os.PathLike[str], classes: Sequence[str]) -> list[str]:
    """Class names in index order: from ``data_dir/cat_to_name.json`` if the dataset has one.

    Numbered folders (flowers102, the synthetic set) get their names from that label map
    (:func:`load_label_names`); folders that are already names (``ants``, ``bees``) stay.

    >>> readable_class_names("data/flowers102", ["1", "10"])  # doctest: +SKIP
    ['pink primrose', 'globe thistle']
    """
    label_map = Path(data_dir) / LABEL_MAP_NAME
    if label_map.is_file():
        return load_label_names(label_map, classes)
    return list(classes)


# --------------------------------------------------------------------------- transforms


def _check_sizes(image_size: int, resize_size: int | None) -> None:
    if resize_size is not None and resize_size < image_size:
        raise ValueError(
            f"resize_size={resize_size} is smaller than image_size={image_size}: the crop "
            f"would not fit. Use resize_size >= {image_size} (e.g. {round(image_size / 0.875)})."
        )


class LimitAspectRatio:
    """Crop the long side of a very wide or tall image to ``max_ratio`` x its short side.

    ``Resize(size)`` scales the SHORT side to ``size``: a 1 x 5,000 px banner would become
    256 x 1,280,000 px (about 1 GB) before the centre crop throws nearly all of it away.
    The crops after the resize (with a rotation of up to 45 degrees) only keep pixels
    within ``size`` of the centre, so cutting the long side to ``max_ratio`` times the short
    one first changes nothing they keep. Images up to 8:1 (every ordinary photo, panoramas
    included) are passed through untouched, so the pipeline equals plain torchvision's.

    >>> LimitAspectRatio()(Image.new("RGB", (1, 5000))).size
    (1, 8)
    """

    def __init__(self, max_ratio: float = 8.0) -> None:
        self.max_ratio = max_ratio

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        longest = math.ceil(self.max_ratio * min(width, height))
        if max(width, height) <= longest:
            return image
        left, top = (width - min(width, longest)) // 2, (height - min(height, longest)) // 2
        return image.crop((left, top, left + min(width, longest), top + min(height, longest)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_ratio={self.max_ratio})"


def _to_normalized_tensor(mean: Sequence[float], std: Sequence[float]) -> list[nn.Module]:
    return [transforms.ToTensor(), transforms.Normalize(list(mean), list(std))]


def train_transforms(
    image_size: int,
    resize_size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    *,
    vertical_flip: bool = True,
) -> transforms.Compose:
    """The course's augmentation pipeline for training images.

    With ``resize_size``: Resize(resize_size) -> RandomRotation(45) -> CenterCrop(image_size)
    (after :class:`LimitAspectRatio`, so a 1 x 5,000 px image costs no more than a photo),
    where the crop cuts away most of the black corners the rotation adds. Without it:
    RandomRotation(45) -> RandomResizedCrop(image_size), the ImageNet recipe for inputs of
    any size. Then random flips, ColorJitter, RandomGrayscale(p=0.025), ToTensor, Normalize.
    The vertical flip suits pictures with no "up" (flowers seen from above, cells, satellite
    tiles); pass ``vertical_flip=False`` for animals, scenes, text or digits.

    >>> train_transforms(64, 72)(Image.new("RGB", (100, 80))).shape
    torch.Size([3, 64, 64])
    """
    _check_sizes(image_size, resize_size)
    if resize_size is None:
        geometry = [transforms.RandomRotation(45), transforms.RandomResizedCrop(image_size)]
    else:
        geometry = [
            LimitAspectRatio(),
            transforms.Resize(resize_size),
            transforms.RandomRotation(45),
            transforms.CenterCrop(image_size),
        ]
    flips = [transforms.RandomHorizontalFlip(p=0.5)]
    if vertical_flip:
        flips.append(transforms.RandomVerticalFlip(p=0.5))
    colour = [
        transforms.ColorJitter(brightness=0.2, contrast=0.1, saturation=0.1, hue=0.1),
        transforms.RandomGrayscale(p=0.025),
    ]
    return transforms.Compose(geometry + flips + colour + _to_normalized_tensor(mean, std))


def eval_transforms(
    image_size: int,
    resize_size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> transforms.Compose:
    """Deterministic preprocessing for validation and inference.

    (:class:`LimitAspectRatio`) -> Resize(resize_size) -> CenterCrop(image_size) -> ToTensor
    -> Normalize. ``resize_size`` defaults to ``image_size / 0.875`` (256 for 224), the
    usual ImageNet ratio.

    >>> eval_transforms(64, 72)(Image.new("RGB", (100, 80))).shape
    torch.Size([3, 64, 64])
    """
    resize_size = resize_size if resize_size is not None else round(image_size / 0.875)
    _check_sizes(image_size, resize_size)
    geometry = [
        LimitAspectRatio(),
        transforms.Resize(resize_size),
        transforms.CenterCrop(image_size),
    ]
    return transforms.Compose(geometry + _to_normalized_tensor(mean, std))


def weights_transforms(weights: WeightsEnum | str) -> nn.Module:
    """The preprocessing a torchvision weights preset was trained with (no download needed).

    >>> weights_transforms("ResNet18_Weights.DEFAULT").crop_size
    [224]
    """
    if isinstance(weights, str):
        try:
            weights = models.get_weight(weights)
        except (ValueError, KeyError) as error:
            raise ValueError(
                f"Unknown weights {weights!r} ({error}). Use a name like "
                "'ResNet18_Weights.DEFAULT' or a member such as "
                "torchvision.models.ResNet18_Weights.DEFAULT."
            ) from None
    return weights.transforms()


def normalization_of(transform: Any) -> MeanStd | None:
    """The (mean, std) a transform normalizes with, found inside Composes and presets.

    >>> normalization_of(eval_transforms(64, 72))
    ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    """
    mean, std = getattr(transform, "mean", None), getattr(transform, "std", None)
    if mean is not None and std is not None:  # Normalize (v1, v2) and weights presets
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    children = getattr(transform, "transforms", None)  # Compose (v1, v2)
    if children is None and isinstance(transform, nn.Sequential):
        children = list(transform)
    for child in children or ():
        found = normalization_of(child)
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------- statistics


def _channel_pixels(dataset_or_loader: Dataset | DataLoader) -> Iterator[torch.Tensor]:
    """Every image batch as a (channels, pixels) float64 tensor."""
    batches = (
        dataset_or_loader
        if isinstance(dataset_or_loader, DataLoader)
        # batch_size=None yields single samples, so images of different sizes are fine.
        else DataLoader(dataset_or_loader, batch_size=None)  # type: ignore[arg-type]
    )
    for batch in batches:
        images = batch[0] if isinstance(batch, list | tuple) else batch
        if not isinstance(images, torch.Tensor):
            raise TypeError(
                f"compute_mean_std needs image tensors but got {type(images).__name__}: give "
                "the dataset a transform that ends with transforms.ToTensor()."
            )
        images = images.unsqueeze(0) if images.dim() == 3 else images
        yield images.transpose(0, 1).reshape(images.shape[1], -1).to(torch.float64)


def compute_mean_std(dataset_or_loader: Dataset | DataLoader) -> MeanStd:
    """Per-channel mean and std over every pixel (not a mean of batch means).

    Give it images as tensors without Normalize (e.g. Resize + CenterCrop + ToTensor).
    Sums are streamed in float64, so any dataset size fits in memory.

    >>> compute_mean_std([(torch.ones(3, 2, 2), 0)])
    ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    """
    sums: list[torch.Tensor] = []
    squares: list[torch.Tensor] = []
    pixels = 0
    for values in _channel_pixels(dataset_or_loader):
        sums.append(values.sum(1))
        squares.append(values.square().sum(1))
        pixels += values.shape[1]
    if pixels == 0:
        raise ValueError("compute_mean_std got an empty dataset: there are no images to measure.")
    mean = torch.stack(sums).sum(0) / pixels
    std = (torch.stack(squares).sum(0) / pixels - mean.square()).clamp(min=0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _classes_and_targets(dataset: Dataset) -> tuple[list[str], list[int]]:
    """The class names and the label of every sample, through Subsets and ConcatDatasets."""
    if isinstance(dataset, Subset):
        classes, targets = _classes_and_targets(dataset.dataset)
        return classes, [targets[index] for index in dataset.indices]
    if isinstance(dataset, ConcatDataset):
        parts = [_classes_and_targets(part) for part in dataset.datasets]
        classes = parts[0][0] if parts else []
        if any(part_classes != classes for part_classes, _ in parts):
            raise ValueError(
                "class_counts got a ConcatDataset whose parts have different class lists, so "
                "label 0 does not mean the same class everywhere. Build every part with the "
                "same classes (build_datasets shares them between splits)."
            )
        return classes, [target for _, targets in parts for target in targets]
    classes, targets = getattr(dataset, "classes", None), getattr(dataset, "targets", None)
    if classes is None or targets is None:
        raise TypeError(
            f"class_counts needs a dataset with .classes and .targets (an ImageFolderDataset "
            f"or torchvision ImageFolder), or a Subset or ConcatDataset of one; got "
            f"{type(dataset).__name__}."
        )
    return list(classes), [int(target) for target in targets]


def class_counts(dataset: Dataset) -> dict[str, int]:
    """Images per class, in class order, classes without images included (as 0).

    Works for datasets with ``.classes`` and ``.targets``, and for a ``Subset`` or
    ``ConcatDataset`` of them (nested too).

    >>> class_counts(train_ds)  # doctest: +SKIP
    {'ants': 124, 'bees': 121}
    """
    classes, targets = _classes_and_targets(dataset)
    counts = dict.fromkeys(classes, 0)
    for target in targets:
        counts[classes[target]] += 1
    return counts


# --------------------------------------------------------------------------- check


@dataclass
class DatasetReport:
    """What :func:`check_dataset` found: image counts per split and class, and problems.

    >>> print(check_dataset("data/synthetic"))  # doctest: +SKIP
    """

    root: Path
    #: Split folder names found ("all" when the root holds class folders directly).
    splits: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    #: counts[split][class] = readable images.
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def _table(self) -> list[str]:
        width = max([len("class"), *(len(printable_path(name)) for name in self.classes)])
        columns = [max(len(split), 5) for split in self.splits]
        header = "  ".join(
            [
                f"{'class':<{width}}",
                *(f"{s:>{w}}" for s, w in zip(self.splits, columns, strict=True)),
            ]
        )
        rows = [header, "-" * len(header)]
        for name in [*self.classes, "total"]:
            cells = [
                sum(self.counts[s].values()) if name == "total" else self.counts[s].get(name, 0)
                for s in self.splits
            ]
            rows.append(
                "  ".join(
                    [
                        f"{printable_path(name):<{width}}",
                        *(f"{c:>{w}}" for c, w in zip(cells, columns, strict=True)),
                    ]
                )
            )
        return rows

    def __str__(self) -> str:
        lines = [f"Dataset {printable_path(self.root)}"]
        if self.splits:
            lines += self._table()
        if self.ok:
            lines.append("No problems found.")
            return "\n".join(lines)
        lines.append(f"{len(self.problems)} problem(s):")
        for problem in self.problems:
            lines += [
                printable_path(f"- {problem.path}: {problem.problem}"),
                f"    fix: {printable_path(problem.fix)}",
            ]
        return "\n".join(lines)


def _not_a_folder(root: Path) -> Problem:
    """Why ``root``, which is not a folder, cannot be a dataset."""
    if root.exists():
        return Problem(
            root,
            "it is a file, not a folder",
            "pass the dataset folder, the one that holds train/ (and valid/); "
            "if the file is an archive, extract it first",
        )
    return Problem(
        root,
        "the folder does not exist",
        "check the path, or fetch a course dataset: python -m data_scripts get NAME",
    )


def _split_folders(root: Path) -> tuple[dict[str, Path], list[Problem]]:
    """The split folders to check (train, the valid split, test), plus layout problems."""
    valid_dirs = [root / name for name in VALID_SPLIT_NAMES if (root / name).is_dir()]
    problems = [
        Problem(
            extra,
            f"a second validation folder; build_datasets uses {valid_dirs[0].name}/ and ignores it",
            f"merge it into {valid_dirs[0]} or delete it",
        )
        for extra in valid_dirs[1:]
    ]
    candidates = [root / TRAIN_SPLIT_NAME, *valid_dirs[:1], root / "test"]
    splits = {folder.name: folder for folder in candidates if folder.is_dir()}
    if valid_dirs and TRAIN_SPLIT_NAME not in splits:
        problems.append(
            Problem(
                root / TRAIN_SPLIT_NAME,
                "there is no train/ folder",
                "add one folder per class to it",
            )
        )
    if not splits and _visible_subdirs(root):
        splits = {"all": root}  # one folder of classes: build_datasets splits it
    if not splits:
        problems.append(
            Problem(root, "no class folders found", f"use the layout {_EXPECTED_LAYOUT}")
        )
    return splits, problems


def _check_class_folder(folder: Path, tree: Path) -> tuple[int, list[Problem]]:
    """Readable images in one class folder of the split ``tree``, and the problems of its files."""
    walk = walk_folder(folder, tree=tree)
    problems = _unused(walk)
    readable = 0
    for path in walk.files:
        if path.suffix.lower() in _UNREADABLE_PHOTO_FORMATS:
            continue  # in _unused, with how to convert it
        if not _has_image_extension(path):
            problems.append(
                Problem(
                    path,
                    f"{path.suffix or 'no extension'} is not an image extension, so it is ignored",
                    f"move it out of the class folder (images end in {', '.join(sorted(IMAGE_EXTENSIONS))})",
                )
            )
            continue
        problem = _problem_with(path, thorough=True)
        if problem is None:
            readable += 1
        else:
            problems.append(problem)
    if readable == 0:
        problems.append(
            Problem(
                folder,
                "empty class folder (no readable images)",
                "add images, or delete the folder (an empty class still gets a label and an output)",
            )
        )
    return readable, problems


def _check_split(split_dir: Path, classes: Sequence[str]) -> tuple[dict[str, int], list[Problem]]:
    problems = [
        Problem(path, "an image outside any class folder is ignored", "move it into a class folder")
        for path in split_dir.iterdir()
        if path.is_file() and not is_hidden(path) and _has_image_extension(path)
    ]
    counts = dict.fromkeys(classes, 0)
    for class_dir in _visible_subdirs(split_dir):
        counts[class_dir.name], class_problems = _check_class_folder(class_dir, split_dir)
        problems += class_problems
    return counts, problems


def _class_mismatches(splits: dict[str, Path]) -> list[Problem]:
    """Classes in train/ without a folder in the valid split, and the other way round."""
    valid_name = next((name for name in VALID_SPLIT_NAMES if name in splits), None)
    if TRAIN_SPLIT_NAME not in splits or valid_name is None:
        return []
    train_dir, valid_dir = splits[TRAIN_SPLIT_NAME], splits[valid_name]
    in_train = {d.name for d in _visible_subdirs(train_dir)}
    in_valid = {d.name for d in _visible_subdirs(valid_dir)}
    if not in_valid:
        return [
            Problem(
                valid_dir,
                f"{valid_name}/ has no class folders, so nothing is validated",
                f"delete the empty {valid_dir} so that build_datasets splits {train_dir.name}/ "
                f"into train and valid, or add one folder of images per class to it",
            )
        ]
    return [
        Problem(
            valid_dir / name,
            f"class {name!r} is in {train_dir.name}/ but not in {valid_name}/, so it is never validated",
            f"add a few of its images to {valid_dir / name}",
        )
        for name in sorted(in_train - in_valid)
    ] + [
        Problem(
            train_dir / name,
            f"class {name!r} is in {valid_name}/ but not in {train_dir.name}/, so the model never learns it",
            f"add training images to {train_dir / name}, or delete {valid_dir / name}",
        )
        for name in sorted(in_valid - in_train)
    ]


def check_dataset(root: str | os.PathLike[str]) -> DatasetReport:
    """Every problem of a dataset folder in one pass (decodes every image, so it takes a while).

    >>> report = check_dataset("data/synthetic")  # doctest: +SKIP
    >>> report.ok, report.splits                  # doctest: +SKIP
    (True, ['train', 'valid'])
    """
    root = Path(root)
    report = DatasetReport(root)
    if not root.is_dir():
        report.problems.append(_not_a_folder(root))
        return report
    splits, report.problems = _split_folders(root)
    if not splits:
        return report
    report.splits = list(splits)
    report.classes = sorted(
        {d.name for folder in splits.values() for d in _visible_subdirs(folder)}
    )
    report.problems += [
        dataclasses.replace(problem, path=root / problem.path)
        for problem in _look_alike_classes(report.classes)
    ]
    for name, folder in splits.items():
        report.counts[name], problems = _check_split(folder, report.classes)
        report.problems += problems
    report.problems += _class_mismatches(splits)
    return report
