"""The checkers of lesson 11 accept the solutions and reject the common mistakes."""

from __future__ import annotations

from coursekit.exercises import ____, assert_fails, assert_not_attempted, assert_passes
from coursekit.exercises import lesson11 as ex

# ----------------------------------------------------------------------------- q1


def parity(torch_logits, onnx_logits):
    difference = (torch_logits - onnx_logits).abs().max()
    agree = (torch_logits.argmax(dim=1) == onnx_logits.argmax(dim=1)).all()
    return float(difference), bool(agree)


def test_q1_accepts_the_solution_and_tensor_results():
    assert_passes(ex.q1, parity)
    assert_passes(
        ex.q1,
        lambda a, b: ((a - b).abs().max(), (a.argmax(1) == b.argmax(1)).all()),
    )


def test_q1_rejects_the_mean_difference():
    def mean_parity(a, b):
        return float((a - b).abs().mean()), bool((a.argmax(1) == b.argmax(1)).all())

    assert_fails(ex.q1, mean_parity, message_contains="MEAN")


def test_q1_rejects_a_signed_difference():
    def signed(a, b):
        return float((a - b).max()), bool((a.argmax(1) == b.argmax(1)).all())

    assert_fails(ex.q1, signed, message_contains="absolute value")


def test_q1_rejects_top1_over_the_wrong_dimension_or_any():
    def by_column(a, b):
        return float((a - b).abs().max()), bool((a.argmax(0) == b.argmax(0)).all())

    def any_agree(a, b):
        return float((a - b).abs().max()), bool((a.argmax(1) == b.argmax(1)).any())

    assert_fails(ex.q1, by_column, message_contains="argmax(dim=1)")
    assert_fails(ex.q1, any_agree, message_contains="ALL")


def test_q1_rejects_one_value_and_blank():
    assert_fails(ex.q1, lambda a, b: float((a - b).abs().max()), message_contains="two values")
    assert_not_attempted(ex.q1, ____)


# ----------------------------------------------------------------------------- q2


def test_q2_accepts_about_11_mb():
    assert_passes(ex.q2, 11.2)
    assert_passes(ex.q2, 11.2e6 / 1e6)


def test_q2_explains_float32_bits_and_a_quarter():
    assert_fails(ex.q2, 44.8, message_contains="float32")
    assert_fails(ex.q2, 89.6, message_contains="bits")
    assert_fails(ex.q2, 2.8, message_contains="quarter")
    assert_fails(ex.q2, 20.0)
    assert_not_attempted(ex.q2, ____)


# ----------------------------------------------------------------------------- q3


def top_k_labels(probs, class_names, k):
    values, indices = probs.topk(k)
    return {
        class_names[i]: float(p) for p, i in zip(values.tolist(), indices.tolist(), strict=False)
    }


def test_q3_accepts_the_solution():
    assert_passes(ex.q3, top_k_labels)


def test_q3_rejects_indices_unsorted_and_smallest():
    def by_index(probs, class_names, k):
        values, indices = probs.topk(k)
        return {int(i): float(p) for p, i in zip(values, indices, strict=False)}

    def unsorted(probs, class_names, k):
        keep = set(probs.topk(k).indices.tolist())
        return {class_names[i]: float(probs[i]) for i in sorted(keep)}

    def smallest(probs, class_names, k):
        values, indices = probs.topk(k, largest=False)
        return {
            class_names[i]: float(p)
            for p, i in zip(values.tolist(), indices.tolist(), strict=False)
        }

    assert_fails(ex.q3, by_index, message_contains="NAMES")
    assert_fails(ex.q3, unsorted, message_contains="best class first")
    assert_fails(ex.q3, smallest, message_contains="LARGEST")


def test_q3_rejects_a_list_and_every_class():
    assert_fails(ex.q3, lambda probs, names, k: names[:k], message_contains="dictionary")
    assert_fails(
        ex.q3,
        lambda probs, names, k: dict(zip(names, probs.tolist(), strict=False)),
        message_contains="should give",
    )
