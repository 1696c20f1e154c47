"""Benchmark 2: training a head on cached features vs running the whole network every epoch.

The frozen-backbone phase of transfer learning. The plain loop (the source's ``train_model``
on a ResNet-18 whose backbone is frozen) runs every image through the whole network in
every epoch; coursekit runs the backbone ONCE (``extract_features``) and then trains the
head on the cached features (``feature_loaders`` + ``fit``). Epochs 2+ are compared (epoch 1
of the cached variant pays for the extraction, reported separately). Target: >= 20x faster
per epoch, with the same head accuracy within noise.

    python -m bench.cached_features            # full sizes, writes its section of results.md
    python -m bench.cached_features --quick    # 32 px, tiny data: a sanity run
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

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
from bench.plain_loops import plain_loaders, plain_train_model

NAME = "cached_features"
TITLE = "2. Frozen backbone: cached features vs the whole network every epoch"
SPEEDUP_TARGET = 20.0
LR = 1e-3


@dataclass(frozen=True)
class Case:
    """One image size, images per class (12 classes) and epochs (epoch 1 included)."""

    size: ImageSize
    train_per_class: int
    valid_per_class: int
    epochs: int


FULL_CASES = (Case(SMOKE_SIZE, 24, 12, epochs=6), Case(FULL_SIZE, 4, 4, epochs=4))
QUICK_CASES = (Case(TINY_SIZE, 4, 2, epochs=3),)


@dataclass
class CaseResult:
    case: Case
    train_images: int
    valid_images: int
    first_epoch_seconds: dict[str, float]
    later_epochs: dict[str, Runs]
    valid_acc: dict[str, list[float]]

    def speedup(self, clock: str = "wall") -> float:
        """How many times faster a cached epoch (2+) is than a plain one."""
        plain, cached = (getattr(self.later_epochs[v], clock) for v in ("plain", "cached"))
        return ratio(plain, cached)

    @property
    def break_even_epochs(self) -> float:
        """Epochs after which extraction has paid for itself (total time equal)."""
        plain, cached = (median(self.later_epochs[v].wall) for v in ("plain", "cached"))
        extra_first_epoch = self.first_epoch_seconds["cached"] - self.first_epoch_seconds["plain"]
        return 1 + max(extra_first_epoch, 0.0) / max(plain - cached, 1e-9)


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, loader: DataLoader) -> None:
    """Give a randomly initialised network the BatchNorm statistics of ``loader``'s images.

    Pretrained weights come with running statistics measured on ImageNet; a random
    initialisation has mean 0 and variance 1, which would make eval-mode features (what
    cached features are) meaningless. One train-mode pass with cumulative averaging
    (``momentum=None``) stands in for them, since no weights are downloaded here.
    """
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    for inputs, _ in loader:
        model(inputs)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.eval()


def frozen_backbone_model(train_ds: Dataset, batch_size: int) -> nn.Module:
    """ResNet-18 with calibrated BatchNorm, every parameter frozen but a new ``fc`` head."""
    model = resnet18_classifier(seed=0)
    calibrate_batchnorm(model, DataLoader(train_ds, batch_size=batch_size))
    ck.freeze(model)
    torch.manual_seed(1)
    ck.replace_head(model, model.fc.out_features)
    return model


def measure_case(case: Case, data_dir: Path, batch_size: int) -> CaseResult:
    """Epoch times and valid accuracies of both variants for one case."""
    if case.epochs < 2:
        raise ValueError(f"epochs={case.epochs}: epochs 2+ are compared, so use at least 2.")
    size = case.size
    eval_tf = ck.eval_transforms(size.crop, size.resize)
    # The same eval-style images on both sides: cached features cannot be augmented, so the
    # plain loop gets the same images too and only the caching differs.
    train_ds, valid_ds = ck.build_datasets(
        data_dir,
        eval_tf,
        eval_tf,
        train_per_class=case.train_per_class,
        valid_per_class=case.valid_per_class,
        verify=False,
    )
    criterion = nn.CrossEntropyLoss()
    model = frozen_backbone_model(train_ds, batch_size)
    head = copy.deepcopy(model.fc)  # both heads start from the same weights
    accuracies: dict[str, list[float]] = {"plain": [], "cached": []}

    plain_loader = plain_loaders(train_ds, valid_ds, batch_size)
    plain_optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)

    def plain_epoch() -> None:
        metrics = plain_train_model(model, plain_loader, criterion, plain_optimizer, num_epochs=1)
        accuracies["plain"].append(metrics[0]["valid"][1])

    head_optimizer = torch.optim.Adam(head.parameters(), lr=LR)
    feature_data: dict[str, DataLoader] = {}

    def extract() -> None:
        backbone = copy.deepcopy(model)
        backbone.fc = nn.Identity()
        train_f, valid_f = (
            ck.extract_features(backbone, DataLoader(ds, batch_size=batch_size), "cpu")
            for ds in (train_ds, valid_ds)
        )
        feature_data.update(ck.feature_loaders(train_f, valid_f, batch_size=batch_size))

    def cached_epoch() -> None:
        history = ck.fit(
            head, feature_data, criterion, head_optimizer, epochs=1, device="cpu", progress=False
        )
        accuracies["cached"].append(history.valid_acc[-1])

    first = interleaved({"plain": plain_epoch, "extract": extract, "cached": cached_epoch}, 1)
    later = interleaved({"plain": plain_epoch, "cached": cached_epoch}, case.epochs - 1)
    return CaseResult(
        case=case,
        train_images=len(train_ds),
        valid_images=len(valid_ds),
        first_epoch_seconds={
            "plain": first["plain"].wall[0],
            "cached": first["extract"].wall[0] + first["cached"].wall[0],
        },
        later_epochs=later,
        valid_acc=accuracies,
    )


def _accuracy_cell(result: CaseResult) -> str:
    """Final valid accuracies and whether they differ by more than two standard errors."""
    plain, cached = result.valid_acc["plain"][-1], result.valid_acc["cached"][-1]
    pooled = (plain + cached) / 2
    # Two standard errors of a difference of two accuracies on n images each.
    noise = 2 * math.sqrt(2 * pooled * (1 - pooled) / result.valid_images)
    within = (
        "within noise"
        if abs(plain - cached) <= max(noise, 1 / result.valid_images)
        else "DIFFERENT"
    )
    return f"{plain:.3f} / {cached:.3f} (2 SE = {noise:.3f}: {within})"


def render(results: Sequence[CaseResult], environment: dict, seconds: float, batch: int) -> str:
    rows = [
        "| size | images train/valid | epochs 2+: plain wall s | cached wall s | speedup wall "
        f"(target >= {SPEEDUP_TARGET:.0f}x) | speedup CPU "
        "| epoch 1: plain s / cached s (extraction incl.) "
        "| break-even epoch | final valid acc plain / cached |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        plain, cached = r.later_epochs["plain"].wall, r.later_epochs["cached"].wall
        rows.append(
            f"| {r.case.size.label} | {r.train_images}/{r.valid_images} "
            f"| {median(plain):.2f} ({seconds_list(plain)}) "
            f"| {median(cached):.4f} "
            f"| **{r.speedup():.0f}x** {verdict(r.speedup(), SPEEDUP_TARGET, at_most=False)} "
            f"| {r.speedup('cpu'):.0f}x "
            f"| {r.first_epoch_seconds['plain']:.2f} / {r.first_epoch_seconds['cached']:.2f} "
            f"| {r.break_even_epochs:.1f} | {_accuracy_cell(r)} |"
        )
    return "\n".join(
        [
            section_intro(TITLE, f"bench.{NAME}", environment, seconds),
            f"Batch {batch}, Adam lr {LR} on the new head only, same eval-transformed images on "
            "both sides. The random backbone's BatchNorm statistics are calibrated on the "
            "train images first (a stand-in for pretrained weights, which are not downloaded).\n",
            *rows,
            "",
            f"![cached features]({NAME}.png)\n",
            NOTES,
        ]
    )


NOTES = """\
How to read it. A plain epoch pushes every image through all of ResNet-18 (and, because
`train_model` calls `model.train()`, lets the frozen BatchNorm layers keep updating their
running statistics, so its features drift a little from epoch to epoch); a cached epoch is
a few small matrix products on 512-number feature vectors. The speedup grows with the image
size and is what makes many head epochs (or trying several learning rates) affordable. The
catch, said in the lesson: features are computed once, so random augmentation cannot be
used. Epoch 1 of the cached variant includes the extraction (one forward pass over both
splits), so it costs about one plain epoch; the break-even column is the epoch after which
caching has saved time. Accuracies on this small synthetic set with a random backbone are
low and noisy; the check is only that both heads learn the same thing.
"""


def plot(results: Sequence[CaseResult]) -> Path:
    return grouped_bar_plot(
        BENCH_DIR / f"{NAME}.png",
        "Seconds per head-training epoch (epochs 2+, log scale)",
        "seconds",
        [r.case.size.label for r in results],
        {
            variant: [median(r.later_epochs[variant].wall) for r in results]
            for variant in ("plain", "cached")
        },
        log_scale=True,
    )


def main(argv: list[str] | None = None) -> None:
    args, environment, started = start_run(base_parser(__doc__.splitlines()[0]), argv)
    cases = QUICK_CASES if args.quick else FULL_CASES
    if args.repeats is not None:  # timed epochs = repeats, after epoch 1
        cases = tuple(
            Case(c.size, c.train_per_class, c.valid_per_class, args.repeats + 1) for c in cases
        )
    batch_size = 16 if args.quick else 32
    with tempfile.TemporaryDirectory(prefix="bench-cached-") as tmp:
        data_dir = synthetic_data_for(Path(tmp), cases)
        results = [measure_case(case, data_dir, batch_size) for case in cases]
    if not args.quick:
        plot(results)
    report(
        NAME,
        render(results, environment, time.perf_counter() - started, batch_size),
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
