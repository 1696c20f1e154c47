"""Exercises of lesson 07 (evaluation and error analysis).

q1: a confusion matrix from labels and predictions.
q2: per-class recall from a confusion matrix (row normalisation, empty classes).
q3: top-k accuracy from logits.

Every check runs the learner's function on small fixed tensors, so it is fast and the
expected answers can be worked out by hand.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from coursekit.exercises.core import (
    Incorrect,
    Question,
    call_answer,
    expect,
    expect_callable,
    safe_repr,
)

__all__ = ["q1", "q2", "q3"]


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise Incorrect(f"{what} should be a tensor, but it is {safe_repr(value)}.") from None


# ----------------------------------------------------------------------------- q1

#: 4 classes. Class 3 is never predicted, and one class-1 sample is predicted as 0.
Q1_LABELS = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3])
Q1_PREDS = torch.tensor([0, 1, 1, 1, 0, 2, 2, 2, 0])
Q1_NUM_CLASSES = 4
#: A second case: class 4 has no samples and is never predicted (num_classes=5).
Q1_LABELS_B = torch.tensor([2, 0, 1, 2, 1])
Q1_PREDS_B = torch.tensor([2, 0, 2, 3, 1])
Q1_NUM_CLASSES_B = 5
#: Every class is a label and a prediction, and the last pair (2, 2) occurs: code that sizes
#: the matrix from the data (labels.max() + 1, bincount without minlength) runs here.
Q1_LABELS_EVERY_CLASS = torch.tensor([0, 1, 2, 2])
Q1_PREDS_EVERY_CLASS = torch.tensor([0, 2, 1, 2])
Q1_NUM_CLASSES_EVERY_CLASS = 3
#: Errors that indexing or reshaping a matrix of the wrong size raises.
_SIZE_ERRORS = (RuntimeError, IndexError, ValueError)


def _reference_confusion(labels: torch.Tensor, preds: torch.Tensor, k: int) -> torch.Tensor:
    cm = torch.zeros(k, k, dtype=torch.int64)
    for true, pred in zip(labels.tolist(), preds.tolist(), strict=True):
        cm[true, pred] += 1
    return cm


class ConfusionMatrix(Question):
    title = "A confusion matrix from labels and predictions"
    hints = [
        "Start from a K x K tensor of zeros (`torch.zeros(num_classes, num_classes, "
        "dtype=torch.int64)`). Row = the TRUE class, column = the PREDICTED class.",
        "Loop over the pairs: `for true, pred in zip(labels.tolist(), preds.tolist()):` and "
        "add 1 to `cm[true, pred]`.",
        "Without a loop: every pair (true, pred) gets its own number `true * K + pred`; "
        "`torch.bincount(..., minlength=K * K)` counts them, `.reshape(K, K)` makes the matrix. "
        "Always use `num_classes` for K, never `labels.max() + 1`.",
    ]
    solution_code = """
        def confusion_matrix(labels, preds, num_classes):
            cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
            for true, pred in zip(labels.tolist(), preds.tolist()):
                cm[true, pred] += 1   # row = true class, column = predicted class
            return cm

        # or, without a loop:
        #   counts = torch.bincount(labels * num_classes + preds, minlength=num_classes**2)
        #   return counts.reshape(num_classes, num_classes)
    """
    correct_message = (
        "rows are true classes, columns are predictions, and a class that is never predicted "
        "still gets its (empty) column."
    )

    def _check(self, confusion_matrix: Any) -> None:
        expect_callable(confusion_matrix, "confusion_matrix")
        for labels, preds, k in (
            (Q1_LABELS, Q1_PREDS, Q1_NUM_CLASSES),
            (Q1_LABELS_B, Q1_PREDS_B, Q1_NUM_CLASSES_B),
        ):
            expected = _reference_confusion(labels, preds, k)
            call = f"For labels={labels.tolist()}, preds={preds.tolist()}, num_classes={k}"
            result = self._call(confusion_matrix, labels, preds, k, call)
            cm = _as_tensor(result, f"confusion_matrix(labels, preds, {k})")
            expect(
                cm.ndim == 2 and cm.shape[0] == cm.shape[1],
                f"{call} the result should be a square K x K matrix, but its shape is "
                f"{tuple(cm.shape)}.",
            )
            if tuple(cm.shape) != (k, k):
                raise Incorrect(
                    f"{call} the matrix should be {k} x {k}, but it is "
                    f"{cm.shape[0]} x {cm.shape[1]}. Size it with `num_classes`, not with "
                    "`labels.max() + 1` or the predicted classes: a class that is never "
                    "predicted (or has no samples) still needs its row and column."
                )
            expect(
                not cm.is_floating_point() or bool((cm == cm.round()).all()),
                f"{call} the cells should be whole counts, but they are {cm.tolist()}.",
            )
            if torch.equal(cm.long(), expected):
                continue
            if torch.equal(cm.long(), expected.T):
                raise Incorrect(
                    f"{call} your matrix is transposed: rows must be the TRUE classes and "
                    "columns the PREDICTED classes (`cm[true, pred] += 1`)."
                )
            expect(
                int(cm.sum()) == len(labels),
                f"{call} the counts should add up to {len(labels)} (one per sample), but "
                f"they add up to {int(cm.sum())}.",
            )
            raise Incorrect(
                f"{call} the matrix should be {expected.tolist()}, but it is {cm.long().tolist()}."
            )

    @staticmethod
    def _call(
        confusion_matrix: Any, labels: torch.Tensor, preds: torch.Tensor, k: int, call: str
    ) -> Any:
        """The learner's result; a crash that only data without its highest classes causes
        means the matrix was sized from the data, and gets its own message."""
        try:
            return call_answer(confusion_matrix, labels.clone(), preds.clone(), k)
        except _SIZE_ERRORS as error:
            try:
                call_answer(
                    confusion_matrix,
                    Q1_LABELS_EVERY_CLASS.clone(),
                    Q1_PREDS_EVERY_CLASS.clone(),
                    Q1_NUM_CLASSES_EVERY_CLASS,
                )
            except Exception:
                raise error from None  # it fails on any data: a bug of its own
            crash = f"`{type(error).__name__}: {error}`"
            if "invalid for input of size" in str(error):
                raise Incorrect(
                    f"{call}, your code raised {crash}, yet it runs when every class occurs. "
                    "`torch.bincount` only counts up to the largest number it sees, so when "
                    "the last classes never occur it returns fewer than K * K counts and "
                    "`.reshape(K, K)` fails. Pass `minlength=num_classes * num_classes`, and "
                    "take K from `num_classes`, never from `labels.max() + 1`."
                ) from None
            raise Incorrect(
                f"{call}, your code raised {crash}, yet it runs when every class occurs: the "
                "matrix is sized from the data. Here the highest classes are missing from "
                "`labels`, so `labels.max() + 1` is smaller than `num_classes`. Size it with "
                "`num_classes`: `torch.zeros(num_classes, num_classes, dtype=torch.int64)`."
            ) from None


q1 = ConfusionMatrix()

# ----------------------------------------------------------------------------- q2

#: Rows = true classes. Class 2 has no samples in this (tiny) validation set.
Q2_CM = torch.tensor(
    [
        [8, 2, 0, 0],
        [1, 3, 0, 0],
        [0, 0, 0, 0],
        [0, 4, 0, 6],
    ]
)
Q2_RECALL = torch.tensor([0.8, 0.75, float("nan"), 0.6])


def _same_with_nan(actual: torch.Tensor, expected: torch.Tensor, tolerance: float = 1e-4) -> bool:
    if actual.shape != expected.shape:
        return False
    both_nan = actual.isnan() & expected.isnan()
    close = (actual - expected).abs() <= tolerance
    return bool((both_nan | close).all())


class PerClassRecall(Question):
    title = "Per-class recall from a confusion matrix"
    hints = [
        "Recall of class i = correct predictions of class i / samples of class i. In a "
        "confusion matrix the correct ones are on the diagonal (`cm.diagonal()`), and the "
        "samples of class i are its ROW (`cm.sum(dim=1)`).",
        "Divide as floats: `cm.diagonal().float() / cm.sum(dim=1).float()`. For a class with "
        "no samples this is 0 / 0, which gives `nan` for floats: exactly what we want.",
        "Do not replace the `nan` with 0: 0 would say the model got every sample of that "
        "class wrong, but there were none. Use `torch.nanmean` when you average.",
    ]
    solution_code = """
        def per_class_recall(cm):
            correct = cm.diagonal().float()          # cm[i, i]: class i predicted as i
            samples = cm.sum(dim=1).float()          # row sums: how many samples of class i
            return correct / samples                 # 0 / 0 -> nan for a class with no samples
    """
    correct_message = (
        "each row divided by its total, and a class without samples gives nan instead of a "
        "made-up number."
    )

    def _check(self, per_class_recall: Any) -> None:
        expect_callable(per_class_recall, "per_class_recall")
        result = call_answer(per_class_recall, Q2_CM.clone())
        recall = _as_tensor(result, "per_class_recall(cm)").float().flatten()
        shown = [round(v, 3) if not math.isnan(v) else float("nan") for v in recall.tolist()]
        expect(
            len(recall) == len(Q2_CM),
            f"There should be one recall per class ({len(Q2_CM)}), but you returned "
            f"{len(recall)} values.",
        )
        if _same_with_nan(recall, Q2_RECALL):
            return
        correct = Q2_CM.diagonal().float()
        if _same_with_nan(recall, correct):
            raise Incorrect("These are counts: divide the diagonal by each row's total.")
        if _same_with_nan(recall, 100 * Q2_RECALL, tolerance=1e-2):
            raise Incorrect(
                f"These are percentages ({shown}): return fractions between 0 and 1 "
                "(0.8, not 80), without the `* 100`. Format them as percentages only when "
                "you print them, e.g. `f'{recall:.0%}'`."
            )
        precision = correct / Q2_CM.sum(dim=0).float()
        if _same_with_nan(recall, precision):
            raise Incorrect(
                "You divided by the COLUMN sums, which gives precision (of the images predicted "
                "as class i, how many are class i). Recall divides by the ROW sums: "
                "`cm.sum(dim=1)`."
            )
        filled = torch.nan_to_num(Q2_RECALL, nan=0.0)
        if _same_with_nan(recall, filled) or _same_with_nan(
            recall, torch.nan_to_num(Q2_RECALL, 1.0)
        ):
            raise Incorrect(
                f"Class 2 has no samples, so its recall is undefined: return `nan` for it, "
                f"not {shown[2]} (you returned {shown}). A made-up 0 would drag the average "
                "down for a class the model never saw."
            )
        raise Incorrect(
            f"For this confusion matrix the recalls should be [0.8, 0.75, nan, 0.6], but you "
            f"returned {shown}. Divide the diagonal by the row sums."
        )


q2 = PerClassRecall()

# ----------------------------------------------------------------------------- q3

#: 5 samples, 4 classes. The rank of the true class is 1, 2, 3, 4 and 1.
Q3_LOGITS = torch.tensor(
    [
        [3.0, 1.0, 0.5, -1.0],  # true 0: rank 1
        [2.0, 0.1, 1.0, -2.0],  # true 2: rank 2
        [0.2, 1.5, 0.7, 2.5],  # true 2: rank 3
        [0.0, 2.0, 1.0, 3.0],  # true 0: rank 4
        [-1.0, 0.0, 4.0, 1.0],  # true 2: rank 1
    ]
)
Q3_LABELS = torch.tensor([0, 2, 2, 0, 2])
Q3_EXPECTED = {1: 0.4, 2: 0.6, 3: 0.8, 4: 1.0}
#: What taking the k SMALLEST scores gives (topk(..., largest=False) or an ascending sort).
Q3_SMALLEST = {1: 0.2, 2: 0.4, 3: 0.6, 4: 1.0}


class TopKAccuracy(Question):
    title = "Top-k accuracy"
    hints = [
        "For each sample, take the indices of the k largest scores: "
        "`logits.topk(k, dim=1).indices` has shape (N, k).",
        "Compare them with the labels shaped as a column, `labels.unsqueeze(1)` (N, 1): the "
        "comparison broadcasts to (N, k). A sample is a hit if ANY of its k entries matches.",
        "`hits = (top.indices == labels.unsqueeze(1)).any(dim=1)`, then return the fraction "
        "`hits.float().mean().item()`.",
    ]
    solution_code = """
        def top_k_accuracy(logits, labels, k):
            top = logits.topk(k, dim=1).indices               # (N, k) best classes per sample
            hits = (top == labels.unsqueeze(1)).any(dim=1)    # true class among them?
            return hits.float().mean().item()
    """
    correct_message = (
        "softmax is not even needed: it keeps the order of the scores, so the top-k classes "
        "of the logits and of the probabilities are the same."
    )

    def _check(self, top_k_accuracy: Any) -> None:
        expect_callable(top_k_accuracy, "top_k_accuracy")
        answers = {}
        for k in Q3_EXPECTED:
            value = call_answer(top_k_accuracy, Q3_LOGITS.clone(), Q3_LABELS.clone(), k)
            if isinstance(value, torch.Tensor):
                expect(
                    value.numel() == 1,
                    f"top_k_accuracy(logits, labels, k={k}) should be one number, but it is a "
                    f"tensor of shape {tuple(value.shape)}. Average the hits: "
                    "`hits.float().mean()`.",
                )
                value = value.item()
            expect(
                isinstance(value, int | float),
                f"top_k_accuracy(logits, labels, k={k}) should be a number, but it is "
                f"{safe_repr(value)}.",
            )
            answers[k] = float(value)
        got = {k: round(v, 3) for k, v in answers.items()}
        if all(math.isclose(answers[k], Q3_EXPECTED[k], abs_tol=1e-6) for k in Q3_EXPECTED):
            return
        if all(math.isclose(answers[k], 100 * Q3_EXPECTED[k], abs_tol=1e-4) for k in answers):
            raise Incorrect(
                f"You returned percentages {got}: return the fraction between 0 and 1 (0.4, "
                "not 40.0), without the `* 100`. Format it as a percentage only when you "
                "print it, e.g. `f'{accuracy:.1%}'`."
            )
        hits = {k: round(v * len(Q3_LABELS)) for k, v in Q3_EXPECTED.items()}
        if all(math.isclose(answers[k], hits[k], abs_tol=1e-6) for k in hits):
            raise Incorrect(
                f"You returned the number of hits {got}; return the fraction of samples "
                f"(divide by N = {len(Q3_LABELS)}, or use `.float().mean()`)."
            )
        if all(math.isclose(answers[k], Q3_SMALLEST[k], abs_tol=1e-6) for k in Q3_SMALLEST):
            raise Incorrect(
                "You took the k SMALLEST scores. `topk` returns the largest by default; "
                "`sort()` is ascending, so use `sort(descending=True)` or `argsort(descending=True)`."
            )
        if math.isclose(answers[1], Q3_EXPECTED[1], abs_tol=1e-6):
            raise Incorrect(
                f"k=1 is right but other k are not (you returned {got}, expected "
                f"{Q3_EXPECTED}). Look at the k best classes of each sample, and count a "
                "sample as a hit when ANY of them is the true class."
            )
        raise Incorrect(
            f"For k = 1..4 the accuracies should be {Q3_EXPECTED}, but you returned {got}."
        )


q3 = TopKAccuracy()
