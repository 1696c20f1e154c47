"""Scores of a classifier's predictions: confusion matrix, per-class and top-k accuracy.

Plain tensor functions: they take class indices or probabilities, not a model, so they
serve any loop that produced the predictions (``infer.collect_predictions`` is one).

    >>> cm = confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), num_classes=2)
    >>> per_class_accuracy(cm)
    tensor([1.0000, 0.5000])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def confusion_matrix(
    labels: torch.Tensor | Sequence[int],
    preds: torch.Tensor | Sequence[int],
    num_classes: int,
) -> torch.Tensor:
    """K x K int64 counts: row = true class, column = predicted class.

    >>> confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), num_classes=2)
    tensor([[1, 0],
            [1, 1]])
    """
    labels = _class_indices(labels, "labels", num_classes)
    preds = _class_indices(preds, "preds", num_classes)
    if labels.shape != preds.shape:
        raise ValueError(
            f"labels has {len(labels)} entries but preds has {len(preds)}: "
            "they must describe the same samples."
        )
    # Each (true, predicted) pair gets its own bin number true * K + predicted.
    counts = torch.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _class_indices(
    values: torch.Tensor | Sequence[int], name: str, num_classes: int
) -> torch.Tensor:
    tensor = torch.as_tensor(values).cpu()
    if tensor.ndim != 1:
        tip = " Probabilities? Pass probs.argmax(dim=1)." if tensor.ndim == 2 else ""
        raise ValueError(
            f"{name} must be a 1-D tensor of class indices, got shape {tuple(tensor.shape)}.{tip}"
        )
    if tensor.is_floating_point():
        raise ValueError(f"{name} must hold integer class indices, got dtype {tensor.dtype}.")
    outside = tensor[(tensor < 0) | (tensor >= num_classes)]
    if len(outside):
        raise ValueError(
            f"{name} contains class index {outside[0].item()}, outside 0..{num_classes - 1}. "
            "num_classes must be the number of classes (len(class_names))."
        )
    return tensor.long()


def per_class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Accuracy (recall) of each true class: diagonal / row sums of a confusion matrix.

    A class with no samples has no accuracy: its entry is ``nan`` (not 0, which would claim
    the model got every one of them wrong). Use ``torch.nanmean`` to average.

    >>> per_class_accuracy(torch.tensor([[3, 1], [0, 0]]))
    tensor([0.7500,    nan])
    """
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"Expected a square confusion matrix, got shape {tuple(cm.shape)}.")
    return cm.diagonal().float() / cm.sum(dim=1).float()


def top_k_accuracy(probs: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores.

    >>> top_k_accuracy(torch.tensor([[0.1, 0.6, 0.3]]), torch.tensor([2]), k=2)
    1.0
    """
    if probs.ndim != 2 or len(probs) == 0 or len(probs) != len(labels):
        raise ValueError(
            f"Need probs of shape (N, K) and N labels, got {tuple(probs.shape)} and "
            f"{len(labels)} labels."
        )
    best = probs.topk(clip_top_k(k, probs.shape[1]), dim=1).indices
    hits = (best == torch.as_tensor(labels, device=best.device).reshape(-1, 1)).any(dim=1)
    return hits.float().mean().item()


def clip_top_k(top_k: int, num_classes: int) -> int:
    """``top_k`` limited to the number of classes (a model cannot rank more); at least 1.

    >>> clip_top_k(5, num_classes=2), clip_top_k(3, num_classes=10)
    (2, 3)
    """
    if top_k < 1:
        raise ValueError(f"top_k={top_k} must be at least 1.")
    return min(top_k, num_classes)
