"""Lesson 06's fine-tuning recipe on real photos, over several seeds.

Three transfer-learning strategies on the same data (lesson 06, section 6):

(a) feature extraction: a new head trained on cached features of the frozen backbone;
(b) full fine-tuning: everything trains from the first epoch, the new head at a higher rate;
(c) freeze, then unfreeze: (a)'s best head, then everything trains at low rates.

(b) and (c) use the same recipe for their expensive epochs (a full backward pass): the
BatchNorm statistics stay the pretrained ones (``ck.freeze_batchnorm_statistics``), Adam
with discriminative learning rates, and a one-cycle schedule (warm-up, then cosine decay,
stepped every batch). ``--bn-train`` lets BatchNorm adapt instead, to measure what the
frozen statistics are worth. The backbone features for (a) and for (c)'s head phase are
computed once and shared by every seed, so the script costs little more than the epochs
that really need the whole network.

Each seed sets the head's initialisation, the batch order and the augmentations. The
script prints, per strategy, the validation accuracy after the last epoch (no choice of
an epoch on the validation set) and the best epoch's, as mean and spread over the seeds,
and writes the same table to ``bench/fine_tune_recipe.md``.

    COURSE_DATA_ROOT=... TORCH_HOME=... COURSE_ARCH=mobilenet_v2 \\
        python -m bench.fine_tune_recipe --seeds 42 43 44
    COURSE_MODE=smoke python -m bench.fine_tune_recipe --seeds 0 --no-write   # a sanity run
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import coursekit as ck
from bench.common import BENCH_DIR, collect_environment, command_line, environment_markdown

RESULTS = BENCH_DIR / "fine_tune_recipe.md"
STRATEGIES = ("(a) feature extraction", "(b) full fine-tuning", "(c) freeze, then unfreeze")


@dataclass(frozen=True)
class Recipe:
    """The numbers of the expensive (unfrozen) epochs of (b) and (c)."""

    epochs: int
    backbone_lr: float
    head_lr: float  # (c): the head is already trained
    new_head_lr: float  # (b): the head starts random
    warmup: float  # share of the steps spent warming up (OneCycleLR's pct_start)
    bn_frozen: bool


@dataclass
class Run:
    """Validation accuracy after the last epoch and of the best epoch, and the wall time."""

    last: float
    best: float
    seconds: float

    @classmethod
    def of(cls, valid_acc: Sequence[float], seconds: float) -> Run:
        return cls(valid_acc[-1], max(valid_acc), seconds)


class Experiment:
    """The data, the pretrained model and its cached features, shared by every seed."""

    def __init__(self, settings: ck.Settings) -> None:
        self.settings = settings
        self.device = ck.pick_device(settings.device)
        data_dir = ck.find_dataset("hymenoptera", settings)
        train_tf = ck.train_transforms(
            settings.image_size, settings.resize_size, vertical_flip=False
        )
        eval_tf = ck.eval_transforms(settings.image_size, settings.resize_size)
        sizes = {
            "train_per_class": settings.train_per_class,
            "valid_per_class": settings.valid_per_class,
            "validation_split": settings.validation_split,
            "split_seed": settings.split_seed,
        }
        self.train_ds, self.valid_ds = ck.build_datasets(data_dir, train_tf, eval_tf, **sizes)
        plain_train, plain_valid = ck.build_datasets(
            data_dir, eval_tf, eval_tf, verify=False, **sizes
        )
        self.num_classes = len(self.train_ds.classes)
        self.pretrained = ck.pretrained(settings.arch, settings=settings)
        ck.replace_head(self.pretrained, self.num_classes)
        started = time.perf_counter()
        plain = ck.make_loaders(
            plain_train, plain_valid, settings.batch_size, num_workers=settings.num_workers
        )
        backbone = ck.without_head(self.pretrained)
        self.train_features = ck.extract_features(backbone, plain["train"], self.device)
        self.valid_features = ck.extract_features(backbone, plain["valid"], self.device)
        self.extract_seconds = time.perf_counter() - started
        self.criterion = nn.CrossEntropyLoss()
        self.workdir = Path(tempfile.mkdtemp(prefix="fine_tune_recipe-"))

    def new_model(self, seed: int) -> nn.Module:
        """The pretrained backbone, frozen, with a new head initialised from ``seed``."""
        model = copy.deepcopy(self.pretrained)
        ck.freeze(model)
        ck.seed_everything(seed)
        ck.replace_head(model, self.num_classes)
        return model.to(self.device)

    def head_only(self, model: nn.Module, seed: int) -> Run:
        """(a): the model's head on the cached features; the model keeps the BEST head."""
        settings = self.settings
        head = model.get_submodule(ck.head_name(model))
        optimizer = torch.optim.Adam(head.parameters(), lr=settings.lr)
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=settings.lr_step_size, gamma=settings.lr_gamma
        )
        loaders = ck.feature_loaders(
            self.train_features, self.valid_features, settings.batch_size, seed=seed
        )
        checkpoint = self.workdir / f"head_{seed}.pt"
        started = time.perf_counter()
        history = ck.fit(head, loaders, self.criterion, optimizer, epochs=settings.epochs,
                         scheduler=scheduler, device=self.device, checkpoint_path=checkpoint,
                         progress=False, seed=seed)
        seconds = time.perf_counter() - started
        ck.load_checkpoint(checkpoint, head)
        return Run.of(history.valid_acc, seconds)

    def unfrozen(self, model: nn.Module, recipe: Recipe, head_lr: float, seed: int) -> Run:
        """(b) and (c)'s second phase: everything trains, on augmented images."""
        ck.unfreeze(model)
        if recipe.bn_frozen:
            ck.freeze_batchnorm_statistics(model)
        groups = ck.param_groups(model, recipe.backbone_lr, head_lr / recipe.backbone_lr)
        optimizer = torch.optim.Adam(groups)
        loaders = ck.make_loaders(self.train_ds, self.valid_ds, self.settings.batch_size,
                                  num_workers=self.settings.num_workers, seed=seed)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in groups],
            total_steps=recipe.epochs * len(loaders["train"]),
            pct_start=recipe.warmup,
        )
        started = time.perf_counter()
        history = ck.fit(model, loaders, self.criterion, optimizer, epochs=recipe.epochs,
                         scheduler=scheduler, device=self.device, progress=False, seed=seed)
        return Run.of(history.valid_acc, time.perf_counter() - started)

    def one_seed(self, seed: int, recipe: Recipe, strategies: Sequence[str]) -> dict[str, Run]:
        model = self.new_model(seed)
        runs = {STRATEGIES[0]: self.head_only(model, seed)}
        if STRATEGIES[2] in strategies:
            runs[STRATEGIES[2]] = self.unfrozen(model, recipe, recipe.head_lr, seed)
        if STRATEGIES[1] in strategies:
            full = self.unfrozen(self.new_model(seed), recipe, recipe.new_head_lr, seed)
            runs[STRATEGIES[1]] = full
        return runs


def spread(values: Sequence[float]) -> str:
    """Mean ± sample standard deviation (min-max) of accuracies, in percent.

    >>> spread([0.9, 0.92, 0.94])
    '92.0% ± 2.0 (90.0-94.0)'
    """
    mean = statistics.fmean(values)
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return (f"{mean:.1%} ± {100 * deviation:.1f} "
            f"({100 * min(values):.1f}-{100 * max(values):.1f})")


def table(results: Mapping[int, Mapping[str, Run]]) -> str:
    """One row per strategy over the seeds that ran it ("-" where a seed did not)."""
    seeds = list(results)
    rows = ["| strategy | last epoch: mean ± sd (min-max) | best epoch: mean ± sd | "
            + " | ".join(f"seed {seed} last" for seed in seeds) + " | seconds per run |",
            "|---|---|---|" + "---|" * len(seeds) + "---|"]
    for name in STRATEGIES:
        runs = [results[seed][name] for seed in seeds if name in results[seed]]
        if not runs:
            continue
        cells = [f"{results[seed][name].last:.1%}" if name in results[seed] else "-"
                 for seed in seeds]
        seconds = statistics.fmean(run.seconds for run in runs)
        rows.append(f"| {name} | {spread([r.last for r in runs])} | "
                    f"{spread([r.best for r in runs]).split(' (')[0]} | "
                    + " | ".join(cells) + f" | {seconds:.0f} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--epochs", type=int, default=None,
                        help="unfrozen epochs of (b) and (c) (default: settings.fine_tune_epochs)")
    parser.add_argument("--backbone-lr", type=float, default=None,
                        help="default: settings.fine_tune_lr")
    parser.add_argument("--head-multiplier", type=float, default=None,
                        help="(c)'s head rate / backbone rate (default: settings value)")
    parser.add_argument("--warmup", type=float, default=0.3)
    parser.add_argument("--bn-train", action="store_true",
                        help="let BatchNorm statistics adapt in (b) and (c)")
    parser.add_argument("--skip-full", action="store_true",
                        help="leave out (b), e.g. while trying recipes for (c)")
    parser.add_argument("--no-write", action="store_true",
                        help=f"with --from-json: print the table, do not write {RESULTS.name}")
    parser.add_argument("--save-json", type=Path, default=None,
                        help="also save the runs of every seed to this file")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None,
                        help="train nothing: write the table of runs saved by --save-json "
                        "(seeds run in separate processes)")
    args = parser.parse_args(argv)
    if args.from_json:
        write_table(args.from_json, args.no_write)
        return

    settings = ck.get_settings()
    backbone_lr = args.backbone_lr or settings.fine_tune_lr
    recipe = Recipe(
        epochs=args.epochs or settings.fine_tune_epochs,
        backbone_lr=backbone_lr,
        head_lr=backbone_lr * (args.head_multiplier or settings.head_lr_multiplier),
        new_head_lr=settings.lr,
        warmup=args.warmup,
        bn_frozen=not args.bn_train,
    )
    experiment = Experiment(settings)
    print(f"{settings.arch} on {len(experiment.train_ds)} train / {len(experiment.valid_ds)} "
          f"valid images; features cached in {experiment.extract_seconds:.0f} s; {recipe}")
    results = {}
    for seed in args.seeds:
        strategies = [s for s in STRATEGIES if not (args.skip_full and s == STRATEGIES[1])]
        results[seed] = experiment.one_seed(seed, recipe, strategies)
        if args.save_json:
            args.save_json.write_text(json.dumps({
                "setup": setup_text(settings, experiment, recipe),
                "runs": {str(k): {n: dataclasses.asdict(r) for n, r in v.items()}
                         for k, v in results.items()},
            }, indent=1))
        print(f"seed {seed}: " + "; ".join(
            f"{name} last {run.last:.1%} best {run.best:.1%} ({run.seconds:.0f} s)"
            for name, run in results[seed].items()), flush=True)
    if not args.save_json:
        print(render(setup_text(settings, experiment, recipe), results))


def setup_text(settings: ck.Settings, experiment: Experiment, recipe: Recipe) -> str:
    return (
        f"`{command_line('bench.fine_tune_recipe')}` on `{settings.arch}`, "
        f"{len(experiment.train_ds)} train and {len(experiment.valid_ds)} valid images "
        f"(hymenoptera), {settings.image_size} px. Head phase: {settings.epochs} epochs on "
        f"cached features, Adam lr {settings.lr:g}, StepLR {settings.lr_step_size}/"
        f"{settings.lr_gamma:g}. Unfrozen epochs: {recipe}."
    )


def render(setup: str | list[str], results: Mapping[int, Mapping[str, Run]]) -> str:
    setups = [setup] if isinstance(setup, str) else setup
    return "\n\n".join([
        "# Fine-tuning recipe: three strategies over seeds",
        *sorted(set(setups)),
        "Validation accuracy after the last epoch of each strategy (no epoch chosen on the "
        "validation set), and of its best epoch, over the seeds. A shared machine: other jobs "
        "ran at the same time, so the seconds are noisy.",
        table(results),
        environment_markdown(collect_environment()),
    ])


def write_table(paths: Sequence[Path], no_write: bool) -> None:
    """The table of the runs saved by several processes (``--save-json``)."""
    setups, results = [], {}
    for path in paths:
        saved = json.loads(path.read_text())
        setups.append(saved["setup"])
        for seed, runs in saved["runs"].items():
            results[int(seed)] = {name: Run(**run) for name, run in runs.items()}
    markdown = render(setups, dict(sorted(results.items())))
    print(markdown)
    if not no_write:
        RESULTS.write_text(markdown + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
