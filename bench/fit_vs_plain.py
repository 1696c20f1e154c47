"""Benchmark 1: one ``coursekit.fit`` epoch (train + valid) vs the source's ``train_model``.

Time per epoch (interleaved repeats, median) and peak resident memory of the valid phase
(a fresh process per variant and repeat, see ``bench.valid_peak_memory``), at the course's
smoke (64 px) and full (224 px) image sizes, batch 32. Target: memory <= 0.7x. The time
ratio is measured but has no target any more: on a CPU both loops spend an epoch on the same
arithmetic, so 0.8x cannot be reached (results.md, analysis); benchmark 1b
(``bench.fit_vs_bound``) holds ``fit`` to the machine's own limit instead.

    python -m bench.fit_vs_plain            # full sizes, writes its section of results.md
    python -m bench.fit_vs_plain --quick    # 32 px, tiny data: a sanity run
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

import coursekit as ck
from bench.common import (
    BENCH_DIR,
    FULL_SIZE,
    SMOKE_SIZE,
    TINY_SIZE,
    ImageSize,
    Runs,
    base_parser,
    grouped_bar_plot,
    interleaved,
    median,
    ratio,
    report,
    resnet18_classifier,
    seconds_list,
    section_intro,
    start_run,
    synthetic_data_for,
    verdict,
)
from bench.plain_loops import plain_loaders, plain_phase, plain_train_model
from bench.valid_peak_memory import VARIANTS, autograd_saved_bytes

NAME = "fit_vs_plain"
TITLE = "1. fit epoch vs the plain train_model loop"
MEMORY_TARGET = 0.7
#: Fresh processes per variant for the peak-memory runs (peaks vary far less than times).
MEMORY_REPEATS = 2


@dataclass(frozen=True)
class Case:
    """One image size with its number of train and valid images per class (12 classes)."""

    size: ImageSize
    train_per_class: int
    valid_per_class: int


FULL_CASES = (Case(SMOKE_SIZE, 24, 12), Case(FULL_SIZE, 4, 4))
QUICK_CASES = (Case(TINY_SIZE, 4, 2),)


@dataclass
class Contender:
    """One variant's own model, optimizer and loaders, all built the same way."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loaders: dict[str, DataLoader]


@dataclass
class CaseResult:
    case: Case
    train_images: int
    valid_images: int
    epochs: dict[str, Runs]
    valid_phases: dict[str, Runs]
    peak_mib: dict[str, list[float]]
    increase_mib: dict[str, list[float]]
    saved_mib: dict[str, float]
    memory_method: str


# --------------------------------------------------------------------------- the two loops


def coursekit_epoch(contender: Contender, criterion: nn.Module) -> None:
    ck.fit(
        contender.model,
        contender.loaders,
        criterion,
        contender.optimizer,
        epochs=1,
        device="cpu",
        progress=False,
    )


def plain_epoch(contender: Contender, criterion: nn.Module) -> None:
    plain_train_model(
        contender.model, contender.loaders, criterion, contender.optimizer, num_epochs=1
    )


def coursekit_valid(contender: Contender, criterion: nn.Module) -> None:
    ck.evaluate(contender.model, contender.loaders["valid"], criterion, "cpu")


def plain_valid(contender: Contender, criterion: nn.Module) -> None:
    plain_phase(
        contender.model, contender.loaders["valid"], criterion, contender.optimizer, "valid"
    )


EPOCHS: dict[str, Callable[[Contender, nn.Module], None]] = {
    "coursekit": coursekit_epoch,
    "plain": plain_epoch,
}
VALID_PHASES: dict[str, Callable[[Contender, nn.Module], None]] = {
    "coursekit": coursekit_valid,
    "plain": plain_valid,
}


def build_loaders(variant: str, train_ds: Dataset, valid_ds: Dataset, batch_size: int) -> dict:
    """Each side's own way of making loaders; 0 workers on both (the source's default)."""
    if variant == "coursekit":
        return ck.make_loaders(train_ds, valid_ds, batch_size, num_workers=0)
    return plain_loaders(train_ds, valid_ds, batch_size, num_workers=0)


def contenders(train_ds: Dataset, valid_ds: Dataset, batch_size: int) -> dict[str, Contender]:
    """Both variants with identical initial weights and optimizer settings."""
    reference = resnet18_classifier(seed=0)
    result = {}
    for variant in VARIANTS:
        model = copy.deepcopy(reference)
        result[variant] = Contender(
            model,
            torch.optim.Adam(model.parameters(), lr=1e-3),
            build_loaders(variant, train_ds, valid_ds, batch_size),
        )
    return result


def first_batch(dataset: Dataset, batch_size: int) -> Subset:
    """The first ``batch_size`` samples of ``dataset``, as a dataset."""
    return Subset(dataset, range(min(batch_size, len(dataset))))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- memory


def memory_runs(
    case: Case, data_dir: Path, batch_size: int, threads: int | None, repeats: int
) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """Valid-phase peak RSS, one fresh process per variant and repeat (A B A B ...)."""
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for _ in range(repeats):
        for variant in VARIANTS:
            command = [
                sys.executable, "-m", "bench.valid_peak_memory",
                "--variant", variant, "--data", str(data_dir),
                "--crop", str(case.size.crop), "--resize", str(case.size.resize),
                "--valid-per-class", str(case.valid_per_class), "--batch-size", str(batch_size),
            ]  # fmt: skip
            if threads is not None:
                command += ["--threads", str(threads)]
            done = subprocess.run(
                command, capture_output=True, text=True, check=True, cwd=BENCH_DIR.parent
            )
            runs[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return runs, runs[VARIANTS[0]][0]["method"]


def saved_by_autograd_mib(
    sides: dict[str, Contender], criterion: nn.Module, batch_size: int
) -> dict[str, float]:
    """MiB autograd saves during one valid batch of each variant (0 under inference_mode)."""
    result = {}
    for variant, side in sides.items():
        batch = first_batch(side.loaders["valid"].dataset, batch_size)
        one = Contender(side.model, side.optimizer, {"valid": DataLoader(batch, batch_size)})
        saved = autograd_saved_bytes(lambda one=one, v=variant: VALID_PHASES[v](one, criterion))
        result[variant] = saved / 2**20
    return result


# --------------------------------------------------------------------------- one case


def measure_case(
    case: Case, data_dir: Path, batch_size: int, repeats: int, threads: int | None
) -> CaseResult:
    size = case.size
    train_ds, valid_ds = ck.build_datasets(
        data_dir,
        ck.train_transforms(size.crop, size.resize),
        ck.eval_transforms(size.crop, size.resize),
        train_per_class=case.train_per_class,
        valid_per_class=case.valid_per_class,
        verify=False,
    )
    criterion = nn.CrossEntropyLoss()
    sides = contenders(train_ds, valid_ds, batch_size)

    def jobs(kind: dict[str, Callable[[Contender, nn.Module], None]]) -> dict:
        return {v: (lambda v=v: kind[v](sides[v], criterion)) for v in sides}

    # Warm-up: one untimed epoch of each, so that every batch shape (the last batch is
    # smaller) has its kernels prepared before the clock runs.
    interleaved(jobs(EPOCHS), 1)
    epochs = interleaved(jobs(EPOCHS), repeats)
    # The valid phase is short: more repeats for the same noise.
    valid_phases = interleaved(jobs(VALID_PHASES), 2 * repeats - 1)
    saved = saved_by_autograd_mib(sides, criterion, batch_size)
    runs, method = memory_runs(
        case, data_dir, batch_size, threads, MEMORY_REPEATS if repeats > 1 else 1
    )
    return CaseResult(
        case=case,
        train_images=len(train_ds),
        valid_images=len(valid_ds),
        epochs=epochs,
        valid_phases=valid_phases,
        peak_mib={v: [run["peak_kib"] / 1024 for run in runs[v]] for v in VARIANTS},
        increase_mib={
            v: [(run["peak_kib"] - run["rss_before_kib"]) / 1024 for run in runs[v]]
            for v in VARIANTS
        },
        saved_mib=saved,
        memory_method=method,
    )


# --------------------------------------------------------------------------- report


def _ratio_of(runs: dict[str, Runs], clock: str) -> float:
    return ratio(getattr(runs["coursekit"], clock), getattr(runs["plain"], clock))


def _best_possible(result: CaseResult) -> float:
    """The epoch ratio coursekit would reach if its valid phase took no time at all."""
    plain_epoch = median(result.epochs["plain"].cpu)
    return (plain_epoch - median(result.valid_phases["plain"].cpu)) / plain_epoch


def _time_rows(results: Sequence[CaseResult]) -> list[str]:
    rows = [
        "| size | images train/valid | epoch wall s coursekit / plain (repeats) "
        "| epoch ratio wall | epoch ratio CPU "
        "| valid phase ratio wall / CPU | bound: epoch ratio if coursekit's valid phase were free |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        wall = _ratio_of(r.epochs, "wall")
        rows.append(
            f"| {r.case.size.label} | {r.train_images}/{r.valid_images} "
            f"| {median(r.epochs['coursekit'].wall):.2f} / {median(r.epochs['plain'].wall):.2f} "
            f"({seconds_list(r.epochs['coursekit'].wall)} / {seconds_list(r.epochs['plain'].wall)}) "
            f"| **{wall:.2f}x** "
            f"| {_ratio_of(r.epochs, 'cpu'):.2f}x "
            f"| {_ratio_of(r.valid_phases, 'wall'):.2f}x / {_ratio_of(r.valid_phases, 'cpu'):.2f}x "
            f"| {_best_possible(r):.2f}x |"
        )
    return rows


def _memory_rows(results: Sequence[CaseResult]) -> list[str]:
    rows = [
        "| size | valid peak RSS MiB coursekit / plain | peak ratio "
        f"(target <= {MEMORY_TARGET}) | increase over setup MiB coursekit / plain = ratio "
        "| autograd-saved MiB per valid batch coursekit / plain |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        peak = ratio(r.peak_mib["coursekit"], r.peak_mib["plain"])
        increase_ck, increase_plain = (median(r.increase_mib[v]) for v in VARIANTS)
        rows.append(
            f"| {r.case.size.label} | {median(r.peak_mib['coursekit']):.0f} / "
            f"{median(r.peak_mib['plain']):.0f} "
            f"| **{peak:.2f}x** {verdict(peak, MEMORY_TARGET, at_most=True)} "
            f"| {increase_ck:.0f} / {increase_plain:.0f} = "
            f"{increase_ck / max(increase_plain, 1e-9):.2f}x "
            f"| {r.saved_mib['coursekit']:.0f} / {r.saved_mib['plain']:.0f} |"
        )
    return rows


NOTES = """\
How to read it. The train phase is the same work in both loops (forward, backward, Adam
step on the same batches) and is most of an epoch, so the epoch ratio can only move as far
as the valid phase lets it; the last column is the best ratio coursekit could reach if its
valid phase took no time at all, from the plain loop's own phase times. coursekit's valid
phase runs under `torch.inference_mode`: no graph, no activations kept for a backward pass
that never comes. On a CPU that saves some time and most of the valid phase's extra memory
(the memory table); `zero_grad` per valid batch and `.item()` per batch cost next to nothing
on a CPU (no device to wait for; on a GPU the per-batch sync is what coursekit's on-device
running sums avoid). Single epochs vary by several percent between repeats even on a quiet
machine, more than the difference the loop makes to a whole epoch: read the valid-phase
column and the memory table for that difference. Peak memory: each variant's valid phase
runs in a fresh process after the same setup (dataset, loader, model), with the peak
(`VmHWM`) reset just before it, so the train phase's allocations cannot hide it. "Increase
over setup" subtracts the resident memory at the start of the valid phase (Python, torch and
the model, about the same in both). Checkpointing is off on both sides.
"""


def render(results: Sequence[CaseResult], environment: dict, seconds: float, batch: int) -> str:
    method = results[0].memory_method
    lines = [
        section_intro(TITLE, f"bench.{NAME}", environment, seconds),
        f"Batch {batch}, Adam lr 1e-3, train transforms with augmentation, eval transforms "
        "for valid, 0 loader workers on both sides. Epoch = train + valid phase, timed around "
        "`ck.fit(..., epochs=1)` and `train_model(..., num_epochs=1)`; repeats in brackets.\n",
        *_time_rows(results),
        "",
        f"Valid-phase memory (method: {method}):\n",
        *_memory_rows(results),
        "",
        f"![fit vs plain ratios]({NAME}.png)\n",
        NOTES,
    ]
    return "\n".join(lines)


def plot(results: Sequence[CaseResult]) -> Path:
    series = {
        "epoch time (wall)": [_ratio_of(r.epochs, "wall") for r in results],
        "epoch time (CPU)": [_ratio_of(r.epochs, "cpu") for r in results],
        "valid-phase time (CPU)": [_ratio_of(r.valid_phases, "cpu") for r in results],
        "valid peak RSS": [ratio(r.peak_mib["coursekit"], r.peak_mib["plain"]) for r in results],
    }
    return grouped_bar_plot(
        BENCH_DIR / f"{NAME}.png",
        "coursekit / plain loop (lower is better)",
        "ratio",
        [r.case.size.label for r in results],
        series,
        reference_lines={f"memory target {MEMORY_TARGET}": MEMORY_TARGET},
    )


def main(argv: list[str] | None = None) -> None:
    args, environment, started = start_run(base_parser(__doc__.splitlines()[0]), argv)
    cases = QUICK_CASES if args.quick else FULL_CASES
    batch_size = 16 if args.quick else 32
    repeats = args.repeats or (1 if args.quick else 5)
    with tempfile.TemporaryDirectory(prefix="bench-fit-") as tmp:
        data_dir = synthetic_data_for(Path(tmp), cases)
        results = [
            measure_case(case, data_dir, batch_size, repeats, args.threads) for case in cases
        ]
    if not args.quick:
        plot(results)
    markdown = render(results, environment, time.perf_counter() - started, batch_size)
    report(NAME, markdown, quick=args.quick)


if __name__ == "__main__":
    main()
