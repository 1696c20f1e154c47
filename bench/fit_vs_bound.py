"""Benchmark 1b: a ``coursekit.fit`` epoch vs the machine's own limit for the same training.

The bound is the same ``fit`` call (forward, backward and Adam step on every train batch,
then the valid forward passes) on the same batches, already decoded, augmented and held in
memory: what an epoch would cost if reading and transforming the photos were free. The
ratio fit / bound says how much the data pipeline adds. Target: at most 1.15x at 224 px,
for resnet18 and mobilenet_v2, with the default loader workers; the old default (2 workers
where ``fork`` is available) is timed in the same run for comparison, and so is an epoch
without the datasets' image cache (a run's first epoch).

Data: the real ants/bees photos (``hymenoptera``) under ``--data``, ``$COURSE_DATA_ROOT``
or ``./data`` when present, else generated photo-sized JPEGs; the lessons' transforms.

    python -m bench.fit_vs_bound            # 224 px, writes its section of results.md
    python -m bench.fit_vs_bound --quick    # 32 px, tiny generated photos: a sanity run
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import coursekit as ck
from bench.common import (
    FULL_SIZE,
    REPO_ROOT,
    TINY_SIZE,
    ImageSize,
    Runs,
    base_parser,
    interleaved,
    median,
    ratio,
    report,
    seconds_list,
    section_intro,
    start_run,
    verdict,
)

NAME = "fit_vs_bound"
TITLE = "1b. fit epoch vs the compute bound (same batches already in memory)"
TARGET = 1.15
ARCHS = ("resnet18", "mobilenet_v2")
#: The default before this benchmark: 2 workers wherever ``fork`` is available.
OLD_DEFAULT_WORKERS = 2
BATCH_SIZE = 32
NO_CACHE = "fit, 0 workers, no image cache"


@dataclass
class ArchResult:
    arch: str
    runs: dict[str, Runs]
    #: Train and valid images (unreadable files dropped).
    images: tuple[int, int]

    def ratio(self, variant: str, clock: str = "wall") -> float:
        return ratio(getattr(self.runs[variant], clock), getattr(self.runs["bound"], clock))


# --------------------------------------------------------------------------- data


def real_photos(data: Path | None) -> Path | None:
    """The ants/bees folder: ``data`` itself, or ``hymenoptera`` in the course's data root."""
    if data is not None:
        return data
    root = Path(os.environ.get("COURSE_DATA_ROOT") or REPO_ROOT / "data")
    folder = root / "hymenoptera"
    return folder if folder.is_dir() else None


def generated_photos(root: Path, train: int, valid: int, size: tuple[int, int]) -> Path:
    """Two classes of smooth random-colour JPEGs of ``size`` (w, h), like phone photos."""
    generator = np.random.default_rng(0)
    for split, count in (("train", train), ("val", valid)):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                coarse = generator.integers(0, 256, (6, 8, 3), dtype=np.uint8)
                image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
                image.save(folder / f"{index:04d}.jpg", quality=90)
    return root


# --------------------------------------------------------------------------- measure


def lesson_datasets(
    data_dir: Path, size: ImageSize, per_class: int | None, image_cache_mib: int | None = None
) -> tuple[ck.ImageFolderDataset, ck.ImageFolderDataset]:
    """The lessons' datasets of ``data_dir``; None: the course's image cache setting."""
    return ck.build_datasets(
        data_dir,
        ck.train_transforms(size.crop, size.resize, vertical_flip=False),
        ck.eval_transforms(size.crop, size.resize),
        train_per_class=per_class,
        valid_per_class=per_class,
        verify=True,
        image_cache_mib=image_cache_mib,
    )


def measure_arch(
    arch: str,
    data_dir: Path,
    size: ImageSize,
    batch_size: int,
    repeats: int,
    workers: Sequence[int],
    per_class: int | None = None,
) -> ArchResult:
    """Interleaved epochs of ``fit`` with each worker count and of the in-memory bound.

    With no worker, the datasets' image cache is full (the pass that makes the bound's
    batches fills it), as from a run's second epoch on; "no image cache" is the first
    epoch. Worker processes start with an empty cache, as in a run that uses them from the
    start: only the main process fills it.
    """
    train_ds, valid_ds = lesson_datasets(data_dir, size, per_class)
    uncached = lesson_datasets(data_dir, size, per_class, image_cache_mib=0)
    torch.manual_seed(0)
    model = ck.random_init_model(arch, num_classes=len(train_ds.classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    # The bound's batches: decoded and transformed once, by the same loaders, with no worker.
    decoded = ck.make_loaders(train_ds, valid_ds, batch_size, num_workers=0)
    in_memory = {split: list(loader) for split, loader in decoded.items()}

    def epoch(loaders) -> None:
        ck.fit(model, loaders, criterion, optimizer, epochs=1, device="cpu", progress=False)

    jobs = {"bound": lambda: epoch(in_memory)}
    for count in workers:
        datasets = (train_ds, valid_ds) if count == 0 else uncached
        jobs[f"fit, {count} workers"] = lambda count=count, datasets=datasets: epoch(
            ck.make_loaders(*datasets, batch_size, num_workers=count)
        )
    if 0 in workers:
        jobs[NO_CACHE] = lambda: epoch(ck.make_loaders(*uncached, batch_size, num_workers=0))
    epoch(in_memory)  # warm-up: every batch shape meets its kernels before the clock runs
    return ArchResult(arch, interleaved(jobs, repeats), (len(train_ds), len(valid_ds)))


# --------------------------------------------------------------------------- report


def render(
    results: Sequence[ArchResult],
    environment: dict,
    seconds: float,
    size: ImageSize,
    data_label: str,
    default_workers: int,
    batch_size: int,
) -> str:
    variants = [name for name in results[0].runs if name != "bound"]
    default = f"fit, {default_workers} workers"
    rows = [
        "| arch | bound s (repeats) | "
        + " | ".join(
            f"{name}{' (default)' if name == default else ''}: s, ratio wall / CPU"
            for name in variants
        )
        + " |",
        "|---|---|" + "---|" * len(variants),
    ]
    for r in results:
        cells = []
        for name in variants:
            wall = r.ratio(name)
            mark = f" {verdict(wall, TARGET, at_most=True)}" if name == default else ""
            cells.append(
                f"{median(r.runs[name].wall):.1f} ({seconds_list(r.runs[name].wall)}): "
                f"**{wall:.2f}x**{mark} / {r.ratio(name, 'cpu'):.2f}x"
            )
        rows.append(
            f"| {r.arch} | {median(r.runs['bound'].wall):.1f} "
            f"({seconds_list(r.runs['bound'].wall)}) | " + " | ".join(cells) + " |"
        )
    return "\n".join(
        [
            section_intro(TITLE, f"bench.{NAME}", environment, seconds),
            f"{data_label}: {results[0].images[0]} train / {results[0].images[1]} valid "
            f"images, {size.label} "
            f"(the lessons' train and eval transforms), batch {batch_size}, Adam, random "
            f"weights, one `ck.fit(..., epochs=1)` per timed epoch (train + valid phase). "
            f"Default workers here: {default_workers} "
            f"(`ck.default_num_workers()`, {os.cpu_count()} cores). Target: fit with the "
            f"default workers <= {TARGET}x the bound (wall). CPU time counts this process "
            "only, not worker processes.\n",
            *rows,
            "",
            NOTES,
        ]
    )


NOTES = """\
How to read it. The bound runs the very same `fit` on the batches the loaders produced
once, kept in memory, so the ratio is what reading, decoding and augmenting the photos adds
to an epoch. With no worker, the main process decodes and augments each batch before its
step, against well over 100 ms of compute per photo at 224 px. In the first epoch ("no
image cache") that is about 7 ms of CPU per train photo and 4 ms per valid photo; from the
second on, the datasets start from each photo decoded and resized (valid: also cropped),
kept in memory (`settings.image_cache_mib`, about 115 MiB for ants/bees): about 3.4 ms
per train photo (ColorJitter's hue is most of it) and 0.5 ms per valid photo.
Worker processes overlap that work with the step only when there are idle cores: on 2
cores they take time from the 2 compute threads, and they start again every epoch (they
are not kept alive so that a resumed run repeats the augmentations exactly), so
`ck.default_num_workers()` uses none on machines with 2 cores or fewer.
"""


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="an ants/bees-style folder")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS))
    parser.add_argument(
        "--per-class", type=int, default=None, help="at most this many images per class and split"
    )
    args, environment, started = start_run(parser, argv)
    size = TINY_SIZE if args.quick else FULL_SIZE
    batch_size = 8 if args.quick else BATCH_SIZE
    repeats = args.repeats or (1 if args.quick else 2)
    default_workers = ck.default_num_workers()
    workers = sorted({default_workers, OLD_DEFAULT_WORKERS})
    with tempfile.TemporaryDirectory(prefix="bench-bound-") as tmp:
        data_dir = None if args.quick else real_photos(args.data)
        data_label = f"real photos in `{data_dir}`"
        if data_dir is None:
            counts = (8, 4) if args.quick else (122, 76)
            data_dir = generated_photos(Path(tmp), *counts, size=(500, 375))
            data_label = "generated 500x375 JPEG photos"
        results = [
            measure_arch(arch, data_dir, size, batch_size, repeats, workers, args.per_class)
            for arch in args.archs
        ]
    markdown = render(
        results,
        environment,
        time.perf_counter() - started,
        size,
        data_label,
        default_workers,
        batch_size,
    )
    report(NAME, markdown, quick=args.quick)


if __name__ == "__main__":
    main()
