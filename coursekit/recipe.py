"""The course's transfer-learning recipe as one function: what ``python -m coursekit train`` runs.

Lesson 09's notebook, without the notebook: build the datasets of any ImageFolder tree or
single folder (seeded split), train a new head on the frozen pretrained backbone (cached
features), unfreeze and fine-tune with discriminative learning rates and a new StepLR,
then write the best checkpoint, the history (JSON and PNG) and an exported bundle.

    >>> result = train_recipe("data/hymenoptera", "runs/ants", get_settings())  # doctest: +SKIP
    >>> result.bundle  # doctest: +SKIP
    PosixPath('runs/ants/bundle.pt')

The same call runs under ``torchrun --nproc_per_node=N``: ``settings.batch_size`` is the
GLOBAL batch, split evenly between the processes, and the training order is dealt from
one shuffle, so N processes take the same steps on the same images as one process
(up to BatchNorm, which normalises each process's share of the batch on its own).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.utils.data import DataLoader

from coursekit import distributed as ddp
from coursekit.bundle import export_bundle
from coursekit.config import Settings, seed_everything
from coursekit.data import (
    build_datasets,
    eval_transforms,
    make_loaders,
    normalization_of,
    readable_class_names,
    train_transforms,
)
from coursekit.models import (
    freeze,
    get_weights,
    param_groups,
    pretrained,
    replace_head,
    unfreeze,
    without_head,
)
from coursekit.train import History, extract_features, feature_loaders, fit, load_checkpoint
from coursekit.viz import TensorBoardLogger, plot_history

#: The files a recipe run writes into its output folder.
HEAD_CHECKPOINT = "head_best.pt"
CHECKPOINT = "best.pt"
HISTORY_JSON = "history.json"
HISTORY_PNG = "history.png"
BUNDLE = "bundle.pt"


@dataclass
class RecipeResult:
    """What :func:`train_recipe` wrote and learned (the same in every process)."""

    checkpoint: Path
    bundle: Path
    history_json: Path
    history_png: Path
    head_history: History
    fine_tune_history: History


def train_recipe(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: Settings,
    *,
    amp: bool | None = None,
    channels_last: bool = False,
    tensorboard_dir: str | os.PathLike[str] | None = None,
) -> RecipeResult:
    """Head on the frozen backbone, then fine-tuning; files in ``out_dir`` (rank 0 writes).

    ``amp=None`` uses mixed precision on CUDA only; ``channels_last`` stores the model
    channels-last (faster convolutions on recent GPUs). ``tensorboard_dir`` logs both
    phases for TensorBoard. Under torchrun only rank 0 prints.

    >>> train_recipe("data/flowers102", "runs/flowers", get_settings())  # doctest: +SKIP
    """
    out = Path(out_dir)
    per_process_batch = _per_process_batch(settings.batch_size)
    device = ddp.default_device() if settings.device == "auto" else torch.device(settings.device)
    # The same random numbers in every process: DDP copies rank 0's weights only into the
    # module it wraps, so a backbone initialised differently per process would stay so.
    seed_everything(settings.seed)
    with _quiet_unless_main():
        weights = get_weights(settings.arch)
        mean, std = normalization_of(weights.transforms())
        train_tf = train_transforms(settings.image_size, settings.resize_size, mean, std)
        eval_tf = eval_transforms(settings.image_size, settings.resize_size, mean, std)
        train_ds, valid_ds = build_datasets(
            data_dir,
            train_tf,
            eval_tf,
            train_per_class=settings.train_per_class,
            valid_per_class=settings.valid_per_class,
            validation_split=settings.validation_split,
            split_seed=settings.split_seed,
            seed=settings.seed,
        )
        class_names = readable_class_names(Path(data_dir), train_ds.classes)
        print(f"{len(class_names)} classes, train {len(train_ds)}, valid {len(valid_ds)} images")
        model = pretrained(settings.arch, settings=settings)
        if ddp.is_main_process():
            out.mkdir(parents=True, exist_ok=True)
        head_history = _train_head(
            model,
            train_ds,
            valid_ds,
            eval_tf,
            per_process_batch,
            out,
            settings,
            device,
            tensorboard_dir,
        )
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        metadata = {
            "arch": settings.arch,
            "num_classes": len(class_names),
            "class_names": list(class_names),
            "image_size": settings.image_size,
            "resize_size": settings.resize_size,
            "mean": list(mean),
            "std": list(std),
        }
        fine_history = _fine_tune(
            model,
            train_ds,
            valid_ds,
            per_process_batch,
            out,
            settings,
            device,
            metadata,
            amp,
            tensorboard_dir,
        )
        ddp.barrier()  # rank 0 has written the best checkpoint; everyone may read it
        load_checkpoint(out / CHECKPOINT, model)
        if ddp.is_main_process():
            _write_results(out, model, head_history, fine_history, metadata)
        ddp.barrier()
    return RecipeResult(
        out / CHECKPOINT,
        out / BUNDLE,
        out / HISTORY_JSON,
        out / HISTORY_PNG,
        head_history,
        fine_history,
    )


def _per_process_batch(global_batch: int) -> int:
    processes = ddp.world_size()
    if global_batch % processes:
        raise ValueError(
            f"batch_size={global_batch} is the batch of all {processes} processes together "
            f"and must split evenly between them: use a multiple of {processes}, e.g. "
            f"--batch-size {processes * max(1, global_batch // processes)}."
        )
    return global_batch // processes


@contextlib.contextmanager
def _quiet_unless_main() -> Iterator[None]:
    """Only rank 0 prints: N copies of every line would tell nothing more."""
    if ddp.is_main_process():
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _dealt_from_one_shuffle(loaders: dict[str, Any], seed: int) -> dict[str, Any]:
    """The train loader's order comes from one shuffle of the whole set, dealt to the
    processes, so the same images make up each global batch whatever their number."""
    return {**loaders, "train": ddp.shard_loader(loaders["train"], shuffle=True, seed=seed)}


def _callbacks(tensorboard_dir: str | os.PathLike[str] | None, phase: str) -> list[Any]:
    if tensorboard_dir is None or not ddp.is_main_process():
        return []
    return [TensorBoardLogger(Path(tensorboard_dir) / phase)]


def _train_head(
    model: nn.Module,
    train_ds: Any,
    valid_ds: Any,
    eval_tf: Any,
    batch_size: int,
    out: Path,
    settings: Settings,
    device: torch.device,
    tensorboard_dir: str | os.PathLike[str] | None,
) -> History:
    """Phase 1: a new head on features the frozen backbone computes once (no augmentation)."""
    freeze(model)
    head = replace_head(model, len(train_ds.classes))
    plain_train_ds = copy.copy(train_ds)
    plain_train_ds.transform = eval_tf
    backbone = without_head(model)
    # Every process computes all the features, in order: correct, but not N times faster.
    train_features, valid_features = (
        extract_features(
            backbone, DataLoader(dataset, batch_size, num_workers=settings.num_workers), device
        )
        for dataset in (plain_train_ds, valid_ds)
    )
    del backbone
    loaders = feature_loaders(train_features, valid_features, batch_size, seed=settings.seed)
    metadata = {"arch": settings.arch, "num_classes": len(train_ds.classes), "part": "head"}
    history = _run_phase(
        head, loaders, head.parameters(), lr=settings.lr, lr_step_size=settings.lr_step_size,
        epochs=settings.epochs, checkpoint_path=out / HEAD_CHECKPOINT, metadata=metadata,
        amp=None, phase="head", settings=settings, device=device, tensorboard_dir=tensorboard_dir,
    )  # fmt: skip
    ddp.barrier()
    load_checkpoint(out / HEAD_CHECKPOINT, head)  # the best epoch, not the last
    return history


def _fine_tune(
    model: nn.Module,
    train_ds: Any,
    valid_ds: Any,
    batch_size: int,
    out: Path,
    settings: Settings,
    device: torch.device,
    metadata: dict[str, Any],
    amp: bool | None,
    tensorboard_dir: str | os.PathLike[str] | None,
) -> History:
    """Phase 2: everything trains, the backbone slower than the head, with a new scheduler."""
    unfreeze(model)
    groups = param_groups(model, settings.fine_tune_lr, settings.head_lr_multiplier)
    loaders = make_loaders(train_ds, valid_ds, batch_size, settings.num_workers, settings.seed)
    return _run_phase(
        model, loaders, groups, lr=settings.fine_tune_lr,
        lr_step_size=settings.fine_tune_lr_step_size, epochs=settings.fine_tune_epochs,
        checkpoint_path=out / CHECKPOINT, metadata=metadata, amp=amp, phase="fine_tune",
        settings=settings, device=device, tensorboard_dir=tensorboard_dir,
    )  # fmt: skip


def _run_phase(
    model: nn.Module,
    loaders: Any,
    parameters: Any,
    *,
    lr: float,
    lr_step_size: int,
    epochs: int,
    checkpoint_path: Path,
    metadata: dict[str, Any],
    amp: bool | None,
    phase: str,
    settings: Settings,
    device: torch.device,
    tensorboard_dir: str | os.PathLike[str] | None,
) -> History:
    """One phase of the recipe: Adam over ``parameters`` (a list, or param groups with their
    own lr), a StepLR every ``lr_step_size`` epochs, and ``fit`` with its checkpoints."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=lr_step_size, gamma=settings.lr_gamma
    )
    return fit(
        model,
        _dealt_from_one_shuffle(loaders, settings.seed),
        nn.CrossEntropyLoss(),
        optimizer,
        epochs=epochs,
        scheduler=scheduler,
        device=device,
        checkpoint_path=checkpoint_path,
        metadata=metadata,
        amp=amp,
        callbacks=_callbacks(tensorboard_dir, phase),
        seed=settings.seed,
    )


def _write_results(
    out: Path,
    model: nn.Module,
    head_history: History,
    fine_history: History,
    metadata: dict[str, Any],
) -> None:
    histories = {"head": head_history.to_dict(), "fine_tune": fine_history.to_dict()}
    (out / HISTORY_JSON).write_text(json.dumps(histories, indent=1), encoding="utf-8")
    both = {
        key: getattr(head_history, key) + getattr(fine_history, key)
        for key in ("train_loss", "train_acc", "valid_loss", "valid_acc")
    }
    figure = plot_history(both)
    figure.savefig(out / HISTORY_PNG, dpi=100)
    plt.close(figure)
    export_bundle(
        out / BUNDLE,
        model.to(memory_format=torch.contiguous_format),
        class_names=metadata["class_names"],
        arch=metadata["arch"],
        image_size=metadata["image_size"],
        resize_size=metadata["resize_size"],
        mean=metadata["mean"],
        std=metadata["std"],
    )
    print(f"best checkpoint {out / CHECKPOINT}, bundle {out / BUNDLE}, history {out / HISTORY_PNG}")
