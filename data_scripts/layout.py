"""Check that a dataset folder has the expected layout, and count its images.

The same check guards ``get --from`` (before anything is installed) and ``verify``:

    >>> report = check_layout(Path("data/hymenoptera"), dataset_spec("hymenoptera"))  # doctest: +SKIP
    >>> report.ok, report.counts["train"]["ants"]  # doctest: +SKIP
    (True, 123)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from coursekit.data import FolderWalk, printable_path, walk_folder
from data_scripts.errors import DataScriptError, LayoutError
from data_scripts.files import LABEL_MAP_FILE, image_files, resolve_data_root, visible_dirs
from data_scripts.registry import DATASET_NAMES, DatasetSpec, dataset_spec

#: Key of the single "split" of a folder whose class folders sit directly inside it.
FLAT = "."
#: How many wrapper folders (like ``hymenoptera_data/``) an archive may put around the data.
MAX_WRAPPER_DEPTH = 3


@dataclass
class LayoutReport:
    """Image counts per split and class, and every problem found, in one pass."""

    root: Path
    #: split -> class -> number of images.
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: What makes the folder unusable as the expected dataset.
    problems: list[str] = field(default_factory=list)
    #: Worth knowing, but the folder is usable.
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing stops the folder from being used (warnings allowed)."""
        return not self.problems

    @property
    def total_images(self) -> int:
        """Images over all splits and classes."""
        return sum(sum(per_class.values()) for per_class in self.counts.values())

    def raise_for_problems(
        self, what: str, spec: DatasetSpec | None, untouched: Path | None
    ) -> None:
        """Raise ``LayoutError`` listing every problem of ``what`` (an archive or folder).

        >>> report.raise_for_problems("the archive x.zip", spec, untouched=target)  # doctest: +SKIP
        """
        if self.ok:
            return
        expected = f" Expected {spec.describe_layout()}." if spec else ""
        kept = f" Nothing was changed in {untouched}." if untouched else ""
        raise LayoutError(
            f"{what} does not have the expected layout: {'; '.join(self.problems)}.{expected}{kept}"
        )

    def format_table(self) -> str:
        """A class-by-split table of image counts with a total row, for ``verify``.

        >>> print(report.format_table())  # doctest: +SKIP
        class  train  val
        ants     123   70
        """
        splits = list(self.counts)
        classes = sorted({c for per_class in self.counts.values() for c in per_class}, key=_natural)
        header = ["class", *(split_label(s) for s in splits)]
        rows = [[c, *(str(self.counts[s].get(c, 0)) for s in splits)] for c in classes]
        rows.append(["total", *(str(sum(self.counts[s].values())) for s in splits)])
        table = [header, *rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        # The class column is left-aligned, the count columns right-aligned.
        lines = [
            "  ".join(
                [row[0].ljust(widths[0])]
                + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
            )
            for row in table
        ]
        return "\n".join(lines)


def split_label(split: str) -> str:
    """How a split is shown: its name, or "images" for a folder without splits.

    >>> split_label("train"), split_label(FLAT)
    ('train', 'images')
    """
    return "images" if split == FLAT else split


def _natural(name: str) -> tuple[int, int | str]:
    """Sort "2" before "10" in tables (the folders themselves keep their string order)."""
    return (0, int(name)) if name.isdigit() else (1, name)


def find_splits(root: Path) -> dict[str, Path]:
    """The split folders of ``root``: sub-folders that hold class folders.

    A folder whose sub-folders hold images directly (one flat ImageFolder) is a single
    split named ``FLAT``.

    >>> sorted(find_splits(Path("data/hymenoptera")))  # doctest: +SKIP
    ['train', 'val']
    """
    children = visible_dirs(root)
    splits = {child.name: child for child in children if visible_dirs(child)}
    if splits:
        return splits
    if any(image_files(child) for child in children):
        return {FLAT: root}
    return {}


def walk_classes(root: Path) -> dict[str, dict[str, FolderWalk]]:
    """The walk of every class folder of every split of ``root`` (see ``find_splits``).

    coursekit's own walk (``coursekit.data.walk_folder``): ``verify`` counts exactly the
    files ``check-data`` and the lessons use, and skips the same linked folders.

    >>> walk_classes(Path("data/hymenoptera"))["val"]["ants"].loops  # doctest: +SKIP
    []
    """
    return {
        split: {cls.name: walk_folder(cls, tree=folder) for cls in visible_dirs(folder)}
        for split, folder in find_splits(root).items()
    }


def count_images(root: Path) -> dict[str, dict[str, int]]:
    """Images per class for every split of ``root`` (see ``find_splits``).

    >>> count_images(Path("data/hymenoptera"))["val"]  # doctest: +SKIP
    {'ants': 70, 'bees': 83}
    """
    return {
        split: {name: len(walk.images) for name, walk in walks.items()}
        for split, walks in walk_classes(root).items()
    }


def check_layout(
    root: Path, spec: DatasetSpec | None = None, label_map: Path | None = None
) -> LayoutReport:
    """Every problem of the dataset folder ``root``: against ``spec``, or generic checks.

    ``label_map`` is where the dataset's ``cat_to_name.json`` is (default: in ``root``).

    >>> check_layout(Path("data/synthetic"), dataset_spec("synthetic")).ok  # doctest: +SKIP
    True
    """
    report = LayoutReport(root=root)
    if not root.is_dir():
        report.problems.append(f"{root} is not a folder")
        return report
    walks = walk_classes(root)
    report.counts = {
        split: {name: len(walk.images) for name, walk in per_class.items()}
        for split, per_class in walks.items()
    }
    report.problems += [
        printable_path(f"{problem.path}: {problem.problem} (fix: {problem.fix})")
        for per_class in walks.values()
        for walk in per_class.values()
        for problem in walk.loop_problems()
    ]
    if spec is None:
        _check_generic(report)
    else:
        _check_against_spec(report, spec, label_map or root / LABEL_MAP_FILE)
    return report


def _check_generic(report: LayoutReport) -> None:
    if not report.counts:
        report.problems.append("no class folders with images were found")
        return
    all_classes = {c for per_class in report.counts.values() for c in per_class}
    for split, per_class in report.counts.items():
        where = "" if split == FLAT else f"{split}/"
        report.problems.extend(f"{where}{c} has no images" for c, n in per_class.items() if n == 0)
        missing = sorted(all_classes - set(per_class), key=_natural)
        if missing:
            report.warnings.append(f"{split} has no folder for class(es) {', '.join(missing)}")


def _check_against_spec(report: LayoutReport, spec: DatasetSpec, label_map: Path) -> None:
    for split in spec.splits:
        per_class = report.counts.get(split)
        if per_class is None:
            report.problems.append(f"split folder {split}/ is missing")
            continue
        missing = [c for c in spec.classes if c not in per_class]
        empty = [c for c in spec.classes if per_class.get(c) == 0]
        if missing:
            report.problems.append(f"{split}/ lacks class folder(s) {_shorten(missing)}")
        if empty:
            report.problems.append(f"{split}/ has no images in {_shorten(empty)}")
        extra = sorted(set(per_class) - set(spec.classes), key=_natural)
        if extra:
            report.warnings.append(f"{split}/ has unexpected folder(s) {_shorten(extra)}")
    if spec.needs_label_map:
        _check_label_map(report, spec, label_map)


def _check_label_map(report: LayoutReport, spec: DatasetSpec, path: Path) -> None:
    if not path.is_file():
        report.problems.append(
            f"{LABEL_MAP_FILE} is missing (looked for {path}; put it next to the train/ folder)"
        )
        return
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        report.problems.append(f"{LABEL_MAP_FILE} is not valid JSON ({error})")
        return
    unnamed = [c for c in spec.classes if c not in mapping]
    if unnamed:
        report.problems.append(f"{LABEL_MAP_FILE} has no name for class(es) {_shorten(unnamed)}")


def _shorten(names: list[str], keep: int = 5) -> str:
    shown = ", ".join(names[:keep])
    return shown + (f" and {len(names) - keep} more" if len(names) > keep else "")


def locate_dataset_root(folder: Path, spec: DatasetSpec) -> Path:
    """The folder inside an extracted archive that holds the splits of ``spec``.

    Archives often wrap the data in a top folder (``hymenoptera_data/train/...``); this
    descends through single wrapper folders. Without a match it returns ``folder`` and
    ``check_layout`` then names what is missing.

    >>> locate_dataset_root(Path("scratch/extracted"), dataset_spec("hymenoptera")).name  # doctest: +SKIP
    'hymenoptera_data'
    """
    candidate = folder
    for _ in range(MAX_WRAPPER_DEPTH):
        if any((candidate / split).is_dir() for split in spec.splits):
            return candidate
        subfolders = visible_dirs(candidate)
        if len(subfolders) != 1:
            break
        candidate = subfolders[0]
    return candidate if any((candidate / s).is_dir() for s in spec.splits) else folder


def verify_dataset(name_or_path: str, root: Path | str | None = None) -> LayoutReport:
    """Check a known dataset by name (in the data folder) or any dataset folder by path.

    >>> verify_dataset("synthetic").ok  # doctest: +SKIP
    True
    """
    if name_or_path not in DATASET_NAMES:
        return check_layout(Path(name_or_path).expanduser())
    folder = resolve_data_root(root) / name_or_path
    if not folder.exists():
        command = "synthetic" if name_or_path == "synthetic" else f"get {name_or_path}"
        raise DataScriptError(
            f"{name_or_path} is not installed (no folder {folder}). "
            f"Fix: python -m data_scripts {command}"
        )
    return check_layout(folder, dataset_spec(name_or_path))
