"""Where a model lives and which mode it is in: the one implementation the other modules share.

    >>> model = torch.nn.Linear(2, 2)
    >>> model_device(model)
    device(type='cpu')

This module imports only ``coursekit.config``, so every module but config may use it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeAlias

import torch
from torch import nn

from coursekit.config import pick_device

#: Anything ``torch.device`` accepts, or "auto" (see ``config.pick_device``).
DeviceLike: TypeAlias = str | torch.device


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither).

    >>> model_device(torch.nn.ReLU())
    device(type='cpu')
    """
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating-point type of the model's parameters (float32 for a model without any).

    >>> model_dtype(torch.nn.Linear(2, 2).double())
    torch.float64
    """
    first = next(model.parameters(), None)
    return first.dtype if first is not None else torch.float32


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside the block; afterwards every sub-module gets its own flag back.

    Restoring per module (not ``model.train(flag)``) keeps a BatchNorm that was deliberately
    in eval mode inside a training model (frozen statistics during fine-tuning) that way.

    >>> with eval_mode(torch.nn.Dropout()) as m:
    ...     m.training
    False
    """
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, was_training in flags:
            module.training = was_training


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block with ``model`` in eval mode and ``torch.inference_mode()``, then restore it.

    Every sub-module gets its own flag back, so a frozen BatchNorm that was in eval mode
    inside a training model stays that way.

    >>> with evaluating(torch.nn.Dropout()) as model:
    ...     model.training, torch.is_inference_mode_enabled()
    (False, True)
    """
    with eval_mode(model), torch.inference_mode():
        yield model


def resolve_device(model: nn.Module, device: DeviceLike | None) -> torch.device:
    """None: where the model already is. Otherwise the model is moved to ``device``.

    >>> resolve_device(torch.nn.Linear(2, 2), None)
    device(type='cpu')
    """
    if device is None:
        return model_device(model)
    chosen = pick_device(str(device))
    model.to(chosen)
    return chosen


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work (a no-op on the CPU).

    GPU kernels run asynchronously: without waiting, a clock stops before the work is done.

    >>> synchronize(torch.device("cpu"))
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
