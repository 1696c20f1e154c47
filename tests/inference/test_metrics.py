"""coursekit.metrics: confusion matrix, per-class and top-k accuracy, against hand-made examples."""

from __future__ import annotations

import pytest
import torch

from coursekit import metrics


def test_confusion_matrix_matches_a_hand_built_example():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    preds = torch.tensor([0, 1, 1, 2, 0, 2])

    cm = metrics.confusion_matrix(labels, preds, num_classes=3)

    assert cm.dtype == torch.int64
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_confusion_matrix_counts_like_a_plain_loop():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (50,), generator=generator)
    preds = torch.randint(0, 4, (50,), generator=generator)
    expected = torch.zeros(4, 4, dtype=torch.int64)
    for true, guess in zip(labels.tolist(), preds.tolist(), strict=True):
        expected[true, guess] += 1

    assert torch.equal(metrics.confusion_matrix(labels, preds, num_classes=4), expected)


def test_confusion_matrix_explains_bad_input():
    with pytest.raises(ValueError, match="class index 3, outside 0..2"):
        metrics.confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), num_classes=3)
    with pytest.raises(ValueError, match=r"probs.argmax\(dim=1\)"):
        metrics.confusion_matrix(torch.tensor([0, 1]), torch.rand(2, 3), num_classes=3)


def test_per_class_accuracy_is_nan_for_a_class_without_samples():
    cm = torch.tensor([[2, 1, 0], [0, 0, 0], [1, 0, 3]])

    accuracy = metrics.per_class_accuracy(cm)

    assert accuracy[0].item() == pytest.approx(2 / 3)
    assert torch.isnan(accuracy[1])
    assert accuracy[2].item() == pytest.approx(3 / 4)


def test_top_k_accuracy_matches_a_hand_calculation():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.25, 0.45, 0.30]])
    labels = torch.tensor([1, 2, 0])
    # top-1 guesses 0, 2, 1: only the second is right. top-2 sets {0,1}, {2,1}, {1,2}: two right.
    assert metrics.top_k_accuracy(probs, labels, k=1) == pytest.approx(1 / 3)
    assert metrics.top_k_accuracy(probs, labels, k=2) == pytest.approx(2 / 3)
    assert metrics.top_k_accuracy(probs, labels, k=10) == 1.0
