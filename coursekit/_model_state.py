"""Where a model lives and which mode it is in: the one implementation models, viz and infer share.

    >>> model = torch.nn.Linear(2, 2)
    >>> model_device(model)
    device(type='cpu')

This module imports nothing of coursekit, so every module may use it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


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
