"""Exercises of lesson 10 (from notebook to cluster: data-parallel training with torchrun).

q1: the learning rate for more processes, by the linear scaling rule.
q2: one epoch's loss and accuracy from the totals of every process.
q3: which job only rank 0 does (multiple choice).

    >>> from coursekit.exercises import lesson10 as ex  # doctest: +SKIP
    >>> ex.q1.check(scaled_lr)                          # doctest: +SKIP
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from coursekit.exercises.core import (
    Incorrect,
    MultipleChoice,
    Question,
    call_answer,
    expect,
    expect_callable,
    safe_repr,
)

__all__ = ["q1", "q2", "q3"]


def _as_number(value: Any, what: str) -> float:
    expect(
        isinstance(value, numbers.Real) and not isinstance(value, bool),
        f"{what} should return a number, but it returned {safe_repr(value)}.",
    )
    return float(value)


# ----------------------------------------------------------------------------- q1

#: (base_lr, base_batch, per_process_batch, processes) and what the rule gives.
Q1_CASES = ((1e-3, 32, 32, 4), (0.1, 256, 64, 8), (0.01, 64, 16, 2))


def reference_scaled_lr(
    base_lr: float, base_batch: int, per_process_batch: int, processes: int
) -> float:
    """The linear scaling rule: the LR grows with the GLOBAL batch, ``per_process_batch * N``.

    >>> reference_scaled_lr(1e-3, 32, 32, 4)
    0.004
    """
    return base_lr * per_process_batch * processes / base_batch


class ScaledLearningRate(Question):
    title = "The learning rate for N processes (linear scaling rule)"
    hints = [
        "Each optimizer step now averages the gradients of `per_process_batch * processes` "
        "images: that is the global batch.",
        "The linear scaling rule keeps `lr / batch` constant: the new rate is `base_lr` times "
        "(global batch / `base_batch`).",
        "`return base_lr * per_process_batch * processes / base_batch`",
    ]
    solution_code = """
        def scaled_lr(base_lr, base_batch, per_process_batch, processes):
            global_batch = per_process_batch * processes
            return base_lr * global_batch / base_batch
    """
    correct_message = (
        "with the global batch N times larger there are N times fewer steps per epoch, and "
        "each step can be N times bigger. (Large jumps need a warm-up of a few epochs.)"
    )

    def _check(self, scaled_lr: Any) -> None:
        expect_callable(scaled_lr, "scaled_lr")
        for base_lr, base_batch, per_process, processes in Q1_CASES:
            call = f"scaled_lr({base_lr}, {base_batch}, {per_process}, {processes})"
            got = _as_number(
                call_answer(scaled_lr, base_lr, base_batch, per_process, processes), call
            )
            expected = reference_scaled_lr(base_lr, base_batch, per_process, processes)
            if math.isclose(got, expected, rel_tol=1e-6):
                continue
            self._explain(got, call, base_lr, base_batch, per_process, processes)

    @staticmethod
    def _explain(
        got: float, call: str, base_lr: float, base_batch: int, per_process: int, processes: int
    ) -> None:
        if math.isclose(got, base_lr * per_process / base_batch, rel_tol=1e-6):
            raise Incorrect(
                f"{call} returned {got:g}, the rate for ONE process. DDP averages the "
                f"gradients of all {processes} processes, so each step sees "
                f"{per_process} x {processes} images: scale by the global batch."
            )
        if math.isclose(got, base_lr * base_batch / (per_process * processes), rel_tol=1e-6):
            raise Incorrect(
                f"{call} returned {got:g}: upside down. A bigger batch gets a BIGGER rate "
                "(its averaged gradient is less noisy)."
            )
        raise Incorrect(
            f"{call} returned {got:g}, but the linear scaling rule gives "
            f"{reference_scaled_lr(base_lr, base_batch, per_process, processes):g}."
        )


q1 = ScaledLearningRate()

# ----------------------------------------------------------------------------- q2

#: Per-process ``(loss_sum, correct, seen)`` of one epoch: the shards are not equal in size
#: (53 validation images split in 3 as 18, 18, 17 and a short one of a different set).
Q2_CASES = (
    ((9.0, 12, 18), (7.2, 15, 18), (10.2, 8, 17)),
    ((4.0, 30, 40), (6.0, 2, 10)),
)


def reference_epoch_metrics(totals: Sequence[tuple[float, int, int]]) -> tuple[float, float]:
    """Sum every total over the processes first, then divide: ``(loss, accuracy)``.

    >>> reference_epoch_metrics([(4.0, 30, 40), (6.0, 2, 10)])
    (0.2, 0.64)
    """
    loss_sum = sum(t[0] for t in totals)
    correct = sum(t[1] for t in totals)
    seen = sum(t[2] for t in totals)
    return loss_sum / seen, correct / seen


class EpochMetrics(Question):
    title = "One epoch's loss and accuracy from every process's totals"
    hints = [
        "Each process reports sums over ITS images: the summed loss, the number correct, "
        "the number seen. What would one process that saw every image have summed?",
        "Add up each of the three totals over the processes, then divide by the total seen. "
        "That is what `dist.all_reduce(..., op=SUM)` computes in `fit`.",
        "`seen = sum(t[2] for t in totals)`, then "
        "`return sum(t[0] for t in totals) / seen, sum(t[1] for t in totals) / seen`",
    ]
    solution_code = """
        def epoch_metrics(totals):
            loss_sum = sum(loss for loss, _, _ in totals)
            correct = sum(right for _, right, _ in totals)
            seen = sum(count for _, _, count in totals)
            return loss_sum / seen, correct / seen
    """
    correct_message = (
        "every image counts once, whichever process saw it, so 2 processes report exactly "
        "what 1 process would."
    )

    def _check(self, epoch_metrics: Any) -> None:
        expect_callable(epoch_metrics, "epoch_metrics")
        for totals in Q2_CASES:
            call = f"epoch_metrics({list(totals)})"
            got = call_answer(epoch_metrics, [tuple(t) for t in totals])
            expect(
                isinstance(got, Sequence) and not isinstance(got, str) and len(got) == 2,
                f"{call} should return a pair (loss, accuracy), but it returned {safe_repr(got)}.",
            )
            loss, accuracy = (_as_number(value, call) for value in got)
            expected = reference_epoch_metrics(totals)
            if math.isclose(loss, expected[0]) and math.isclose(accuracy, expected[1]):
                continue
            self._explain(call, (loss, accuracy), totals, expected)

    @staticmethod
    def _explain(
        call: str,
        got: tuple[float, float],
        totals: Sequence[tuple[float, int, int]],
        expected: tuple[float, float],
    ) -> None:
        mean_of_means = (
            sum(t[0] / t[2] for t in totals) / len(totals),
            sum(t[1] / t[2] for t in totals) / len(totals),
        )
        if all(math.isclose(a, b) for a, b in zip(got, mean_of_means, strict=True)):
            raise Incorrect(
                f"{call} returned the mean of each process's mean: that weights a process "
                "with fewer images as much as one with many (here 10 images count like 40). "
                "Sum the totals first, then divide once."
            )
        if math.isclose(got[0], expected[1]) and math.isclose(got[1], expected[0]):
            raise Incorrect(f"{call}: loss and accuracy are swapped; return (loss, accuracy).")
        raise Incorrect(
            f"{call} returned {safe_repr(tuple(got))}, expected "
            f"({expected[0]:.4g}, {expected[1]:.4g})."
        )


q2 = EpochMetrics()

# ----------------------------------------------------------------------------- q3


class RankZeroJob(MultipleChoice):
    """Which step of a data-parallel training loop only rank 0 does (``jobs`` lists them)."""

    jobs: Mapping[str, str] = {}


q3 = RankZeroJob(
    title="Under torchrun, which of these does ONLY rank 0 do?",
    jobs={
        "a": "compute the loss of its share of the batch",
        "b": "call optimizer.step()",
        "c": "write the checkpoint file",
        "d": "call the sampler's set_epoch(epoch)",
    },
    options=("a", "b", "c", "d"),
    expected="c",
    hints=(
        "Ask of each job: would N processes doing it give N different results, or N copies "
        "of the same thing?",
        "All replicas hold the same weights after every step; N copies of one file are "
        "at best wasted work and at worst N processes writing the same path at once.",
    ),
    solution_code="c",
    correct_message=(
        "the weights are the same on every process, so one copy is enough: fit saves only "
        "when ck.is_main_process() is true, and prints and logs only there too."
    ),
    wrong_answers={
        "a": (
            "Every process runs the forward pass and the loss on ITS shard of the batch: that "
            "is where the speed-up comes from."
        ),
        "b": (
            "Every process calls optimizer.step(): after DDP averaged the gradients, each "
            "replica takes the same step, so all keep identical weights without sending them."
        ),
        "d": (
            "Every process's sampler must call set_epoch(epoch): the shuffle is computed on "
            "each process from the same seed + epoch, and they must agree to deal out the "
            "images without overlap."
        ),
    },
)
