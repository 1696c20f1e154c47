"""Exercises of lesson 09 (capstone: your own folder of images, end to end).

q1: the per-class train/valid counts of a seeded, stratified split of one folder.
q2: a fine-tuning learning rate for the backbone, relative to the head's learning rate.
q3: which problem of a ``check_dataset`` report is NOT skipped for you (multiple choice).

    >>> from coursekit.exercises import lesson09 as ex  # doctest: +SKIP
    >>> ex.q1.check(split_counts)                       # doctest: +SKIP
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
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


def reference_split_counts(
    class_sizes: Mapping[str, int], validation_split: float
) -> dict[str, tuple[int, int]]:
    """``{class: (n_train, n_valid)}`` the way ``coursekit.split_samples`` splits a folder.

    >>> reference_split_counts({"crow": 50, "wren": 2, "kiwi": 1}, 0.2)
    {'crow': (40, 10), 'wren': (1, 1), 'kiwi': (1, 0)}
    """
    counts = {}
    for name, n in class_sizes.items():
        wanted = math.floor(n * validation_split + 0.5)  # nearest whole number, halves up
        n_valid = min(max(wanted, 1), n - 1)  # >= 1 to validate, but keep >= 1 to train
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
        "Halves round UP here: 2.5 -> 3. Careful: `int(x)` always rounds down, and Python's "
        "`round(2.5)` is 2 (it rounds halves to the even neighbour). `math.floor(x + 0.5)` "
        "rounds halves up.",
        "Then clamp: at least 1 validation image (so every class is validated), but at most "
        "`n - 1` (so at least one image stays for training): "
        "`n_valid = min(max(math.floor(n * validation_split + 0.5), 1), n - 1)`.",
    ]
    solution_code = """
        import math

        def split_counts(class_sizes, validation_split):
            counts = {}
            for name, n in class_sizes.items():
                n_valid = math.floor(n * validation_split + 0.5)  # nearest, halves up
                n_valid = min(max(n_valid, 1), n - 1)  # validate every class, keep one to train
                counts[name] = (n - n_valid, n_valid)
            return counts
    """
    correct_message = (
        "that is exactly how ck.build_datasets splits a single folder: each class on its own, "
        "so even a class of two images is represented in validation."
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
        for name, n in sizes.items():
            got = _as_pair(result[name], name)
            want = expected[name]
            if got == want:
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
            if exact % 1 == 0.5 and got[1] == math.floor(exact):
                raise Incorrect(
                    f"{where}: {n} x {fraction} = {exact:g}, and halves round UP, so "
                    f"n_valid is {want[1]}. `int()` always rounds down and Python's "
                    f"`round({exact:g})` gives {round(exact)} (halves go to the even "
                    "neighbour): use `math.floor(x + 0.5)`."
                )
            if got[1] == math.ceil(exact) or got[1] == math.floor(exact):
                raise Incorrect(
                    f"{where}: {n} x {fraction} = {exact:.2f} should round to the NEAREST "
                    f"whole number ({want[1]} validation images), not always down or up."
                )
            raise Incorrect(f"{where}, but it should be {want} (n_train, n_valid).")


q1 = SplitCounts()

# ----------------------------------------------------------------------------- q2

#: The learning rate the new head trained with in phase 1 (the course's settings.lr).
Q2_HEAD_LR = 1e-3
#: Accepted range for base_lr / head_lr: "about ten times lower".
Q2_LOWEST_RATIO = 1 / 50
Q2_HIGHEST_RATIO = 1 / 5


class FineTuneLR(Question):
    title = "A learning rate for fine-tuning the backbone"
    hints = [
        "The backbone's weights were learned on a million ImageNet images; they are already "
        "good. Fine-tuning should nudge them, not overwrite them: the backbone learns MORE "
        "SLOWLY than the fresh head did.",
        "The usual starting point is about ten times lower than the head's learning rate.",
        "`base_lr = 1e-3 / 10`, i.e. `1e-4`; ck.param_groups then gives the head "
        "`head_lr_multiplier * 1e-4 = 1e-3`, the rate it already trained with.",
    ]
    solution_code = """
        head_lr = 1e-3
        base_lr = head_lr / 10   # 1e-4: the backbone moves 10x more slowly than the head did
        # groups = ck.param_groups(model, base_lr=base_lr, head_lr_multiplier=10)
        # -> backbone at 1e-4, head at 1e-3
    """
    correct_message = (
        "about ten times below the head's rate: the pretrained features are adjusted, not "
        "overwritten (1e-4 is the course's settings.fine_tune_lr)."
    )

    def _check(self, base_lr: Any) -> None:
        expect(
            not isinstance(base_lr, str),
            f"Give the learning rate as a number, like 5e-4, not as the string {base_lr!r}.",
        )
        expect(
            isinstance(base_lr, numbers.Real) and math.isfinite(float(base_lr)),
            f"base_lr should be a number, but it is {safe_repr(base_lr)}.",
        )
        base_lr = float(base_lr)
        expect(
            base_lr > 0,
            f"base_lr = {base_lr:g} means the backbone never changes: that is a frozen "
            "backbone, not fine-tuning. Pick a small positive rate.",
        )
        ratio = base_lr / Q2_HEAD_LR
        head_rate = f"the head's {Q2_HEAD_LR:g}"
        expect(
            ratio < 1 - 1e-6,
            f"base_lr = {base_lr:g} is {'higher than' if ratio > 1 + 1e-6 else 'as high as'} "
            f"{head_rate}. Large updates to pretrained weights, driven by the gradients of a "
            "head that is still far from perfect, can wipe out what ImageNet taught the "
            "backbone; validation accuracy often drops in the first fine-tuning epoch. Go "
            "about ten times lower.",
        )
        expect(
            ratio <= Q2_HIGHEST_RATIO,
            f"base_lr = {base_lr:g} is only {1 / ratio:.1f}x lower than {head_rate}. That is "
            "still a big step for weights that are already good; start about ten times lower.",
        )
        expect(
            ratio >= Q2_LOWEST_RATIO,
            f"base_lr = {base_lr:g} is {1 / ratio:.0f}x lower than {head_rate}: so cautious "
            f"that a few epochs barely change the backbone, and with head_lr_multiplier=10 "
            f"the head drops to {base_lr * 10:g}, far below what it trained with. About ten "
            "times lower is enough.",
        )


q2 = FineTuneLR()

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
