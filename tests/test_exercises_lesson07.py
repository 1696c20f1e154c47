"""The checkers of lesson 07 accept the solutions and reject the common mistakes."""

from __future__ import annotations

import torch

from coursekit.exercises import ____, assert_fails, assert_not_attempted, assert_passes
from coursekit.exercises import lesson07 as ex

# ----------------------------------------------------------------------------- q1


def confusion_loop(labels, preds, num_classes):
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for true, pred in zip(labels.tolist(), preds.tolist(), strict=True):
        cm[true, pred] += 1
    return cm


def confusion_bincount(labels, preds, num_classes):
    counts = torch.bincount(labels * num_classes + preds, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes)


def test_q1_accepts_the_loop_and_the_bincount_solutions():
    assert_passes(ex.q1, confusion_loop)
    assert_passes(ex.q1, confusion_bincount)
    assert_passes(ex.q1, lambda y, p, k: confusion_loop(y, p, k).float())  # float counts are fine


def test_q1_rejects_a_transposed_matrix():
    def transposed(labels, preds, num_classes):
        return confusion_loop(labels, preds, num_classes).T

    assert_fails(ex.q1, transposed, message_contains="transposed")


def test_q1_rejects_a_size_taken_from_the_data():
    def sized_from_data(labels, preds, num_classes):
        k = int(max(labels.max(), preds.max())) + 1
        return confusion_loop(labels, preds, k)

    assert_fails(ex.q1, sized_from_data, message_contains="never")


def test_q1_names_labels_max_plus_one_as_the_cause_of_a_crash():
    def sized_from_labels(labels, preds, num_classes):
        return confusion_loop(labels, preds, int(labels.max()) + 1)  # IndexError on a pred

    result = assert_fails(ex.q1, sized_from_labels, message_contains="Size it with `num_classes`")
    assert "IndexError" in result.message and "labels.max() + 1" in result.message


def test_q1_names_a_missing_minlength_as_the_cause_of_a_crash():
    def no_minlength(labels, preds, num_classes):
        return torch.bincount(labels * num_classes + preds).reshape(num_classes, num_classes)

    result = assert_fails(ex.q1, no_minlength, message_contains="minlength=num_classes")
    assert "RuntimeError" in result.message


def test_q1_a_crash_on_any_data_keeps_the_plain_crash_message():
    def always_index_error(labels, preds, num_classes):
        return torch.zeros(1)[5]

    result = assert_fails(ex.q1, always_index_error, message_contains="Your code raised")
    assert "num_classes" not in result.message


def test_q1_rejects_wrong_counts():
    def off_by_one(labels, preds, num_classes):
        return confusion_loop(labels, preds, num_classes) + torch.eye(
            num_classes, dtype=torch.int64
        )

    assert_fails(ex.q1, off_by_one, message_contains="add up to")


def test_q1_blank_is_not_attempted():
    assert_not_attempted(ex.q1, ____)

    def template(labels, preds, num_classes):
        cm = ____
        return cm

    assert_not_attempted(ex.q1, template)


def test_q1_a_crash_is_a_failure_not_an_exception():
    def crashes(labels, preds, num_classes):
        raise RuntimeError("boom")

    assert_fails(ex.q1, crashes, message_contains="boom")


# ----------------------------------------------------------------------------- q2


def recall(cm):
    return cm.diagonal().float() / cm.sum(dim=1).float()


def test_q2_accepts_the_solution():
    assert_passes(ex.q2, recall)


def test_q2_rejects_precision():
    assert_fails(
        ex.q2,
        lambda cm: cm.diagonal().float() / cm.sum(dim=0).float(),
        message_contains="precision",
    )


def test_q2_rejects_zero_for_an_empty_class():
    assert_fails(ex.q2, lambda cm: torch.nan_to_num(recall(cm), nan=0.0), message_contains="nan")


def test_q2_rejects_percentages():
    assert_fails(ex.q2, lambda cm: 100 * recall(cm), message_contains="percentages")


def test_q2_rejects_counts():
    assert_fails(ex.q2, lambda cm: cm.diagonal(), message_contains="counts")


def test_q2_integer_division_by_zero_is_reported_not_raised():
    result = ex.q2.evaluate(lambda cm: cm.diagonal() // cm.sum(dim=1))
    assert result.outcome.name == "FAIL"


def test_q2_blank_is_not_attempted():
    assert_not_attempted(ex.q2, ____)
    assert_not_attempted(ex.q2, lambda cm: ____)


# ----------------------------------------------------------------------------- q3


def top_k(logits, labels, k):
    top = logits.topk(k, dim=1).indices
    return (top == labels.unsqueeze(1)).any(dim=1).float().mean().item()


def test_q3_accepts_the_solution_and_a_tensor_result():
    assert_passes(ex.q3, top_k)
    assert_passes(ex.q3, lambda logits, labels, k: torch.tensor(top_k(logits, labels, k)))
    assert_passes(ex.q3, lambda logits, labels, k: top_k(logits.softmax(dim=1), labels, k))


def test_q3_rejects_the_smallest_scores():
    def ascending(logits, labels, k):
        top = logits.argsort(dim=1)[:, :k]
        return (top == labels.unsqueeze(1)).any(dim=1).float().mean().item()

    assert_fails(ex.q3, ascending, message_contains="SMALLEST")


def test_q3_rejects_a_count_of_hits():
    def counts(logits, labels, k):
        top = logits.topk(k, dim=1).indices
        return int((top == labels.unsqueeze(1)).any(dim=1).sum())

    assert_fails(ex.q3, counts, message_contains="fraction")


def test_q3_rejects_percentages():
    def percent(logits, labels, k):
        return 100 * top_k(logits, labels, k)

    result = assert_fails(ex.q3, percent, message_contains="percentages")
    assert "between 0 and 1" in result.message


def test_q3_rejects_top_1_for_every_k():
    def only_top_1(logits, labels, k):
        return (logits.argmax(dim=1) == labels).float().mean().item()

    assert_fails(ex.q3, only_top_1, message_contains="ANY")


def test_q3_blank_is_not_attempted():
    assert_not_attempted(ex.q3, ____)

    def template(logits, labels, k):
        top = ____
        return top

    assert_not_attempted(ex.q3, template)
