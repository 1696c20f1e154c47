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

Reading and checking folders (torch-free) is :mod:`coursekit.folders`'s job; this module
imports only it and :mod:`coursekit.config` from coursekit.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, get_worker_info
from torchvision import transforms

from coursekit.config import IMAGENET_MEAN, IMAGENET_STD, Settings, get_settings
from coursekit.folders import (
    EXPECTED_LAYOUT,
    LABEL_MAP_NAME,
    TRAIN_SPLIT_NAME,
    VALID_SPLIT_NAMES,
    Problem,
    _comparable,
    _look_alike_classes,
    _not_a_folder,
    _problem_with,
    _shared_by,
    _unused,
    has_image_extension,
    load_image,
    printable_path,
    visible_subdirs,
    walk_folder,
)

SYNTHETIC_DATASET = "synthetic"
_CHECK_COMMAND = "python -m coursekit check-data"

Sample = tuple[Path, int]
Transform = Callable[[Image.Image], Any]
MeanStd = tuple[tuple[float, ...], tuple[float, ...]]


class DatasetLayoutError(ValueError):
    """A dataset folder that does not have the ImageFolder layout."""


class DatasetMissingError(FileNotFoundError):
    """A dataset that is not on disk; the message names the command that fetches it."""


# --------------------------------------------------------------------------- datasets


def find_classes(*split_dirs: str | os.PathLike[str]) -> list[str]:
    """The sorted union of the class folders of all splits: ONE mapping for every split.

    >>> find_classes("data/hymenoptera/train", "data/hymenoptera/val")  # doctest: +SKIP
    ['ants', 'bees']
    """
    folders = [Path(folder) for folder in split_dirs]
    classes = sorted({sub.name for folder in folders for sub in visible_subdirs(folder)})
    for problem in _look_alike_classes(classes):
        print(f"WARNING: {printable_path(problem.problem)}. Fix: {problem.fix}.")
    if not classes:
        searched = ", ".join(f"{f}{'' if f.is_dir() else ' (does not exist)'}" for f in folders)
        raise DatasetLayoutError(
            f"No class folders found in {searched or 'no folder given'}. "
            f"Expected the layout {EXPECTED_LAYOUT}."
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

    The first steps of a ``Compose`` that depend on the image alone (LimitAspectRatio,
    Resize, CenterCrop: everything of :func:`eval_transforms` before ToTensor, the resize of
    :func:`train_transforms`) run once per photo: their result is kept in memory, so every
    later epoch starts from it with the very same pixels and random draws. The memory is
    ``image_cache_mib`` per process (None: ``settings.image_cache_mib``; 0: no cache).

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
        image_cache_mib: int | None = None,
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
        if image_cache_mib is None:
            image_cache_mib = get_settings().image_cache_mib
        if image_cache_mib < 0:
            raise ValueError(f"image_cache_mib={image_cache_mib} must be at least 0 (0: no cache).")
        self._cache = _ImageCache(image_cache_mib * 2**20)

    @property
    def targets(self) -> list[int]:
        """The class index of every sample, in sample order."""
        return [target for _, target in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        fixed, rest = _fixed_leading_steps(self.transform)
        if not fixed:
            return _apply(rest, self._load(path)), target
        key = (path, self._file_version(path))
        image = self._cache.get(key, repr(fixed))
        if image is None:
            image = _apply(fixed, self._load(path))
            self._cache.add(key, image)
        # A copy: a step of the rest (one of the lesson's own, say) may draw on its input.
        return _apply(rest, image.copy()), target

    def _load(self, path: Path) -> Image.Image:
        try:
            return load_image(path)
        except FileNotFoundError:
            raise self._gone(path) from None

    def _file_version(self, path: Path) -> tuple[int, int]:
        """Modification time and size: a file replaced since it was cached is read again."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise self._gone(path) from None
        return stat.st_mtime_ns, stat.st_size

    def _gone(self, path: Path) -> FileNotFoundError:
        return FileNotFoundError(
            f"{printable_path(path)} was in {printable_path(self.root)} when this dataset was "
            "built, but it is gone now: the folder changed during training (it was "
            "replaced, e.g. by `python -m data_scripts synthetic --force` or a new "
            "download, or files were moved). Fix: run the cell that builds the datasets "
            "again, then train again."
        )

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
            f"folder per class (expected layout: {EXPECTED_LAYOUT})."
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
    image_cache_mib: int | None = None,
) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """The (train, valid) datasets of a dataset folder, sharing one class list.

    ``root/train`` is the train split and the first of ``root/valid``, ``root/val``,
    ``root/validation`` the valid split. Without a valid split, the train folder (or
    ``root`` itself when it holds the class folders directly) is split with
    :func:`split_samples`. ``verify=True`` drops files that cannot be read.
    ``image_cache_mib``: memory for the resized photos (see :class:`ImageFolderDataset`).

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
        train_dir, classes, train_transform, train_per_class, seed, train_samples, image_cache_mib
    )
    valid_ds = ImageFolderDataset(
        valid_dir, classes, eval_transform, valid_per_class, seed, valid_samples, image_cache_mib
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
        return bool(visible_subdirs(folder / TRAIN_SPLIT_NAME))
    return _valid_dir(folder) is None and bool(visible_subdirs(folder))


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
        f"point it at a folder laid out as {EXPECTED_LAYOUT}"
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
        images = sum(1 for p in folder.rglob("*") if has_image_extension(p)) if present else 0
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


# --------------------------------------------------------------------------- image cache

#: Steps whose output depends on the image alone: no random draw, no state. Exact types:
#: a subclass may add randomness.
_FIXED_STEPS: tuple[type, ...] = (LimitAspectRatio, transforms.Resize, transforms.CenterCrop)
#: Of those, the ones that bound the image's size: a full-size decoded photo (2.4 MB at
#: 0.6 MP, 12 MB at 3 MP) is not worth keeping, its decoding is only part of the cost.
_SHRINKING_STEPS: tuple[type, ...] = (transforms.Resize, transforms.CenterCrop)


def _fixed_leading_steps(transform: Transform | None) -> tuple[list[Transform], list[Transform]]:
    """A Compose's leading steps that depend on the image alone (cached), and the others.

    >>> fixed, rest = _fixed_leading_steps(eval_transforms(64, 72))
    >>> [type(step).__name__ for step in fixed], len(rest)
    (['LimitAspectRatio', 'Resize', 'CenterCrop'], 2)
    """
    if type(transform) is not transforms.Compose:  # another callable: run it as it is
        return [], [transform] if transform is not None else []
    steps = list(transform.transforms)
    count = 0
    while count < len(steps) and type(steps[count]) in _FIXED_STEPS:
        count += 1
    if not any(type(step) in _SHRINKING_STEPS for step in steps[:count]):
        return [], steps
    return steps[:count], steps[count:]


def _apply(steps: Sequence[Transform], image: Any) -> Any:
    """``Compose(steps)(image)``, the same loop as torchvision's.

    >>> _apply([LimitAspectRatio()], Image.new("RGB", (1, 20))).size
    (1, 8)
    """
    for step in steps:
        image = step(image)
    return image


def _image_bytes(image: Image.Image) -> int:
    """The memory an image holds: Pillow keeps each pixel of RGB (and any multi-band mode)
    in 4 bytes, plus metadata such as an ICC profile.

    >>> _image_bytes(Image.new("RGB", (10, 10)))
    400
    """
    metadata = sum(len(value) for value in image.info.values() if isinstance(value, bytes))
    return 4 * image.width * image.height + metadata


class _ImageCache:
    """Images by key, within ``budget`` bytes for ALL the caches of this process together.

    First come, first kept, nothing evicted: an epoch visits the images in a random order,
    so keeping the first ones that fit hits as often as any eviction rule would. The images
    are valid for one sequence of steps (``steps``, their repr): other steps clear them.
    Pickling (a ``spawn``-ed worker, ``copy.deepcopy``) gives an empty cache, same budget.

    >>> cache = _ImageCache(budget=1000); cache.add("a", Image.new("RGB", (10, 10)))
    >>> cache.get("a", steps="") is not None, cache.bytes
    (True, 400)
    """

    #: The bytes held by every cache in this process (a forked worker starts with a copy).
    process_bytes = 0

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.images: dict[Any, Image.Image] = {}
        self.bytes = 0
        self.steps = ""

    def get(self, key: Any, steps: str) -> Image.Image | None:
        if steps != self.steps:  # the dataset's transform was changed since
            self.clear()
            self.steps = steps
        return self.images.get(key)

    def add(self, key: Any, image: Image.Image) -> None:
        # A worker of make_loaders lives one epoch, which needs each image once: what it
        # added would be thrown away unused. It reads what it inherited from the main process.
        if get_worker_info() is not None:
            return
        size = _image_bytes(image)
        if key in self.images or _ImageCache.process_bytes + size > self.budget:
            return
        self.images[key] = image
        self.bytes += size
        _ImageCache.process_bytes += size

    def clear(self) -> None:
        _ImageCache.process_bytes -= self.bytes
        self.images, self.bytes = {}, 0

    def __del__(self) -> None:  # a dataset that is gone gives its share of the budget back
        self.clear()

    def __reduce__(self) -> tuple[type, tuple[int]]:
        return type(self), (self.budget,)


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


