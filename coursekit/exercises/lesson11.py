"""Exercises of lesson 11 (ship it: ONNX, ONNX Runtime, a web demo).

q1: ``parity(torch_logits, onnx_logits)``: the largest absolute logit difference and whether
    every top-1 class agrees, the two numbers the export check reports.
q2: the size of an int8 file: how many megabytes do 11.2 million weights take at one byte each?
q3: ``top_k_labels(probs, class_names, k)``: the ``{class: probability}`` dictionary, best
    first, that the demo page draws as bars.

The checks use fixed small tensors, so they are fast and need no model or data.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from coursekit.exercises.core import (
    Incorrect,
    Question,
    ValueQuestion,
    call_answer,
    expect,
    expect_callable,
    safe_repr,
)

__all__ = ["q1", "q2", "q3"]


# ----------------------------------------------------------------------------- q1


def _logit_pairs() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs where max |difference|, max difference (either way round), mean |difference|,
    and top-1 per row or per column all give different answers, so each mistake shows."""
    a = torch.tensor([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2], [1.0, 1.0, 3.0]])
    b = a + torch.tensor([[0.0, 0.0, 0.6], [0.0, -0.25, 0.0], [2.5, 0.0, 0.0]])  # top-1 flips
    c = a + torch.tensor([[1e-6, -3e-6, 0.0], [0.0, 2e-6, 0.0], [0.0, 0.0, -1e-6]])
    rows = torch.tensor([[3.0, 0.0], [2.9, 1.0]])  # every row agrees, a column does not
    return [(a, b), (a, c), (rows, rows + torch.tensor([[0.0, 0.0], [0.2, 0.0]]))]


def _reference_parity(expected: torch.Tensor, actual: torch.Tensor) -> tuple[float, bool]:
    difference = float((expected - actual).abs().max())
    agree = bool((expected.argmax(dim=1) == actual.argmax(dim=1)).all())
    return difference, agree


class Parity(Question):
    title = "Check that the exported model gives the same answers"
    hints = [
        "Two numbers: the LARGEST absolute difference over every logit of every image, and "
        "whether the best class (argmax of each row) is the same in both.",
        "`(torch_logits - onnx_logits).abs().max()` is the largest difference; "
        "`torch_logits.argmax(dim=1)` is each image's top-1 class.",
        "Return a tuple `(float(difference), bool(agree))`, where `agree` is "
        "`(top1_a == top1_b).all()`.",
    ]
    solution_code = """
        def parity(torch_logits, onnx_logits):
            difference = (torch_logits - onnx_logits).abs().max()
            agree = (torch_logits.argmax(dim=1) == onnx_logits.argmax(dim=1)).all()
            return float(difference), bool(agree)
    """
    correct_message = (
        "this is what `ck.export_onnx` prints after every export: a difference near 1e-6 is "
        "float rounding, a difference near 1 is a different model."
    )

    def _check(self, parity: Any) -> None:
        expect_callable(parity, "parity")
        for expected, actual in _logit_pairs():
            result = call_answer(parity, expected.clone(), actual.clone())
            expect(
                isinstance(result, tuple | list) and len(result) == 2,
                f"parity(...) should return two values (difference, agree), but it returned "
                f"{safe_repr(result)}.",
            )
            difference, agree = result
            if isinstance(difference, torch.Tensor):
                difference = difference.item()
            if isinstance(agree, torch.Tensor):
                agree = agree.item()
            want_difference, want_agree = _reference_parity(expected, actual)
            signed = float((expected - actual).max())
            mean = float((expected - actual).abs().mean())
            if not math.isclose(float(difference), want_difference, rel_tol=1e-4, abs_tol=1e-9):
                if math.isclose(float(difference), mean, rel_tol=1e-4):
                    raise Incorrect(
                        "That is the MEAN difference: one badly wrong logit hides among many "
                        "good ones. Take the largest, `.abs().max()`."
                    )
                if math.isclose(float(difference), signed, rel_tol=1e-4):
                    raise Incorrect(
                        "Take the absolute value before the max: a logit that is too LOW is "
                        "as wrong as one that is too high (`.abs().max()`)."
                    )
                raise Incorrect(
                    f"The largest absolute difference should be {want_difference:.3g}, but "
                    f"it is {safe_repr(difference)}."
                )
            expect(
                isinstance(agree, bool),
                f"The second value should be True or False, not {safe_repr(agree)}.",
            )
            expect(
                agree == want_agree,
                f"The top-1 classes {'all agree' if want_agree else 'differ for one image'}, "
                f"but you returned {agree}. Compare `argmax(dim=1)` of each row (each image), "
                "and ask whether ALL of them are equal.",
            )


q1 = Parity()


# ----------------------------------------------------------------------------- q2

q2 = ValueQuestion(
    title="How big is the int8 file?",
    expected=11.2,
    tolerance=0.6,
    wrong_answers={
        44.8: "That is the float32 file: 4 bytes per weight. int8 stores ONE byte per weight.",
        89.6: "That counts bits (8 per weight). A megabyte is a million BYTES.",
        2.8: "int8 is one byte per weight, a quarter of float32's four: not a quarter again.",
    },
    hints=[
        "float32 stores each weight in 4 bytes; int8 in 1 byte.",
        "11.2 million weights x 1 byte = 11.2 million bytes = how many MB (1 MB = 1,000,000 "
        "bytes)?",
    ],
    solution_code="""
        answer = 11.2e6 * 1 / 1e6   # one byte per weight: about 11.2 MB (float32: 44.8 MB)
    """,
    correct_message=(
        "four times smaller than float32. The few numbers that are not weights (and the "
        "scales int8 needs) add a little."
    ),
)


# ----------------------------------------------------------------------------- q3


def _reference_top_k(probs: torch.Tensor, names: list[str], k: int) -> dict[str, float]:
    values, indices = probs.topk(min(k, len(names)))
    return {names[i]: float(v) for v, i in zip(values.tolist(), indices.tolist(), strict=True)}


class TopKLabels(Question):
    title = "The bars of the demo page"
    hints = [
        "`probs.topk(k)` gives the k largest probabilities and their class indices, largest first.",
        "Turn each index into its name with `class_names[i]` and build a dictionary "
        "`{name: float(prob)}` in that order.",
    ]
    solution_code = """
        def top_k_labels(probs, class_names, k):
            values, indices = probs.topk(k)
            return {class_names[i]: float(p) for p, i in zip(values.tolist(), indices.tolist())}
    """
    correct_message = (
        "`gr.Label` draws exactly this dictionary as bars; `ck.classify` builds it from a "
        "`Prediction`."
    )

    def _check(self, top_k_labels: Any) -> None:
        expect_callable(top_k_labels, "top_k_labels")
        names = ["daisy", "rose", "tulip", "sunflower", "iris"]
        probs = torch.tensor([0.05, 0.5, 0.1, 0.3, 0.05])
        for k in (3, 1):
            result = call_answer(top_k_labels, probs.clone(), list(names), k)
            call = f"top_k_labels(probs, class_names, k={k})"
            expect(
                isinstance(result, dict),
                f"{call} should return a dictionary {{name: probability}}, but it returned "
                f"{safe_repr(result)}.",
            )
            wanted = _reference_top_k(probs, names, k)
            expect(
                all(isinstance(key, str) for key in result),
                f"The keys should be class NAMES, not {safe_repr(list(result))}: look each "
                "index up in `class_names`.",
            )
            expect(
                len(result) == k,
                f"{call} should give {k} classes, but it gave {len(result)}.",
            )
            expect(
                set(result) == set(wanted),
                f"{call} should give {list(wanted)}, but it gave {list(result)}: take the "
                "LARGEST probabilities (`probs.topk(k)`).",
            )
            expect(
                list(result) == list(wanted),
                f"Put the best class first: {list(wanted)}, not {list(result)}.",
            )
            for name, prob in wanted.items():
                expect(
                    math.isclose(float(result[name]), prob, rel_tol=1e-5),
                    f"{name!r} should have probability {prob:.2f}, but it has "
                    f"{safe_repr(result[name])}.",
                )


q3 = TopKLabels()
