"""The checkers of lesson 09 accept the solutions and reject the common mistakes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from coursekit import build_datasets, class_counts, split_samples
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


def test_q1_accepts_pythons_round_which_sends_halves_to_the_even_neighbour():
    bankers = make_split_counts(lambda n, f: min(max(round(n * f), 1), n - 1))
    # The checker's classes do include exact halves where the two roundings differ...
    assert bankers(ex.Q1_SIZES_B, ex.Q1_SPLIT_B) != split_counts(ex.Q1_SIZES_B, ex.Q1_SPLIT_B)
    # ...and round() is still a nearest whole number, so it passes.
    assert_passes(ex.q1, bankers)


def test_q1_rejects_rounding_down_and_up():
    floored = make_split_counts(lambda n, f: min(max(int(n * f), 1), n - 1))
    assert_fails(ex.q1, floored, message_contains="always rounds DOWN")
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


def classes_without_valid(train_ds, valid_ds):
    trained, validated = set(train_ds.targets), set(valid_ds.targets)
    return [name for i, name in enumerate(train_ds.classes) if i in trained and i not in validated]


def test_q2_reference_agrees_with_a_real_split_of_one_folder(tmp_path, capsys):
    """The fake datasets of the checker behave like ck.build_datasets' for this question."""
    for name, count in {"crow": 6, "owl": 1, "robin": 3}.items():  # owl: too few to validate
        (tmp_path / name).mkdir()
        for number in range(count):
            (tmp_path / name / f"{number}.png").write_bytes(b"")
    train_ds, valid_ds = build_datasets(tmp_path, None, None, verify=False)
    assert ex.reference_classes_without_valid(train_ds, valid_ds) == ["owl"]
    assert classes_without_valid(train_ds, valid_ds) == ["owl"]
    assert "owl have no validation images" in capsys.readouterr().out  # build_datasets warns


def test_q2_accepts_the_solution_and_class_counts():
    assert_passes(ex.q2, classes_without_valid)

    def with_counts(train_ds, valid_ds):
        train, valid = class_counts(train_ds), class_counts(valid_ds)
        return {name for name in train if train[name] and not valid[name]}

    assert_passes(ex.q2, with_counts)


def test_q2_rejects_comparing_the_shared_class_lists():
    def class_lists(train_ds, valid_ds):
        return sorted(set(train_ds.classes) - set(valid_ds.classes))

    assert_fails(ex.q2, class_lists, message_contains="share ONE class list")


def test_q2_rejects_classes_without_training_images_and_validated_classes():
    def no_valid_only(train_ds, valid_ds):
        validated = set(valid_ds.targets)
        return [name for i, name in enumerate(valid_ds.classes) if i not in validated]

    assert_fails(ex.q2, no_valid_only, message_contains="no training images at all: wren")

    def validated(train_ds, valid_ds):
        return [valid_ds.classes[i] for i in sorted(set(valid_ds.targets))]

    assert_fails(ex.q2, validated, message_contains="NOT occur in `valid_ds.targets`")


def test_q2_rejects_indices_guessed_names_and_repeats():
    def indices(train_ds, valid_ds):
        return sorted(set(train_ds.targets) - set(valid_ds.targets))

    assert_fails(ex.q2, indices, message_contains="class INDICES")

    def guessed_names(train_ds, valid_ds):  # as if index i were folder str(i + 1)
        return [str(i + 1) for i in sorted(set(train_ds.targets) - set(valid_ds.targets))]

    assert_fails(ex.q2, guessed_names, message_contains="index 1 can be folder '10'")

    def one_per_image(train_ds, valid_ds):
        validated = set(valid_ds.targets)
        return [train_ds.classes[t] for t in train_ds.targets if t not in validated]

    assert_fails(ex.q2, one_per_image, message_contains="more than once")
    assert_fails(ex.q2, lambda train_ds, valid_ds: "owl", message_contains="list of class names")


def test_q2_blank_is_not_attempted():
    assert_not_attempted(ex.q2, ____)
    assert_not_attempted(ex.q2, lambda train_ds, valid_ds: ____)


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
