"""Benchmark 3: inference on a folder of photos: ``predict_folder`` against its bound and the plain loop.

For ResNet-18 and MobileNetV2 at 224 px (random weights: speed does not depend on them), on
real photos (the ants/bees validation images) when they are on disk, otherwise on generated
images, said so in the output. Timed in turn, in one run, after an untimed warm-up round:

* ``one_by_one``: the source's per-image loop (open, transform, forward, print);
* ``predict_folder``: coursekit with its defaults, so the batch size and memory layout it
  measured once (in the warm-up round) as the fastest for the model here;
* ``preprocessing``: opening and transforming every image, no network;
* the network alone on ready tensors, for every batch size and both memory layouts.

Bound: 1 / (1 / best network-alone images/s + 1 / preprocessing images/s), the speed of a
loop that decodes and runs the network one after the other with no overhead (decoding and
the network cannot both have the cores). Targets: ``predict_folder`` >= 0.9x the bound and
>= 1.0x the one-by-one loop. (The old target, batched >= 4x one by one, is retired: on a CPU
a single 224 px image already keeps the cores busy. Its ratio is still the last column.)

    python -m bench.batched_inference                      # writes its section of results.md
    python -m bench.batched_inference --photos DIR         # another folder of photos
    python -m bench.batched_inference --quick              # 32 px, generated images: a sanity run
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

import coursekit as ck
from bench.common import (
    BENCH_DIR,
    FULL_SIZE,
    TINY_SIZE,
    ImageSize,
    Runs,
    base_parser,
    grouped_bar_plot,
    interleaved,
    load_note,
    median,
    random_classifier,
    report,
    section_intro,
    start_run,
    synthetic_data,
    verdict,
)
from bench.plain_loops import plain_predict_one_by_one
from coursekit.timing import BATCH_SIZES, LAYOUTS, useful_batch_sizes

NAME = "batched_inference"
TITLE = "3. Inference on a folder: predict_folder vs its bound and vs one image at a time"
ARCHS = ("resnet18", "mobilenet_v2")
BOUND_TARGET = 0.9
ONE_BY_ONE_TARGET = 1.0
#: The network-alone jobs run this many ready tensors (a rate does not need the whole folder).
NETWORK_IMAGES = 64
PHOTOS_SUBFOLDER = Path("hymenoptera") / "val"


def network_job(layout: str, batch_size: int) -> str:
    return f"network alone, batch {batch_size}, {layout}"


@dataclass
class ModelResult:
    arch: str
    images: int
    runs: dict[str, Runs]
    #: The (batch size, channels_last) predict_folder chose.
    chosen: tuple[int, bool]

    def images_per_second(self, job: str, clock: str = "wall") -> float:
        images = NETWORK_IMAGES if job.startswith("network alone") else self.images
        return images / median(getattr(self.runs[job], clock))

    def network_speeds(self, clock: str = "wall") -> dict[str, dict[int, float]]:
        return {
            layout: {
                size: self.images_per_second(network_job(layout, size), clock)
                for size in BATCH_SIZES
                if network_job(layout, size) in self.runs
            }
            for layout in LAYOUTS
        }

    def best_network(self, clock: str = "wall") -> tuple[float, str]:
        speeds = self.network_speeds(clock)
        value, layout, size = max(
            (speed, layout, size) for layout, row in speeds.items() for size, speed in row.items()
        )
        return value, f"batch {size}, {layout}"

    def bound(self, clock: str = "wall") -> float:
        """Images/s of decoding then the network at its best, with no overhead at all."""
        network = self.best_network(clock)[0]
        return 1 / (1 / network + 1 / self.images_per_second("preprocessing", clock))

    def ratio_to_bound(self, clock: str = "wall") -> float:
        return self.images_per_second("predict_folder", clock) / self.bound(clock)

    def ratio_to_one_by_one(self, clock: str = "wall") -> float:
        return self.images_per_second("predict_folder", clock) / self.images_per_second(
            "one_by_one", clock
        )


def inference_jobs(
    model: nn.Module, folder: Path, size: ImageSize, class_names: Sequence[str]
) -> dict[str, Callable[[], object]]:
    """The timed jobs over every image under ``folder``: both loops, preprocessing, and the
    network alone on ready tensors for each batch size and layout."""
    transform = ck.eval_transforms(size.crop, size.resize)
    paths = ck.image_files(folder)

    def preprocess() -> list[torch.Tensor]:
        return [transform(load_rgb(path)) for path in paths]

    jobs: dict[str, Callable[[], object]] = {
        "one_by_one": lambda: plain_predict_one_by_one(model, paths, transform, class_names),
        "predict_folder": lambda: ck.predict_folder(model, folder, transform, class_names),
        "preprocessing": preprocess,
    }
    tensors = preprocess()
    ready = torch.stack([tensors[i % len(tensors)] for i in range(NETWORK_IMAGES)])
    jobs.update(network_alone_jobs(model, ready))
    return jobs


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def network_alone_jobs(model: nn.Module, ready: torch.Tensor) -> dict[str, Callable[[], None]]:
    """The network alone on ready tensors, for each batch size and memory layout: no files, no
    transforms, so the fastest of these is the most any loop around the network can reach."""

    def run(batches: list[torch.Tensor]) -> Callable[[], None]:
        def forward_all() -> None:
            with torch.inference_mode():
                for batch in batches:
                    model(batch)

        return forward_all

    jobs = {}
    for layout in LAYOUTS:
        memory_format = torch.channels_last if layout == LAYOUTS[1] else torch.contiguous_format
        for size in BATCH_SIZES:
            batches = [part.contiguous(memory_format=memory_format) for part in ready.split(size)]
            jobs[network_job(layout, size)] = run(batches)
    return jobs


def measure_model(arch: str, folder: Path, size: ImageSize, repeats: int) -> ModelResult:
    class_dirs = sorted(path.name for path in folder.iterdir() if path.is_dir())
    class_names = class_dirs or ["photo"]
    model = random_classifier(arch, len(class_names)).eval()
    jobs = inference_jobs(model, folder, size, class_names)
    interleaved(jobs, 1)  # warm-up: file cache, every batch shape, predict_folder's measurement
    runs = interleaved(jobs, repeats)
    images = len(ck.image_files(folder))
    chosen = ck.measure_batch_speeds(
        model, size.crop, batch_sizes=useful_batch_sizes(images)
    ).fastest()  # remembered from the warm-up: what predict_folder used
    return ModelResult(arch, images, runs, chosen)


def find_photos(given: Path | None) -> Path | None:
    """The folder of real photos: ``--photos``, else COURSE_DATA_ROOT/hymenoptera/val."""
    if given is not None:
        if not given.is_dir():
            raise SystemExit(f"--photos {given}: no such folder.")
        return given
    root = os.environ.get("COURSE_DATA_ROOT")
    candidate = Path(root) / PHOTOS_SUBFOLDER if root else None
    return candidate if candidate is not None and candidate.is_dir() else None


NOTES = """\
How to read it. `predict_folder` opens and transforms the images one after the other in
the calling process and runs the network on batches, with the batch size and memory layout
it measured once (on random tensors, in the untimed warm-up round) as the fastest for this
model here. The bound is what a loop would reach that did nothing but decode and run the
network at its best measured speed (second table), one after the other: on 2 cores the two
cannot usefully overlap (a decoding process takes its core from the network's threads).
The second table is the network alone on ready tensors by batch size and layout: which
one wins depends on the hardware (on a CPU usually a middle batch size, channels-last; on
a GPU large batches), which is why `predict_folder` measures instead of fixing 32.
"""


def render(
    results: Sequence[ModelResult],
    size: ImageSize,
    environment: dict,
    seconds: float,
    data_note: str,
) -> str:
    rows = [
        "| model | images | preprocessing img/s | best network alone img/s | bound img/s "
        "| predict_folder img/s (its choice) "
        f"| **vs bound** (target >= {BOUND_TARGET}x) "
        f"| **vs one by one** (target >= {ONE_BY_ONE_TARGET:.1f}x) | one by one img/s "
        "| vs one by one, CPU time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        best, where = r.best_network()
        chosen_size, channels_last = r.chosen
        rows.append(
            f"| {r.arch} | {r.images} | {r.images_per_second('preprocessing'):.1f} "
            f"| {best:.1f} ({where}) | {r.bound():.1f} "
            f"| {r.images_per_second('predict_folder'):.1f} "
            f"(batch {chosen_size}, {LAYOUTS[int(channels_last)]}) "
            f"| **{r.ratio_to_bound():.2f}x** "
            f"{verdict(r.ratio_to_bound(), BOUND_TARGET, at_most=False)} "
            f"| **{r.ratio_to_one_by_one():.2f}x** "
            f"{verdict(r.ratio_to_one_by_one(), ONE_BY_ONE_TARGET, at_most=False)} "
            f"| {r.images_per_second('one_by_one'):.1f} | {r.ratio_to_one_by_one('cpu'):.2f}x |"
        )
    speed_rows = [
        "| model | layout | " + " | ".join(f"batch {size}" for size in BATCH_SIZES) + " |",
        "|---|---|" + "---|" * len(BATCH_SIZES),
    ]
    for r in results:
        for layout, row in r.network_speeds().items():
            cells = " | ".join(f"{row[size]:.1f}" for size in BATCH_SIZES)
            speed_rows.append(f"| {r.arch} | {layout} | {cells} |")
    return "\n".join(
        [
            section_intro(TITLE, f"bench.{NAME}", environment, seconds),
            f"{data_note} Eval transforms at {size.label}, random weights, torch threads as "
            f"listed above; median of the interleaved repeats. {load_note(environment)}\n",
            *rows,
            "",
            f"The network alone on {NETWORK_IMAGES} ready tensors, images/s by batch size:\n",
            *speed_rows,
            "",
            f"![batched inference]({NAME}.png)\n",
            NOTES,
        ]
    )


def plot(results: Sequence[ModelResult]) -> Path:
    return grouped_bar_plot(
        BENCH_DIR / f"{NAME}.png",
        "Images per second on a folder of photos (higher is better)",
        "images / s",
        [r.arch for r in results],
        {
            "one by one": [r.images_per_second("one_by_one") for r in results],
            "predict_folder": [r.images_per_second("predict_folder") for r in results],
            "bound": [r.bound() for r in results],
        },
    )


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--photos",
        type=Path,
        default=None,
        help="folder of photos (default: $COURSE_DATA_ROOT/hymenoptera/val if present)",
    )
    args, environment, started = start_run(parser, argv)
    size = TINY_SIZE if args.quick else FULL_SIZE
    repeats = args.repeats or (1 if args.quick else 3)
    photos = None if args.quick else find_photos(args.photos)
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        if photos is None:
            photos = synthetic_data(Path(tmp), 1, 2 if args.quick else 12) / "valid"
            data_note = (
                f"No real photos found (pass --photos or set COURSE_DATA_ROOT): GENERATED "
                f"images ({photos}), which decode faster than photos."
            )
        else:
            data_note = f"Photos: {photos} (real JPEG photos)."
        print(data_note)
        results = [measure_model(arch, photos, size, repeats) for arch in ARCHS]
    if not args.quick:
        plot(results)
    seconds = time.perf_counter() - started
    report(NAME, render(results, size, environment, seconds, data_note), quick=args.quick)


if __name__ == "__main__":
    main()
