"""Where an epoch's time goes, per phase, in coursekit's loop and in the plain loop.

torch.profiler records one train phase and one valid phase of each variant on the same
model and batches (after a warm-up), and the time is split by what it was spent on: data
loading (the DataLoader's ``__next__``), backward, optimizer step, ``zero_grad``, and
the rest (the forward pass and bookkeeping such as ``.item()``). This is the evidence
behind benchmark 1: which part of an epoch a better loop can shorten at all.

    python -m bench.profile_loops            # 224 px, writes its section of results.md
    python -m bench.profile_loops --quick    # 32 px, prints only
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

import coursekit as ck
from bench.common import (
    FULL_SIZE,
    SMOKE_SIZE,
    TINY_SIZE,
    ImageSize,
    base_parser,
    interleaved,
    ratio,
    report,
    resnet18_classifier,
    section_intro,
    start_run,
    synthetic_data,
)
from bench.plain_loops import PHASES, plain_loaders, plain_phase

NAME = "profile_loops"
TITLE = "Profile: where an epoch's time goes (torch.profiler)"
#: Profiler range names (prefixes) and the category their total CPU time counts toward.
CATEGORIES = {
    "data loading": ("enumerate(DataLoader)",),
    "backward": ("autograd::engine::evaluate_function",),
    "optimizer step": ("Optimizer.step",),
    "zero_grad": ("Optimizer.zero_grad",),
    ".item() syncs": ("aten::item",),
}
OTHER = "forward + rest"
LAYOUT_BATCH = 32


def _category(name: str) -> str | None:
    return next(
        (category for category, prefixes in CATEGORIES.items() if name.startswith(prefixes)),
        None,
    )


def categorise(prof: profile, total_ms: float) -> dict[str, float]:
    """Milliseconds per category; whatever no category claims is the forward pass and rest.

    An event counts only when none of its enclosing ranges is counted already (Adam's step,
    for instance, calls ``.item()`` inside), so the categories add up without overlap.
    """
    spent = dict.fromkeys(CATEGORIES, 0.0)
    for event in prof.events():
        category = _category(event.name)
        if category is None:
            continue
        parent = event.cpu_parent
        while parent is not None and _category(parent.name) is None:
            parent = parent.cpu_parent
        if parent is None:
            spent[category] += event.cpu_time_total / 1000
    spent[OTHER] = max(total_ms - sum(spent.values()), 0.0)
    return spent


def profiled(run: Callable[[], object]) -> dict[str, float]:
    """Run once under the profiler; milliseconds per category plus the wall total."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        run()
        total_ms = (time.perf_counter() - started) * 1000
    return {"total": total_ms, **categorise(prof, total_ms)}


def phase_jobs(data_dir: Path, size: ImageSize, per_class: int, batch_size: int) -> dict:
    """The four profiled jobs: (variant, phase) -> a function running that phase once."""
    train_ds, valid_ds = ck.build_datasets(
        data_dir,
        ck.train_transforms(size.crop, size.resize),
        ck.eval_transforms(size.crop, size.resize),
        train_per_class=per_class,
        valid_per_class=per_class,
        verify=False,
    )
    criterion = nn.CrossEntropyLoss()
    reference = resnet18_classifier()
    ck_model, plain_model = copy.deepcopy(reference), copy.deepcopy(reference)
    ck_opt, plain_opt = (torch.optim.Adam(m.parameters()) for m in (ck_model, plain_model))
    ck_loaders = ck.make_loaders(train_ds, valid_ds, batch_size)
    plain = plain_loaders(train_ds, valid_ds, batch_size)
    return {
        ("coursekit", "train"): lambda: ck.train_one_epoch(
            ck_model, ck_loaders["train"], criterion, ck_opt, "cpu"
        ),
        ("coursekit", "valid"): lambda: ck.evaluate(
            ck_model, ck_loaders["valid"], criterion, "cpu"
        ),
        **{
            ("plain", phase): (
                lambda phase=phase: plain_phase(
                    plain_model, plain[phase], criterion, plain_opt, phase
                )
            )
            for phase in PHASES
        },
    }


def train_step_layouts(
    sizes: tuple[ImageSize, ...], batch_size: int, repeats: int
) -> dict[str, float]:
    """Median train-step seconds per image size, NCHW vs a channels-last model and batch.

    The one change to the train phase's arithmetic that a loop could make by itself: the
    memory layout (channels-last is what oneDNN's convolutions prefer).
    """
    criterion = nn.CrossEntropyLoss()
    ratios = {}
    for size in sizes:
        jobs = {}
        for layout in (torch.contiguous_format, torch.channels_last):
            model = resnet18_classifier().to(memory_format=layout).train()
            optimizer = torch.optim.Adam(model.parameters())
            images = torch.randn(batch_size, 3, size.crop, size.crop).contiguous(
                memory_format=layout
            )
            labels = torch.randint(0, 12, (batch_size,))

            def step(model=model, optimizer=optimizer, images=images, labels=labels) -> None:
                optimizer.zero_grad(set_to_none=True)
                criterion(model(images), labels).backward()
                optimizer.step()

            jobs[str(layout)] = step
        interleaved(jobs, 1)  # warm-up
        runs = interleaved(jobs, repeats)
        ratios[size.label] = ratio(
            runs[str(torch.channels_last)].wall, runs[str(torch.contiguous_format)].wall
        )
    return ratios


def render(
    rows: dict[tuple[str, str], dict[str, float]],
    environment: dict,
    seconds: float,
    size: ImageSize,
    images: int,
    layouts: dict[str, float],
) -> str:
    columns = [*CATEGORIES, OTHER]
    lines = [
        "| loop | phase | total ms | " + " | ".join(columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for (variant, phase), spent in rows.items():
        shares = " | ".join(f"{spent[c]:.0f} ({spent[c] / spent['total']:.0%})" for c in columns)
        lines.append(f"| {variant} | {phase} | {spent['total']:.0f} | {shares} |")
    return "\n".join(
        [
            section_intro(TITLE, f"bench.{NAME}", environment, seconds),
            f"{size.label}, {images} images per phase, batch 32, one profiled run of each "
            "phase after a warm-up run (profiler overhead included, same for both).\n",
            *lines,
            "",
            NOTES,
            "Train step of the same ResNet-18 with the model and the batch stored channels-last "
            f"instead of NCHW (batch {LAYOUT_BATCH}, interleaved repeats, ratio of medians; "
            "below 1 is faster): "
            + ", ".join(f"{label} {value:.2f}x" for label, value in layouts.items())
            + ".",
        ]
    )


NOTES = """\
One profiled run per phase: read the shares, not the totals (benchmark 1 has the timed,
repeated ratios). The train phase is the same operations in both loops and is where an
epoch's time goes (backward alone is more than half of it). What differs is the valid
phase: the plain loop's forward pass records autograd's graph (extra work and memory) and
calls `zero_grad` and `.item()` per batch, which cost next to nothing on a CPU. No change to
the loop can shorten the train phase; only the arithmetic can (memory layout such as
channels-last, smaller images, fewer trained layers, a GPU).
"""


def main(argv: list[str] | None = None) -> None:
    args, environment, started = start_run(base_parser(__doc__.splitlines()[0]), argv)
    size, per_class, batch_size = (TINY_SIZE, 2, 16) if args.quick else (FULL_SIZE, 4, 32)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        data_dir = synthetic_data(Path(tmp), per_class, per_class)
        jobs = phase_jobs(data_dir, size, per_class, batch_size)
        for job in jobs.values():  # warm-up
            job()
        rows = {key: profiled(job) for key, job in jobs.items()}
    layouts = train_step_layouts(
        (TINY_SIZE,) if args.quick else (SMOKE_SIZE, FULL_SIZE),
        LAYOUT_BATCH,
        args.repeats or (1 if args.quick else 5),
    )
    markdown = render(
        rows, environment, time.perf_counter() - started, size, per_class * 12, layouts
    )
    report(NAME, markdown, quick=args.quick)


if __name__ == "__main__":
    main()
