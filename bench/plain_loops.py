"""The loops coursekit replaces, written the way the source material writes them.

These reproduce the COSTS of the source posts' code (our own code, same operations), so
that the benchmarks compare coursekit with what a learner would otherwise run:

* ``plain_train_model``: the flowers-102 post's ``train_model``. Both splits shuffled,
  default loader workers; in BOTH phases ``optimizer.zero_grad()`` every batch and a
  forward pass with autograd on (the valid phase only skips ``backward``), so the valid
  phase records a graph and keeps every activation it needs alive until the batch ends;
  ``loss.item()`` per batch (a device sync on a GPU); correct predictions summed per batch.
* ``plain_predict_one_by_one``: the ResNet-18 post's inference loop. Per image: open,
  convert to RGB, transform, ``unsqueeze_``, forward under ``no_grad``, ``torch.max`` and
  one printed line (sent to a buffer here, so the cost stays and the console stays quiet).

Best-checkpoint saving and the LR scheduler are left out on both sides of every comparison.

    >>> history = plain_train_model(model, plain_loaders(train_ds, valid_ds, 32),
    ...                             nn.CrossEntropyLoss(), optimizer, num_epochs=1)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

PHASES = ("train", "valid")


def plain_loaders(
    train_ds: Dataset, valid_ds: Dataset, batch_size: int, num_workers: int = 0
) -> dict[str, DataLoader]:
    """``{"train", "valid"}`` loaders built like the source: both shuffled, nothing else set.

    >>> loaders = plain_loaders(train_ds, valid_ds, batch_size=32)  # doctest: +SKIP
    """
    return {
        phase: DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers)
        for phase, dataset in zip(PHASES, (train_ds, valid_ds), strict=True)
    }


def plain_phase(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    phase: str,
    device: torch.device | str = "cpu",
) -> tuple[float, float]:
    """One phase of the source's epoch; returns ``(loss, acc)`` over the dataset.

    >>> loss, acc = plain_phase(model, loader, criterion, optimizer, "valid")  # doctest: +SKIP
    """
    if phase not in PHASES:
        raise ValueError(f"phase={phase!r}: use one of {PHASES}.")
    model.train() if phase == "train" else model.eval()
    running_loss = 0.0
    running_corrects: int | torch.Tensor = 0  # becomes a tensor on the device at batch 1
    for inputs, labels in loader:
        inputs, labels = inputs.to(device), labels.to(device)
        optimizer.zero_grad()
        outputs = model(inputs)  # autograd stays on in the valid phase too
        loss = criterion(outputs, labels)
        _, preds = torch.max(outputs, 1)
        if phase == "train":
            loss.backward()
            optimizer.step()
        running_loss += loss.item() * inputs.size(0)
        running_corrects += torch.sum(preds == labels.data)
    size = len(loader.dataset)  # type: ignore[arg-type]
    return running_loss / size, (torch.as_tensor(running_corrects).double() / size).item()


def plain_train_model(
    model: nn.Module,
    loaders: dict[str, DataLoader],
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    num_epochs: int,
    device: torch.device | str = "cpu",
) -> list[dict[str, tuple[float, float]]]:
    """The source's epoch loop: a train then a valid phase per epoch; per-epoch metrics.

    >>> plain_train_model(model, loaders, criterion, optimizer, num_epochs=1)[0]["valid"]  # doctest: +SKIP
    (2.41, 0.125)
    """
    model.to(device)
    return [
        {
            phase: plain_phase(model, loaders[phase], criterion, optimizer, phase, device)
            for phase in PHASES
        }
        for _ in range(num_epochs)
    ]


def plain_predict_one_by_one(
    model: nn.Module,
    paths: Sequence[str | os.PathLike[str]],
    transform: Callable[[Image.Image], torch.Tensor],
    class_names: Sequence[str],
    device: torch.device | str = "cpu",
    log: TextIO | None = None,
) -> list[str]:
    """The source's per-image inference loop; the predicted class name of each path.

    >>> plain_predict_one_by_one(model, ["a.jpg"], transform, ["ants", "bees"])  # doctest: +SKIP
    ['bees']
    """
    log = log if log is not None else io.StringIO()
    model.to(device)
    model.eval()
    predictions: list[str] = []
    with torch.no_grad():
        for index, path in enumerate(paths):
            image = Image.open(path).convert("RGB")
            tensor = transform(image)
            tensor.unsqueeze_(0)
            tensor = tensor.to(device)
            tic = time.time()
            outputs = model(tensor)
            toc = time.time()
            _, predicted = torch.max(outputs.data, 1)
            predictions.append(class_names[int(predicted)])
            print(f"{index + 1}/{len(paths)}: {Path(path).name} {toc - tic:.3f}s", file=log)
    return predictions
