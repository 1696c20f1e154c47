"""Dataset folders on disk: what is an image, the one walk, reading one image, the one check.

Everything here needs only the standard library, Pillow and numpy, never torch, so that
``python -m data_scripts get/verify/subset`` start at once and still count, read and
check exactly what the lessons' loaders (:mod:`coursekit.data`) will use:

    >>> report = check_dataset("data/synthetic")  # doctest: +SKIP
    >>> report.ok, report.splits                  # doctest: +SKIP
    (True, ['train', 'valid'])

This module imports nothing of coursekit.
"""

from __future__ import annotations

import dataclasses
import os
import unicodedata
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: File extensions read as images (compared in lower case).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
#: Names of the validation split, in the order they are looked for.
VALID_SPLIT_NAMES: tuple[str, ...] = ("valid", "val", "validation")
TRAIN_SPLIT_NAME = "train"
#: The label map a dataset may keep next to its splits: ``{"folder": "readable name"}``.
LABEL_MAP_NAME = "cat_to_name.json"
#: Names that operating systems and tools drop into folders; never classes or images.
_SYSTEM_NAMES = frozenset({".ipynb_checkpoints", ".DS_Store", "Thumbs.db", "desktop.ini"})
EXPECTED_LAYOUT = (
    "ROOT/train/<class>/image.jpg (one folder per class, optional ROOT/valid/<class>/...)"
)



class UnreadableImageError(ValueError):
    """An image file that cannot be decoded; the message names the file and the fix."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        # DataLoader workers rebuild exceptions from their message alone, so ``path``
        # must stay optional.
        super().__init__(message)
        self.path = path


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


def has_image_extension(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def visible_subdirs(folder: Path) -> list[Path]:
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
        return [path for path in self.files if has_image_extension(path)]

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
    files = walk_folder(root).images
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


# --------------------------------------------------------------------------- tables


def format_table(headers: list[str], rows: list[list[str]], numeric_columns: set[int]) -> str:
    """The course's one fixed-width text table: a header, a rule, the rows.

    Columns in ``numeric_columns`` (by index) are right-aligned, the others left-aligned.

    >>> print(format_table(["class", "train"], [["ants", "124"]], numeric_columns={1}))
    class  train
    -----  -----
    ants     124
    """
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i in numeric_columns else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


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
    #: Worth knowing, but the folder is usable (``ok`` stays True).
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing stops the folder from being used (warnings allowed)."""
        return not self.problems

    @property
    def total_images(self) -> int:
        """Readable images over all splits and classes."""
        return sum(sum(per_class.values()) for per_class in self.counts.values())

    def table(self) -> str:
        """Classes down, splits across, readable images in the cells, a total row last.

        >>> print(DatasetReport(Path("d"), ["train"], ["a"], {"train": {"a": 3}}).table())
        class  train
        -----  -----
        a          3
        total      3
        """
        rows = [
            [printable_path(name), *(str(self.counts[s].get(name, 0)) for s in self.splits)]
            for name in self.classes
        ]
        rows.append(["total", *(str(sum(self.counts[s].values())) for s in self.splits)])
        numeric = set(range(1, len(self.splits) + 1))
        return format_table(["class", *self.splits], rows, numeric_columns=numeric)

    def __str__(self) -> str:
        lines = [f"Dataset {printable_path(self.root)}"]
        if self.splits:
            lines.append(self.table())
        lines += [f"warning: {warning}" for warning in self.warnings]
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


def split_folders(root: Path) -> tuple[dict[str, Path], list[Problem]]:
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
    if not splits and visible_subdirs(root):
        splits = {"all": root}  # one folder of classes: build_datasets splits it
    if not splits:
        problems.append(
            Problem(root, "no class folders found", f"use the layout {EXPECTED_LAYOUT}")
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
        if not has_image_extension(path):
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
        if path.is_file() and not is_hidden(path) and has_image_extension(path)
    ]
    counts = dict.fromkeys(classes, 0)
    for class_dir in visible_subdirs(split_dir):
        counts[class_dir.name], class_problems = _check_class_folder(class_dir, split_dir)
        problems += class_problems
    return counts, problems


def _class_mismatches(splits: dict[str, Path]) -> list[Problem]:
    """Classes in train/ without a folder in the valid split, and the other way round."""
    valid_name = next((name for name in VALID_SPLIT_NAMES if name in splits), None)
    if TRAIN_SPLIT_NAME not in splits or valid_name is None:
        return []
    train_dir, valid_dir = splits[TRAIN_SPLIT_NAME], splits[valid_name]
    in_train = {d.name for d in visible_subdirs(train_dir)}
    in_valid = {d.name for d in visible_subdirs(valid_dir)}
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
    splits, report.problems = split_folders(root)
    if not splits:
        return report
    report.splits = list(splits)
    report.classes = sorted(
        {d.name for folder in splits.values() for d in visible_subdirs(folder)}
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
