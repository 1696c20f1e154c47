"""The checkers of lesson 09 accept the solutions and reject the common mistakes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from coursekit import split_samples
from coursekit.exercises import ____, assert_fails, assert_not_attempted, assert_passes
from coursekit.exercises import lesson09 as ex

# ----------------------------------------------------------------------------- q1


def split_counts(class_sizes, validation_split):
    counts = {}
    for name, n in class_sizes.items():
        n_valid = math.floor(n * validation_split + 0.5)
        n_valid = min(max(n_valid, 1), n - 1)
        counts[name] = (n - n_valid, n_valid)
    return counts


def make_split_counts(n_valid_of):
    """A split_counts whose n_valid comes from ``n_valid_of(n, fraction)``."""

    def counts(class_sizes, validation_split):
        return {
            name: (n - n_valid_of(n, validation_split), n_valid_of(n, validation_split))
            for name, n in class_sizes.items()
        }

    return counts


@pytest.mark.parametrize(
    ("sizes", "fraction"), [(ex.Q1_SIZES_A, ex.Q1_SPLIT_A), (ex.Q1_SIZES_B, ex.Q1_SPLIT_B)]
)
def test_q1_reference_matches_coursekit_split_samples(sizes, fraction):
    """The exercise teaches what ck.build_datasets really does with one folder."""
    classes = list(sizes)
    samples = [
        (Path(f"{name}/{i}.jpg"), classes.index(name))
        for name, n in sizes.items()
        for i in range(n)
    ]
    train, valid = split_samples(samples, validation_split=fraction, seed=123)
    counted = {
        name: (
            sum(1 for _, t in train if t == index),
            sum(1 for _, t in valid if t == index),
        )
        for index, name in enumerate(classes)
    }
    assert counted == ex.reference_split_counts(sizes, fraction)


def test_q1_accepts_the_solution_and_lists():
    assert_passes(ex.q1, split_counts)
    assert_passes(
        ex.q1, lambda sizes, f: {name: list(pair) for name, pair in split_counts(sizes, f).items()}
    )


def test_q1_rejects_no_minimum_of_one_validation_image():
    no_minimum = make_split_counts(lambda n, f: min(math.floor(n * f + 0.5), n - 1))
    assert_fails(ex.q1, no_minimum, message_contains="at least one validation image")


def test_q1_rejects_a_single_image_sent_to_validation():
    no_cap = make_split_counts(lambda n, f: max(math.floor(n * f + 0.5), 1))
    assert_fails(ex.q1, no_cap, message_contains="single image")


def test_q1_rejects_rounding_down_and_bankers_rounding():
    floored = make_split_counts(lambda n, f: min(max(int(n * f), 1), n - 1))
    assert_fails(ex.q1, floored, message_contains="halves round UP")
    bankers = make_split_counts(lambda n, f: min(max(round(n * f), 1), n - 1))
    assert_fails(ex.q1, bankers, message_contains="halves round UP")
    ceiled = make_split_counts(lambda n, f: min(max(math.ceil(n * f), 1), n - 1))
    assert_fails(ex.q1, ceiled, message_contains="NEAREST")


def test_q1_rejects_swapped_pairs_and_wrong_shapes():
    swapped = lambda sizes, f: {k: (v, t) for k, (t, v) in split_counts(sizes, f).items()}  # noqa: E731
    assert_fails(ex.q1, swapped, message_contains="wrong way round")
    assert_fails(ex.q1, lambda sizes, f: [1, 2], message_contains="return a dict")
    assert_fails(ex.q1, lambda sizes, f: {"crow": (40, 10)}, message_contains="no entry")
    assert_fails(
        ex.q1,
        lambda sizes, f: {k: (n - n * f, n * f) for k, n in sizes.items()},
        message_contains="whole numbers",
    )
    assert_fails(ex.q1, split_counts({"crow": 50}, 0.2), message_contains="function itself")


def test_q1_blank_is_not_attempted():
    assert_not_attempted(ex.q1, ____)

    def template(class_sizes, validation_split):
        counts = {}
        for name, n in class_sizes.items():
            n_valid = ____
            counts[name] = (n - n_valid, n_valid)
        return counts

    assert_not_attempted(ex.q1, template)


# ----------------------------------------------------------------------------- q2


def test_q2_accepts_about_ten_times_lower():
    assert_passes(ex.q2, 1e-4)
    assert_passes(ex.q2, 1e-3 / 10)
    assert_passes(ex.q2, 5e-5)


def test_q2_rejects_common_mistakes():
    assert_fails(ex.q2, 1e-3, message_contains="as high as")
    assert_fails(ex.q2, 1e-2, message_contains="higher than")
    assert_fails(ex.q2, 5e-4, message_contains="only 2.0x lower")
    assert_fails(ex.q2, 1e-7, message_contains="cautious")
    assert_fails(ex.q2, 0, message_contains="frozen")
    assert_fails(ex.q2, "1e-4", message_contains="not as the string")
    assert_not_attempted(ex.q2, ____)


# ----------------------------------------------------------------------------- q3


def test_q3_multiple_choice():
    assert "owl" in ex.q3.report
    assert_passes(ex.q3, "b")
    assert_passes(ex.q3, " B ")
    assert_fails(ex.q3, "a", message_contains="drops it")
    assert_fails(ex.q3, "c", message_contains="ignored")
    assert_fails(ex.q3, "d", message_contains="still a CLASS")
    assert_fails(ex.q3, "e", message_contains="Pick one of")
    assert_not_attempted(ex.q3, ____)
