"""The course datasets' own expectations, on top of coursekit's one dataset check.

``get --from`` (before anything is installed) and ``verify`` both call
``coursekit.folders.check_dataset`` (the check behind ``python -m coursekit check-data``
and the lessons' loaders) and add what a named dataset needs: its split folders, its
class folders and its label map. One walk, one report type, the same counts everywhere:

    >>> report = check_layout(Path("data/hymenoptera"), dataset_spec("hymenoptera"))  # doctest: +SKIP
    >>> report.ok, report.counts["train"]["ants"]  # doctest: +SKIP
    (True, 124)
"""

from __future__ import annotations

import json
from pathlib import Path

from coursekit.folders import (
    LABEL_MAP_NAME,
    DatasetReport,
    Problem,
    check_dataset,
    printable_path,
    visible_subdirs,
)
from data_scripts.errors import DataScriptError, LayoutError
from data_scripts.files import resolve_data_root
from data_scripts.registry import DATASET_NAMES, DatasetSpec, dataset_spec

#: How many wrapper folders (like ``hymenoptera_data/``) an archive may put around the data.
MAX_WRAPPER_DEPTH = 3


def check_layout(
    root: Path, spec: DatasetSpec | None = None, label_map: Path | None = None
) -> DatasetReport:
    """``check_dataset(root)``, plus the split, class and label-map needs of ``spec``.

    ``label_map`` is where the dataset's ``cat_to_name.json`` is (default: in ``root``).

    >>> check_layout(Path("data/synthetic"), dataset_spec("synthetic")).ok  # doctest: +SKIP
    True
    """
    report = check_dataset(root)
    if spec is not None and root.is_dir():
        _check_against_spec(report, spec, label_map or root / LABEL_MAP_NAME)
    return report


def raise_for_problems(
    report: DatasetReport, what: str, spec: DatasetSpec | None, untouched: Path | None
) -> None:
    """Raise ``LayoutError`` listing every problem of ``what`` (an archive or folder).

    Paths are shown from the checked folder down: it may be a scratch copy the learner
    never sees.

    >>> raise_for_problems(check_layout(built, spec), "the archive x.zip", spec, target)  # doctest: +SKIP
    """
    if report.ok:
        return
    expected = f" Expected {spec.describe_layout()}." if spec else ""
    kept = f" Nothing was changed in {untouched}." if untouched else ""
    problems = "; ".join(describe_problem(problem, report.root) for problem in report.problems)
    raise LayoutError(f"{what} does not have the expected layout: {problems}.{expected}{kept}")


def describe_problem(problem: Problem, root: Path) -> str:
    """One problem on one line, its path relative to ``root`` where it lies inside it.

    >>> describe_problem(Problem(Path("d/train/a"), "empty class folder", "add images"), Path("d"))
    'train/a: empty class folder (fix: add images)'
    """
    path = problem.path.relative_to(root) if problem.path.is_relative_to(root) else problem.path
    return printable_path(f"{path.as_posix()}: {problem.problem} (fix: {problem.fix})")


def _check_against_spec(report: DatasetReport, spec: DatasetSpec, label_map: Path) -> None:
    fix = f"the dataset must be laid out as {spec.describe_layout()}"
    for split in spec.splits:
        folder = report.root / split
        if not folder.is_dir():
            report.problems.append(Problem(folder, f"split folder {split}/ is missing", fix))
            continue
        present = {sub.name for sub in visible_subdirs(folder)}
        missing = [c for c in spec.classes if c not in present]
        if missing:
            report.problems.append(
                Problem(folder, f"{split}/ lacks class folder(s) {_shorten(missing)}", fix)
            )
        extra = sorted(present - set(spec.classes))
        if extra:
            report.warnings.append(
                Problem(folder, f"{split}/ has unexpected folder(s) {_shorten(extra)}", fix)
            )
    if spec.needs_label_map:
        _check_label_map(report, spec, label_map)


def _check_label_map(report: DatasetReport, spec: DatasetSpec, path: Path) -> None:
    fix = "fetch the dataset again, or copy its cat_to_name.json next to the train/ folder"
    if not path.is_file():
        report.problems.append(
            Problem(
                path,
                f"{LABEL_MAP_NAME} is missing (looked for {path}; put it next to the train/ folder)",
                fix,
            )
        )
        return
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        report.problems.append(Problem(path, f"{LABEL_MAP_NAME} is not valid JSON ({error})", fix))
        return
    unnamed = [c for c in spec.classes if c not in mapping]
    if unnamed:
        report.problems.append(
            Problem(path, f"{LABEL_MAP_NAME} has no name for class(es) {_shorten(unnamed)}", fix)
        )


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
        subfolders = visible_subdirs(candidate)
        if len(subfolders) != 1:
            break
        candidate = subfolders[0]
    return candidate if any((candidate / s).is_dir() for s in spec.splits) else folder


def verify_dataset(name_or_path: str, root: Path | str | None = None) -> DatasetReport:
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
