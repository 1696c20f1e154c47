"""Install hymenoptera or flowers102 into the data folder, from the internet or a local copy.

Whatever the source, the result is built in a hidden scratch folder, checked against the
expected layout and only then renamed into place: a failure leaves the target untouched.

    >>> get_dataset("hymenoptera")  # doctest: +SKIP
    PosixPath('.../data/hymenoptera')
    >>> get_dataset("hymenoptera", source="~/Downloads/hymenoptera_data.zip")  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from coursekit._safe_io import explained_write_errors
from coursekit.folders import LABEL_MAP_NAME
from data_scripts.download import download_file, extract_archive
from data_scripts.errors import DataScriptError, LayoutError
from data_scripts.files import (
    copy_visible_tree,
    publish,
    resolve_data_root,
    scratch_dir,
)
from data_scripts.flowers import convert_flowers102
from data_scripts.layout import (
    check_layout,
    describe_problem,
    locate_dataset_root,
    raise_for_problems,
)
from data_scripts.registry import DOWNLOADABLE, DatasetSpec, RemoteFile, dataset_spec

#: Downloaded archives are kept here (hidden, so no lesson mistakes it for a dataset):
#: an interrupted download resumes from it, and --force re-installs without downloading.
DOWNLOADS_FOLDER = ".downloads"
URL_SCHEMES = ("http", "https", "file")


@dataclass(frozen=True)
class _Job:
    """One install: what to build, where it goes, and where to work meanwhile."""

    spec: DatasetSpec
    target: Path
    scratch: Path
    downloads: Path
    #: Whether --force was given: downloads without a checksum are then fetched again.
    force: bool
    progress: bool


def get_dataset(
    name: str,
    root: Path | str | None = None,
    source: str | None = None,
    *,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Install dataset ``name`` at ``<root>/<name>`` and return that folder.

    ``source`` is None (official download), a local archive, a folder (extracted data, or
    the folder holding the official files) or a mirror URL. An existing complete dataset
    is kept unless ``force``.

    >>> get_dataset("flowers102", source="/mnt/usb/flowers/")  # doctest: +SKIP
    PosixPath('.../data/flowers102')
    """
    if name not in DOWNLOADABLE:
        raise DataScriptError(
            f"get knows {', '.join(DOWNLOADABLE)}, not {name!r}. "
            "The synthetic dataset is generated: python -m data_scripts synthetic"
        )
    spec = dataset_spec(name)
    root = resolve_data_root(root)
    target = root / name
    if target.exists() and not force:
        return _keep_existing(target, spec)
    fix = (
        f"use a data folder on another disk (--root DIR, or COURSE_DATA_ROOT). {_unchanged(target)}"
    )
    with (
        explained_write_errors(f"{name} into {root}", root, fix),
        scratch_dir(root, name) as scratch,
    ):
        job = _Job(spec, target, scratch, root / DOWNLOADS_FOLDER, force, progress)
        built = _build(job, source)
        report = check_layout(built, spec)
        raise_for_problems(report, _describe_source(source), spec, _untouched(target))
        publish(built, target)
    splits = ", ".join(f"{split} {sum(n.values())}" for split, n in report.counts.items())
    print(f"{name} is ready at {target}: {report.total_images} images ({splits}).")
    return target


def _keep_existing(target: Path, spec: DatasetSpec) -> Path:
    report = check_layout(target, spec)
    if not report.ok:
        raise LayoutError(
            f"{target} exists but is not a complete {spec.name} dataset: "
            f"{'; '.join(describe_problem(p, target) for p in report.problems)}. Fix: run the command again with --force to "
            "replace it (or move that folder away first)."
        )
    print(
        f"{spec.name} is already at {target} ({report.total_images} images); nothing to do. "
        "Use --force to install it again."
    )
    return target


def _unchanged(target: Path) -> str:
    return f"Nothing was changed in {target}." if target.exists() else "Nothing was installed."


def _untouched(target: Path) -> Path | None:
    return target if target.exists() else None


def _is_url(source: str) -> bool:
    return urlparse(source).scheme in URL_SCHEMES


def _describe_source(source: str | None) -> str:
    if source is None:
        return "The official download"
    if _is_url(source):
        return f"The download {source}"
    path = Path(source).expanduser()
    return f"The folder {path}" if path.is_dir() else f"The archive {path}"


def _build(job: _Job, source: str | None) -> Path:
    """Build the dataset inside ``job.scratch`` and return the folder holding its splits."""
    if source is None:
        return _from_official_files(job, _download_official(job, base_url=None))
    if _is_url(source):
        return _from_url(job, source)
    path = Path(source).expanduser()
    if path.is_dir():
        return _from_folder(job, path)
    if path.is_file():
        official = _official_file(job.spec, path.name)
        if official is not None:
            _refuse_a_lone_official_file(job.spec, path.name)
            official.checksum.verify(path)
        return _from_archive(job, path)
    raise DataScriptError(
        f"--from {source}: no such file or folder. Fix: check the path "
        "(put it in quotes if it contains spaces)."
    )


def _official_file(spec: DatasetSpec, file_name: str) -> RemoteFile | None:
    return next((file for file in spec.files if file.name == file_name), None)


def _download_official(job: _Job, base_url: str | None) -> dict[str, Path]:
    """Download every official file (from ``base_url`` when it is a mirror folder)."""
    return {
        file.name: download_file(
            base_url + file.name if base_url else file.url,
            job.downloads / file.name,
            file.checksum,
            advice=_offline_advice(job.spec),
            progress=job.progress,
        )
        for file in job.spec.files
    }


def _offline_advice(spec: DatasetSpec) -> str:
    names = ", ".join(file.name for file in spec.files)
    urls = " ".join(file.url for file in spec.files)
    return (
        f"Fix: on a computer with internet, download {urls} and then run "
        f"`python -m data_scripts get {spec.name} --from PATH`, where PATH is the downloaded "
        f"file or the folder holding {names} (an already-extracted dataset folder works "
        f"too); or use a mirror: `--from URL` (for several files, the mirror folder's URL "
        "ending in /). Meanwhile the lessons run on the synthetic dataset."
    )


def _from_url(job: _Job, url: str) -> Path:
    if url.endswith("/"):  # a mirror folder holding the official file names
        return _from_official_files(job, _download_official(job, base_url=url))
    file_name = PurePosixPath(urlparse(url).path).name or f"{job.spec.name}-download"
    official = _official_file(job.spec, file_name)
    if official is not None:
        _refuse_a_lone_official_file(job.spec, file_name)  # before a long download
    archive = download_file(
        url,
        job.downloads / file_name,
        official.checksum if official else None,
        advice=_offline_advice(job.spec),
        refresh_unverified=job.force,
        progress=job.progress,
    )
    return _from_archive(job, archive)


def _from_folder(job: _Job, folder: Path) -> Path:
    official = {file.name: folder / file.name for file in job.spec.files}
    present = [name for name, path in official.items() if path.is_file()]
    if official and len(present) == len(official):
        for file in job.spec.files:
            file.checksum.verify(official[file.name])
        return _from_official_files(job, official)
    found = locate_dataset_root(folder, job.spec)
    label_map = _label_map_near(found, folder)
    # Check before copying: a wrong folder fails fast and nothing is copied.
    report = check_layout(found, job.spec, label_map)
    if present and not report.ok:
        missing = [file for file in job.spec.files if file.name not in present]
        raise DataScriptError(
            f"The folder {folder} holds {', '.join(present)} but not "
            f"{', '.join(file.name for file in missing)}: {job.spec.name} is built from all "
            "of its official files. Fix: put the missing ones next to the others (from "
            f"{' '.join(file.url for file in missing)}), then run the same command again."
        )
    raise_for_problems(report, f"The folder {folder}", job.spec, _untouched(job.target))
    copy = job.scratch / job.spec.name
    print(f"Copying {found} ...", flush=True)
    copy_visible_tree(found, copy)
    if job.spec.needs_label_map and not (copy / LABEL_MAP_NAME).exists():
        shutil.copy2(label_map, copy / LABEL_MAP_NAME)
    return copy


def _label_map_near(found: Path, folder: Path) -> Path:
    """The ``cat_to_name.json`` of the data in ``found``: in it, or in a folder around it
    up to the ``folder`` given (most copies on the web keep it beside ``flower_data/``)."""
    for candidate in (found, *found.parents):
        if (candidate / LABEL_MAP_NAME).is_file():
            return candidate / LABEL_MAP_NAME
        if candidate == folder:
            break
    return found / LABEL_MAP_NAME


def _refuse_a_lone_official_file(spec: DatasetSpec, file_name: str) -> None:
    if len(spec.files) > 1:
        names = ", ".join(file.name for file in spec.files)
        raise DataScriptError(
            f"{file_name} alone is not enough for {spec.name}: the labels are in the other "
            f"official files. Fix: pass the folder that holds {names} (--from FOLDER), or "
            "the URL of a mirror folder holding them, ending in / (--from URL/)."
        )


def _from_archive(job: _Job, archive: Path) -> Path:
    return locate_dataset_root(_extract(job, archive), job.spec)


def _extract(job: _Job, archive: Path) -> Path:
    """Extract ``archive`` into the scratch folder (announced: big archives take a while)."""
    extracted = job.scratch / "extracted"
    print(f"Extracting {archive} ...", flush=True)
    inside = f"the folder being built in the data folder {job.target.parent}"
    extract_archive(archive, extracted, shown_as=inside)
    return extracted


def _from_official_files(job: _Job, files: dict[str, Path]) -> Path:
    return _OFFICIAL_BUILDERS[job.spec.name](job, files)


def _hymenoptera_from_official(job: _Job, files: dict[str, Path]) -> Path:
    (archive,) = files.values()
    return _from_archive(job, archive)


def _flowers102_from_official(job: _Job, files: dict[str, Path]) -> Path:
    extracted = _extract(job, files["102flowers.tgz"])
    print("Converting the images into train/ and valid/ class folders ...", flush=True)
    return convert_flowers102(
        extracted / "jpg",
        files["imagelabels.mat"],
        files["setid.mat"],
        job.scratch / job.spec.name,
    )


_OFFICIAL_BUILDERS: dict[str, Callable[[_Job, dict[str, Path]], Path]] = {
    "hymenoptera": _hymenoptera_from_official,
    "flowers102": _flowers102_from_official,
}
