"""The checkers of lesson 10 accept the solutions and reject the common mistakes."""

from __future__ import annotations

import pytest
import torch

from coursekit import distributed
from coursekit.exercises import ____, assert_fails, assert_not_attempted, assert_passes
from coursekit.exercises import lesson10 as ex

# ----------------------------------------------------------------------------- q1


def scaled_lr(base_lr, base_batch, per_process_batch, processes):
    return base_lr * per_process_batch * processes / base_batch


def test_q1_accepts_the_linear_scaling_rule():
    assert_passes(ex.q1, scaled_lr)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda lr, base, per, n: lr * per / base, "rate for ONE process"),
        (lambda lr, base, per, n: lr * base / (per * n), "upside down"),
        (lambda lr, base, per, n: lr * n * n, "linear scaling rule gives"),
        (lambda lr, base, per, n: "0.004", "should return a number"),
        (lambda lr, base, per, n: True, "should return a number"),
    ],
)
def test_q1_explains_the_common_mistakes(wrong, message):
    assert_fails(ex.q1, wrong, message_contains=message)


def test_q1_wants_the_function_and_notices_a_placeholder():
    assert_fails(ex.q1, 0.004, message_contains="scaled_lr")
    assert_not_attempted(ex.q1, ____)
    assert_not_attempted(ex.q1, lambda lr, base, per, n: ____)


# ----------------------------------------------------------------------------- q2


def epoch_metrics(totals):
    seen = sum(t[2] for t in totals)
    return sum(t[0] for t in totals) / seen, sum(t[1] for t in totals) / seen


def test_q2_reference_is_what_fit_computes_with_all_reduce_sums():
    """Outside a process group all_reduce_sums returns the sums it is given."""
    for totals in ex.Q2_CASES:
        loss_sum, correct, seen = (sum(values) for values in zip(*totals, strict=True))
        summed = distributed.all_reduce_sums(torch.tensor(loss_sum), correct, seen)
        assert (summed[0] / summed[2], summed[1] / summed[2]) == pytest.approx(
            ex.reference_epoch_metrics(totals)
        )


def test_q2_accepts_the_solution():
    assert_passes(ex.q2, epoch_metrics)


def mean_of_means(totals):
    n = len(totals)
    return sum(t[0] / t[2] for t in totals) / n, sum(t[1] / t[2] for t in totals) / n


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (mean_of_means, "mean of each process's mean"),
        (lambda totals: tuple(reversed(epoch_metrics(totals))), "swapped"),
        (lambda totals: epoch_metrics(totals)[0], "pair (loss, accuracy)"),
        (lambda totals: (totals[0][0] / totals[0][2], totals[0][1] / totals[0][2]), "expected"),
    ],
)
def test_q2_explains_the_common_mistakes(wrong, message):
    assert_fails(ex.q2, wrong, message_contains=message)


def test_q2_notices_a_placeholder():
    assert_not_attempted(ex.q2, ____)
    assert_not_attempted(ex.q2, lambda totals: (____, ____))


# ----------------------------------------------------------------------------- q3


def test_q3_multiple_choice():
    assert set(ex.q3.jobs) == set(ex.q3.options)
    assert_passes(ex.q3, "c")
    assert_passes(ex.q3, " C ")
    assert_fails(ex.q3, "a", message_contains="shard")
    assert_fails(ex.q3, "b", message_contains="same step")
    assert_fails(ex.q3, "d", message_contains="set_epoch")
    assert_fails(ex.q3, "e", message_contains="Pick one of")
    assert_not_attempted(ex.q3, ____)
