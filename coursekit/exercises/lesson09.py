"""Exercises of lesson 09 (capstone: your own folder of images, end to end).

q1: the per-class train/valid counts of a seeded, stratified split of one folder.
q2: the classes of a split that have training images but no validation images.
q3: which problem of a ``check_dataset`` report is NOT skipped for you (multiple choice).

    >>> from coursekit.exercises import lesson09 as ex  # doctest: +SKIP
    >>> ex.q1.check(split_counts)                       # doctest: +SKIP
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
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


# ----------------------------------------------------------------------------- q1

#: Class sizes of a small, unbalanced folder, split with validation_split=0.2. "wren" has
#: 2 images (0.4 rounds to 0, but every class needs one validation image) and "kiwi" has 1
#: (it must stay in training).
Q1_SIZES_A = {"crow": 50, "robin": 12, "owl": 7, "wren": 2, "kiwi": 1}
Q1_SPLIT_A = 0.2
#: With 0.25, 10 and 6 images give exactly 2.5 and 1.5: halves must round UP.
Q1_SIZES_B = {"ant": 10, "bee": 6, "wasp": 3}
Q1_SPLIT_B = 0.25


def halves_up(x: float) -> int:
    """The nearest whole number, halves rounded up (how ``split_samples`` rounds).

    >>> halves_up(2.5), halves_up(1.4)
    (3, 1)
    """
    return math.floor(x + 0.5)


def reference_split_counts(
    class_sizes: Mapping[str, int],
    validation_split: float,
    nearest: Callable[[float], int] = halves_up,
) -> dict[str, tuple[int, int]]:
    """``{class: (n_train, n_valid)}`` the way ``coursekit.split_samples`` splits a folder.

    ``nearest=round`` gives the same split with Python's rounding (halves to the even
    neighbour), which differs only where ``n * validation_split`` is exactly a half.

    >>> reference_split_counts({"crow": 50, "wren": 2, "kiwi": 1}, 0.2)
    {'crow': (40, 10), 'wren': (1, 1), 'kiwi': (1, 0)}
    >>> reference_split_counts({"ant": 10}, 0.25), reference_split_counts({"ant": 10}, 0.25, round)
    ({'ant': (7, 3)}, {'ant': (8, 2)})
    """
    counts = {}
    for name, n in class_sizes.items():
        n_valid = min(max(nearest(n * validation_split), 1), n - 1)  # validate; keep 1 to train
        counts[name] = (n - n_valid, n_valid)
    return counts


def _as_pair(value: Any, name: str) -> tuple[int, int]:
    """A learner's (n_train, n_valid) entry as two ints, or a message saying what it should be."""
    expect(
        isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2,
        f"The entry of {name!r} should be a pair (n_train, n_valid), but it is {safe_repr(value)}.",
    )
    pair = []
    for number in value:
        whole = isinstance(number, numbers.Integral) or (
            isinstance(number, numbers.Real) and float(number).is_integer()
        )
        expect(
            whole,
            f"The entry of {name!r} is {safe_repr(tuple(value))}: image counts are whole "
            "numbers. Round n * validation_split to an int before using it.",
        )
        pair.append(int(number))
    return pair[0], pair[1]


class SplitCounts(Question):
    title = "Split counts of one folder, class by class"
    hints = [
        "Work on each class on its own (that is what 'stratified' means): the class's number "
        "of validation images is its size times `validation_split`, rounded to the nearest "
        "whole number. The rest is for training.",
        "Careful: `int(x)` always rounds DOWN (1.5 -> 1). `round(x)` gives the nearest whole "
        "number.",
        "Then clamp: at least 1 validation image (so every class is validated), but at most "
        "`n - 1` (so at least one image stays for training): "
        "`n_valid = min(max(round(n * validation_split), 1), n - 1)`.",
    ]
    solution_code = """
        def split_counts(class_sizes, validation_split):
            counts = {}
            for name, n in class_sizes.items():
                n_valid = round(n * validation_split)  # the nearest whole number
                n_valid = min(max(n_valid, 1), n - 1)  # validate every class, keep one to train
                counts[name] = (n - n_valid, n_valid)
            return counts
    """
    correct_message = (
        "that is how ck.build_datasets splits a single folder: each class on its own, so even "
        "a class of two images is represented in validation. (Where n * validation_split is "
        "exactly a half, such as 2.5, ck.build_datasets rounds up and Python's round() goes to "
        "the even neighbour, 2: both are a nearest whole number, so both are right.)"
    )

    def _check(self, split_counts: Any) -> None:
        expect_callable(split_counts, "split_counts")
        for sizes, fraction in ((Q1_SIZES_A, Q1_SPLIT_A), (Q1_SIZES_B, Q1_SPLIT_B)):
            self._check_case(split_counts, sizes, fraction)

    def _check_case(
        self, split_counts: Callable[..., Any], sizes: Mapping[str, int], fraction: float
    ) -> None:
        call = f"split_counts({dict(sizes)}, {fraction})"
        result = call_answer(split_counts, dict(sizes), fraction)
        expect(
            isinstance(result, Mapping),
            f"{call} returned {safe_repr(result)}: return a dict "
            "{class name: (n_train, n_valid)}.",
        )
        missing = [name for name in sizes if name not in result]
        expect(not missing, f"{call} has no entry for {', '.join(map(repr, missing))}.")
        expected = reference_split_counts(sizes, fraction)
        # Python's round() sends exact halves to the even neighbour: just as near, so accepted.
        with_round = reference_split_counts(sizes, fraction, round)
        for name, n in sizes.items():
            got = _as_pair(result[name], name)
            want = expected[name]
            if got in (want, with_round[name]):
                continue
            where = f"{call}[{name!r}] is {got}"
            expect(
                sum(got) == n,
                f"{where}, which adds up to {sum(got)}, but {name!r} has {n} images: every "
                "image goes to exactly one side.",
            )
            if n == 1:
                raise Incorrect(
                    f"{where}: a class with a single image must keep it for TRAINING (the "
                    "model cannot learn a class it never sees). Cap n_valid at n - 1."
                )
            if got == (want[1], want[0]):
                raise Incorrect(
                    f"{where}: the pair is the wrong way round. Return (n_train, n_valid), "
                    f"training first: {want}."
                )
            if got[1] == 0:
                raise Incorrect(
                    f"{where}: {n} x {fraction} rounds to 0, but every class with two or "
                    "more images gets at least one validation image, otherwise that class is "
                    "never validated. Use max(..., 1)."
                )
            exact = n * fraction
            if got[1] == math.floor(exact):
                raise Incorrect(
                    f"{where}: {n} x {fraction} = {exact:g}, whose nearest whole number is "
                    f"{round(exact)}. `int()` always rounds DOWN: use `round()`."
                )
            if got[1] == math.ceil(exact):
                raise Incorrect(
                    f"{where}: {n} x {fraction} = {exact:.2f} should round to the NEAREST "
                    f"whole number ({want[1]} validation images), not always down or up."
                )
            raise Incorrect(f"{where}, but it should be {want} (n_train, n_valid).")


q1 = SplitCounts()

# ----------------------------------------------------------------------------- q2


class SplitDataset:
    """The part of a ``ck.build_datasets`` dataset that says which image has which class:
    ``classes`` (shared by train and valid), ``class_to_idx``, ``samples`` as (path, class
    index) pairs, and ``targets``. Enough for ``ck.class_counts`` too.

    >>> SplitDataset(["ant", "bee"], {"ant": 2, "bee": 0}).targets
    [0, 0]
    """

    def __init__(self, classes: Sequence[str], images_per_class: Mapping[str, int]) -> None:
        self.classes = list(classes)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        self.samples = [
            (Path(name, f"img_{number:03d}.jpg"), self.class_to_idx[name])
            for name in self.classes
            for number in range(images_per_class.get(name, 0))
        ]

    @property
    def targets(self) -> list[int]:
        return [target for _, target in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"SplitDataset({len(self)} images in {len(self.classes)} classes)"


#: (classes, training images per class, validation images per class) of the checker's splits.
#: "owl" is trained but never validated; "robin" is validated but never trained; "wren" is an
#: empty folder. Folder names like flowers102's come last: index 1 is folder "10", not "2".
Q2_CASES: tuple[tuple[list[str], dict[str, int], dict[str, int]], ...] = (
    (
        ["crow", "owl", "robin", "wren"],
        {"crow": 8, "owl": 3},
        {"crow": 2, "robin": 1},
    ),
    (["ant", "bee"], {"ant": 4, "bee": 4}, {"ant": 1, "bee": 1}),
    (["1", "10", "2"], {"1": 5, "10": 4, "2": 2}, {"1": 1}),
)


def reference_classes_without_valid(train_ds: Any, valid_ds: Any) -> list[str]:
    """Names of the classes with training images but no validation images, in class order.

    >>> reference_classes_without_valid(*(SplitDataset(["ant", "bee"], n)
    ...                                   for n in ({"ant": 3, "bee": 2}, {"ant": 1})))
    ['bee']
    """
    trained, validated = set(train_ds.targets), set(valid_ds.targets)
    return [name for index, name in enumerate(train_ds.classes) if index in trained - validated]


class ClassesWithoutValid(Question):
    title = "Classes that are trained but never validated"
    hints = [
        "Both datasets share ONE class list: `train_ds.classes == valid_ds.classes`, so that "
        "index 3 means the same class in both. Comparing the two lists finds nothing; count "
        "the IMAGES of each class instead.",
        "`dataset.targets` holds the class index of every image, so `set(train_ds.targets)` "
        "is the set of classes with training images. (`ck.class_counts(dataset)` counts them "
        "per class name.)",
        "The indices in `set(train_ds.targets) - set(valid_ds.targets)`, turned into names "
        "with `train_ds.classes[index]`, in class order.",
    ]
    solution_code = """
        def classes_without_valid(train_ds, valid_ds):
            trained = set(train_ds.targets)    # class indices with training images
            validated = set(valid_ds.targets)  # class indices with validation images
            return [name for index, name in enumerate(train_ds.classes)
                    if index in trained and index not in validated]
    """
    correct_message = (
        "run it on your own split: an empty list means every class the model learns is also "
        "measured. ck.build_datasets prints a WARNING for these classes too; the fix is to "
        "move a few images of them into validation."
    )

    def _check(self, classes_without_valid: Any) -> None:
        expect_callable(classes_without_valid, "classes_without_valid")
        for classes, train_counts, valid_counts in Q2_CASES:
            train_ds = SplitDataset(classes, train_counts)
            valid_ds = SplitDataset(classes, valid_counts)
            expected = reference_classes_without_valid(train_ds, valid_ds)
            result = call_answer(classes_without_valid, train_ds, valid_ds)
            self._compare(result, expected, classes, train_counts, valid_counts)

    @staticmethod
    def _compare(
        result: Any,
        expected: list[str],
        classes: list[str],
        train_counts: Mapping[str, int],
        valid_counts: Mapping[str, int],
    ) -> None:
        split = ", ".join(
            f"{name} {train_counts.get(name, 0)}/{valid_counts.get(name, 0)}" for name in classes
        )
        case = f"For a split with train/valid images {split},"
        expect(
            isinstance(result, list | tuple | set),
            f"{case} you returned {safe_repr(result)}: return a list of class names.",
        )
        names = list(result)
        if any(isinstance(name, numbers.Integral) for name in names):
            raise Incorrect(
                f"{case} you returned {names}: these are class INDICES. Return the names, "
                "`train_ds.classes[index]`."
            )
        expect(
            len(names) == len(set(names)),
            f"{case} you returned {names}, with a class more than once: name each class once.",
        )
        if set(names) == set(expected):
            return
        if not names:
            raise Incorrect(
                f"{case} you returned [], but these classes have training images and no "
                f"validation images: {', '.join(expected)}. Train and valid share ONE class "
                "list, so comparing `train_ds.classes` with `valid_ds.classes` finds nothing: "
                "look at which class indices occur in `train_ds.targets` and in "
                "`valid_ds.targets`."
            )
        unknown = [name for name in names if name not in classes]
        if unknown:
            raise Incorrect(
                f"{case} you returned {names}, but {', '.join(map(repr, unknown))} is not a "
                f"class of this split (its classes are {classes}). Turn an index into its name "
                "with `train_ds.classes[index]`: folder names sort as strings, so index 1 can "
                "be folder '10'."
            )
        validated = [name for name in names if valid_counts.get(name, 0)]
        if validated:
            raise Incorrect(
                f"{case} you returned {names}, but these have validation images: "
                f"{', '.join(validated)}. List the classes that do NOT occur in "
                "`valid_ds.targets`."
            )
        never_trained = [name for name in names if not train_counts.get(name, 0)]
        if never_trained:
            raise Incorrect(
                f"{case} you returned {names}, but these have no training images at all: "
                f"{', '.join(never_trained)}. The question is about classes the model learns "
                "but is never measured on: keep only classes that occur in `train_ds.targets`."
            )
        raise Incorrect(f"{case} the answer is {expected}, but you returned {names}.")


q2 = ClassesWithoutValid()

# ----------------------------------------------------------------------------- q3

Q3_REPORT = """\
Dataset /home/sam/birds
class   all
-----------
crow     41
owl       0
robin    37
total    78
3 problem(s):
- /home/sam/birds/crow/IMG_0412.jpg: the file is empty (0 bytes)
    fix: delete it, or copy the image again
- /home/sam/birds/owl: empty class folder (no readable images)
    fix: add images, or delete the folder (an empty class still gets a label and an output)
- /home/sam/birds/robin/notes.txt: .txt is not an image extension, so it is ignored
    fix: move it out of the class folder (images end in .bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp)"""


class ReportProblem(MultipleChoice):
    """A multiple-choice question about a ``check_dataset`` report (``report`` shows it)."""

    report: str = ""


q3 = ReportProblem(
    title="Which problem does training NOT skip for you?",
    report=Q3_REPORT,
    options=("a", "b", "c", "d"),
    expected="b",
    wrong_answers={
        "a": (
            "The empty IMG_0412.jpg cannot be decoded, so ck.build_datasets drops it and names "
            "it in one report: you lose one image, nothing more. Delete it when you tidy up."
        ),
        "c": (
            "notes.txt does not end in an image extension, so it is never read as an image: "
            "it is ignored. Move it out when you tidy up."
        ),
        "d": (
            "Two of them are skipped, but not all: an empty class folder is still a CLASS. "
            "Which one changes the model itself?"
        ),
    },
    hints=[
        "Ask of each problem: is it a FILE that can simply be left out, or does it change the "
        "list of classes (and so the model's output layer)?",
        "Class folders become classes whether or not they hold images: the class list "
        "decides how many outputs the new head has.",
    ],
    solution_code="""
        answer = "b"
        # The empty owl/ folder is still a class: it gets an index and an output unit that
        # is never trained and never validated (ck.build_datasets prints a WARNING).
        # Fix it: add owl photos, or delete the folder. The empty .jpg is dropped for you
        # and notes.txt is ignored; clean them up, but they cannot hurt the model.
    """,
    correct_message=(
        "owl/ still becomes a class with its own output unit, one the model can predict but "
        "never learned. Add owl photos or delete the folder before training."
    ),
)
