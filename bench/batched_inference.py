"""Benchmark 3: inference on a folder, batched (``predict_folder``) vs one image at a time.

The plain loop is the source's per-image loop (open, convert, transform, forward, print).
``coursekit.predict_folder`` reads the same files and runs the network 32 images at a time
under ``inference_mode``. Images per second, interleaved repeats, median. Target: >= 4x.
A third timed job, preprocessing only (open + transform of every image, no network),
shows how much of either variant's time batching cannot touch.

    python -m bench.batched_inference            # full sizes, writes its section of results.md
    python -m bench.batched_inference --quick    # 32 px, tiny folder: a sanity run
"""

from __future__ import annotations

import shutil
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
    SMOKE_SIZE,
    TINY_SIZE,
    ImageSize,
    Runs,
    apply_threads,
    base_parser,
    collect_environment,
    grouped_bar_plot,
    interleaved,
    median,
    report,
    resnet18_classifier,
    seconds_list,
    section_intro,
    synthetic_data,
    verdict,
)
from bench.plain_loops import plain_predict_one_by_one

NAME = "batched_inference"
TITLE = "3. Inference on a folder: batched vs one image at a time"
SPEEDUP_TARGET = 4.0
BATCH_SIZE = 32
DECODE_WORKERS = 2
WORKERS_VARIANT = f"predict_folder, {DECODE_WORKERS} decode workers"
FORWARD_ONE = "forward only, batch 1"
FORWARD_NCHW = "forward only, batched NCHW"
FORWARD_NHWC = "forward only, batched channels-last"


@dataclass(frozen=True)
class Case:
    """One image size and the number of images per class in the folder (12 classes)."""

    size: ImageSize
    per_class: int


FULL_CASES = (Case(SMOKE_SIZE, 12), Case(FULL_SIZE, 6))
QUICK_CASES = (Case(TINY_SIZE, 2),)


@dataclass
class CaseResult:
    case: Case
    images: int
    runs: dict[str, Runs]

    def images_per_second(self, variant: str, clock: str = "wall") -> float:
        return self.images / median(getattr(self.runs[variant], clock))

    def speedup(self, clock: str = "wall") -> float:
        batched = self.images_per_second("predict_folder", clock)
        return batched / self.images_per_second("one_by_one", clock)

    def forward_speedup(self, variant: str) -> float:
        """How much faster the network alone runs batched than one image at a time."""
        return median(self.runs[FORWARD_ONE].wall) / median(self.runs[variant].wall)

    @property
    def preprocessing_share(self) -> float:
        """Fraction of the batched CPU time spent opening and transforming images."""
        return median(self.runs["preprocessing"].cpu) / median(self.runs["predict_folder"].cpu)


def inference_jobs(
    model: nn.Module, folder: Path, size: ImageSize, batch_size: int = BATCH_SIZE
) -> dict[str, Callable[[], object]]:
    """The timed jobs over every image under ``folder``: both variants and preprocessing."""
    transform = ck.eval_transforms(size.crop, size.resize)
    names = [str(index) for index in range(model.fc.out_features)]
    paths = ck.image_files(folder)

    def preprocess() -> list[torch.Tensor]:
        return [transform(load_rgb(path)) for path in paths]

    jobs = {
        "one_by_one": lambda: plain_predict_one_by_one(model, paths, transform, names),
        "predict_folder": lambda: ck.predict_folder(
            model, folder, transform, names, batch_size=batch_size
        ),
        "preprocessing": preprocess,
    }
    jobs[WORKERS_VARIANT] = lambda: ck.predict_folder(
        model, folder, transform, names, batch_size=batch_size, num_workers=DECODE_WORKERS
    )
    jobs.update(forward_only_jobs(model, preprocess(), batch_size))
    return jobs


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def forward_only_jobs(
    model: nn.Module, tensors: list[torch.Tensor], batch_size: int
) -> dict[str, Callable[[], object]]:
    """The network alone on ready tensors: one at a time, and batched in both memory layouts.

    No files and no transforms, so these bound what batching can give on this machine, and
    the two batched layouts show what storing a batch channels-last (NHWC) is worth.
    """
    singles = [tensor.unsqueeze(0) for tensor in tensors]
    batches = [
        torch.stack(tensors[start : start + batch_size])
        for start in range(0, len(tensors), batch_size)
    ]
    channels_last = [batch.contiguous(memory_format=torch.channels_last) for batch in batches]

    def run(inputs: list[torch.Tensor]) -> Callable[[], None]:
        def forward_all() -> None:
            with torch.inference_mode():
                for batch in inputs:
                    model(batch)

        return forward_all

    return {
        FORWARD_ONE: run(singles),
        FORWARD_NCHW: run(batches),
        FORWARD_NHWC: run(channels_last),
    }


def measure_case(case: Case, valid_dir: Path, repeats: int) -> CaseResult:
    model = resnet18_classifier(seed=0).eval()
    jobs = inference_jobs(model, valid_dir, case.size)
    interleaved(jobs, 1)  # warm-up: every batch shape, file cache and kernel prepared
    runs = interleaved(jobs, repeats)
    return CaseResult(case, len(ck.image_files(valid_dir)), runs)


NOTES = """\
How to read it. Both variants open, decode, convert and transform every image one at a time
(`predict_folder` also applies EXIF orientation and safe-decoding checks); `predict_folder`
runs the network once per batch of 32, stored channels-last on a CPU, under
`inference_mode`. The last column is the network alone on ready tensors, in the same run:
it is the most batching can give on this machine, whatever the loop around it does. On a
CPU a single 224-px image already keeps the cores busy, so a batch of 32 costs nearly as
much as 32 single passes and only the channels-last layout (oneDNN's faster convolutions)
gains much; small images leave a batch-1 pass mostly overhead, and there batching pays
several times over. The preprocessing share is the part of the batched time no forward
pass can shorten; decode workers only help when there are idle cores for them (on a 2-core
machine they compete with the compute threads, the workers column).
"""


def render(results: Sequence[CaseResult], environment: dict, seconds: float) -> str:
    rows = [
        "| size | images | one by one img/s | predict_folder img/s | speedup wall "
        f"(target >= {SPEEDUP_TARGET:.0f}x) | speedup CPU "
        "| preprocessing CPU s (share of batched) | repeats wall s: one by one; predict_folder "
        f"| {WORKERS_VARIANT} (wall) "
        "| network alone, batched vs batch 1: NCHW / channels-last |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        workers = (
            f"{r.images_per_second(WORKERS_VARIANT):.1f} img/s = "
            f"{r.images_per_second(WORKERS_VARIANT) / r.images_per_second('one_by_one'):.2f}x"
        )
        rows.append(
            f"| {r.case.size.label} | {r.images} "
            f"| {r.images_per_second('one_by_one'):.1f} "
            f"| {r.images_per_second('predict_folder'):.1f} "
            f"| **{r.speedup():.2f}x** {verdict(r.speedup(), SPEEDUP_TARGET, at_most=False)} "
            f"| {r.speedup('cpu'):.2f}x "
            f"| {median(r.runs['preprocessing'].cpu):.2f} ({r.preprocessing_share:.0%}) "
            f"| {seconds_list(r.runs['one_by_one'].wall)}; "
            f"{seconds_list(r.runs['predict_folder'].wall)} | {workers} "
            f"| {r.forward_speedup(FORWARD_NCHW):.2f}x / {r.forward_speedup(FORWARD_NHWC):.2f}x |"
        )
    return "\n".join(
        [
            section_intro(TITLE, f"bench.{NAME}", environment, seconds),
            f"Folder = the synthetic valid split (class sub-folders), eval transforms, "
            f"`predict_folder(batch_size={BATCH_SIZE}, top_k=5)` vs the source's loop; "
            "images per second over the whole folder, file listing included.\n",
            *rows,
            "",
            f"![batched inference]({NAME}.png)\n",
            NOTES,
        ]
    )


def plot(results: Sequence[CaseResult]) -> Path:
    return grouped_bar_plot(
        BENCH_DIR / f"{NAME}.png",
        "Images per second on a folder (higher is better)",
        "images / s",
        [r.case.size.label for r in results],
        {
            variant: [r.images_per_second(variant) for r in results]
            for variant in ("one_by_one", "predict_folder", WORKERS_VARIANT)
        },
        log_scale=True,
    )


def main(argv: list[str] | None = None) -> None:
    args = base_parser(__doc__.splitlines()[0]).parse_args(argv)
    apply_threads(args.threads)
    environment = collect_environment()
    started = time.perf_counter()
    cases = QUICK_CASES if args.quick else FULL_CASES
    repeats = args.repeats or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        data_dir = synthetic_data(Path(tmp), 1, max(case.per_class for case in cases))
        results = []
        for case in cases:
            # Keep per_class images of each class: the folder IS the benchmark's input.
            folder = Path(tmp) / f"folder-{case.size.crop}"
            _copy_per_class(data_dir / "valid", folder, case.per_class)
            results.append(measure_case(case, folder, repeats))
    if not args.quick:
        plot(results)
    report(NAME, render(results, environment, time.perf_counter() - started), quick=args.quick)


def _copy_per_class(source: Path, target: Path, per_class: int) -> None:
    """Copy the first ``per_class`` images of each class folder of ``source`` to ``target``."""
    for class_dir in sorted(path for path in source.iterdir() if path.is_dir()):
        (target / class_dir.name).mkdir(parents=True)
        for image in sorted(class_dir.iterdir())[:per_class]:
            shutil.copy2(image, target / class_dir.name / image.name)


if __name__ == "__main__":
    main()
