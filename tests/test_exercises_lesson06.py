"""Lesson 06 exercises: the reference solutions pass, typical mistakes fail with their message,
and the untouched templates count as not attempted."""

from __future__ import annotations

import pytest
import torch
from torch.optim.lr_scheduler import StepLR

from coursekit.exercises import ____, assert_fails, assert_not_attempted, assert_passes, core
from coursekit.exercises import lesson06 as ex


@pytest.fixture(autouse=True)
def plain_text(monkeypatch):
    monkeypatch.setattr(core, "_in_ipython", lambda: False)


# ----------------------------------------------------------------------------- q1


def make_param_groups(model, base_lr):
    head, backbone = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (head if name.startswith("fc.") else backbone).append(parameter)
    return [{"params": backbone, "lr": base_lr}, {"params": head, "lr": 10 * base_lr}]


def test_q1_solution_passes():
    assert_passes(ex.q1, make_param_groups)


def test_q1_coursekit_param_groups_pass_too():
    import coursekit as ck

    assert_passes(ex.q1, lambda model, base_lr: ck.param_groups(model, base_lr, 10.0))


def test_q1_head_in_both_groups_fails():
    def overlapping(model, base_lr):
        return [
            {"params": [p for p in model.parameters() if p.requires_grad], "lr": base_lr},
            {"params": list(model.fc.parameters()), "lr": 10 * base_lr},
        ]

    assert_fails(ex.q1, overlapping, message_contains="is in two groups")


def test_q1_frozen_parameters_included_fails():
    def with_frozen(model, base_lr):
        backbone = [p for n, p in model.named_parameters() if not n.startswith("fc.")]
        return [
            {"params": backbone, "lr": base_lr},
            {"params": list(model.fc.parameters()), "lr": 10 * base_lr},
        ]

    assert_fails(ex.q1, with_frozen, message_contains="frozen parameters (bn1.bias")


def test_q1_wrong_learning_rates_fail():
    def divided(model, base_lr):
        groups = make_param_groups(model, base_lr)
        groups[1]["lr"] = base_lr / 10
        return groups

    def same_lr(model, base_lr):
        groups = make_param_groups(model, base_lr)
        groups[1]["lr"] = base_lr
        return groups

    def swapped(model, base_lr):
        groups = make_param_groups(model, base_lr)
        groups[0]["lr"], groups[1]["lr"] = groups[1]["lr"], groups[0]["lr"]
        return groups

    def head_too_slow(model, base_lr):
        groups = make_param_groups(model, base_lr)
        groups[1]["lr"] = 2 * base_lr
        return groups

    assert_fails(ex.q1, divided, message_contains="10x SLOWER")
    assert_fails(ex.q1, same_lr, message_contains="Every parameter learns at 0.0001")
    assert_fails(ex.q1, swapped, message_contains="The rates are swapped")
    assert_fails(ex.q1, head_too_slow, message_contains="should be 10 * base_lr = 0.001")


def test_q1_optimizer_instead_of_groups_fails():
    def optimizer(model, base_lr):
        return torch.optim.Adam(make_param_groups(model, base_lr))

    assert_fails(ex.q1, optimizer, message_contains="Return the list of groups itself")


def test_q1_template_is_not_attempted():
    def template(model, base_lr):
        return ____

    assert_not_attempted(ex.q1, template)


# ----------------------------------------------------------------------------- q2


def start_fine_tuning(model, head_optimizer, base_lr, step_size, gamma):
    for parameter in model.parameters():
        parameter.requires_grad = True
    optimizer = torch.optim.Adam(make_param_groups(model, base_lr))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    return optimizer, scheduler


def test_q2_solution_passes():
    assert_passes(ex.q2, start_fine_tuning)


def test_q2_coursekit_helpers_pass_too():
    import coursekit as ck

    def with_coursekit(model, head_optimizer, base_lr, step_size, gamma):
        ck.unfreeze(model)
        optimizer = torch.optim.SGD(ck.param_groups(model, base_lr, 10.0), momentum=0.9)
        return optimizer, StepLR(optimizer, step_size=step_size, gamma=gamma)

    assert_passes(ex.q2, with_coursekit)


def test_q2_scheduler_on_the_old_optimizer_fails():
    def old_optimizer(model, head_optimizer, base_lr, step_size, gamma):
        optimizer, _ = start_fine_tuning(model, head_optimizer, base_lr, step_size, gamma)
        return optimizer, StepLR(head_optimizer, step_size=step_size, gamma=gamma)

    def unrelated_optimizer(model, head_optimizer, base_lr, step_size, gamma):
        optimizer, _ = start_fine_tuning(model, head_optimizer, base_lr, step_size, gamma)
        other = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
        return optimizer, StepLR(other, step_size=step_size, gamma=gamma)

    assert_fails(ex.q2, old_optimizer, message_contains="drives `head_optimizer`")
    assert_fails(ex.q2, unrelated_optimizer, message_contains="another optimizer")


def test_q2_frozen_backbone_fails():
    def never_unfreezes(model, head_optimizer, base_lr, step_size, gamma):
        optimizer = torch.optim.Adam(make_param_groups(model, base_lr))
        return optimizer, StepLR(optimizer, step_size=step_size, gamma=gamma)

    def unfreezes_too_late(model, head_optimizer, base_lr, step_size, gamma):
        optimizer = torch.optim.Adam(make_param_groups(model, base_lr))
        for parameter in model.parameters():
            parameter.requires_grad = True
        return optimizer, StepLR(optimizer, step_size=step_size, gamma=gamma)

    assert_fails(ex.q2, never_unfreezes, message_contains="backbone is still frozen (conv1, bn1")
    assert_fails(ex.q2, unfreezes_too_late, message_contains="does not hold conv1, bn1, layer1")


def test_q2_reusing_the_head_optimizer_fails():
    def grows_the_old_one(model, head_optimizer, base_lr, step_size, gamma):
        for parameter in model.parameters():
            parameter.requires_grad = True
        backbone = [p for n, p in model.named_parameters() if not n.startswith("fc.")]
        head_optimizer.add_param_group({"params": backbone, "lr": base_lr})
        return head_optimizer, StepLR(head_optimizer, step_size=step_size, gamma=gamma)

    assert_fails(ex.q2, grows_the_old_one, message_contains="Build a NEW optimizer")


def test_q2_wrong_learning_rates_fail():
    def single_lr(model, head_optimizer, base_lr, step_size, gamma):
        for parameter in model.parameters():
            parameter.requires_grad = True
        optimizer = torch.optim.Adam(model.parameters(), lr=base_lr)
        return optimizer, StepLR(optimizer, step_size=step_size, gamma=gamma)

    def swapped(model, head_optimizer, base_lr, step_size, gamma):
        for parameter in model.parameters():
            parameter.requires_grad = True
        backbone, head = make_param_groups(model, base_lr)
        backbone["lr"], head["lr"] = head["lr"], backbone["lr"]
        optimizer = torch.optim.Adam([backbone, head])
        return optimizer, StepLR(optimizer, step_size=step_size, gamma=gamma)

    assert_fails(ex.q2, single_lr, message_contains="Every parameter learns at 0.0001")
    assert_fails(ex.q2, swapped, message_contains="The rates are swapped")


def test_q2_hard_coded_schedule_fails():
    def seven_epochs(model, head_optimizer, base_lr, step_size, gamma):
        optimizer, _ = start_fine_tuning(model, head_optimizer, base_lr, step_size, gamma)
        return optimizer, StepLR(optimizer, step_size=7, gamma=gamma)

    def every_epoch(model, head_optimizer, base_lr, step_size, gamma):
        optimizer, _ = start_fine_tuning(model, head_optimizer, base_lr, step_size, gamma)
        return optimizer, StepLR(optimizer, step_size=1, gamma=gamma)

    def tenth(model, head_optimizer, base_lr, step_size, gamma):
        optimizer, _ = start_fine_tuning(model, head_optimizer, base_lr, step_size, gamma)
        return optimizer, StepLR(optimizer, step_size=step_size, gamma=0.1)

    assert_fails(ex.q2, seven_epochs, message_contains="should be at 0.0001 x 0.1 = 1e-05")
    assert_fails(ex.q2, every_epoch, message_contains="changed after 1 epoch(s)")
    assert_fails(ex.q2, tenth, message_contains="0.0003 x 0.5 = 0.00015")


def test_q2_returning_one_thing_or_the_wrong_order_fails():
    def scheduler_only(model, head_optimizer, base_lr, step_size, gamma):
        return start_fine_tuning(model, head_optimizer, base_lr, step_size, gamma)[1]

    def reversed_pair(model, head_optimizer, base_lr, step_size, gamma):
        return start_fine_tuning(model, head_optimizer, base_lr, step_size, gamma)[::-1]

    assert_fails(ex.q2, scheduler_only, message_contains="Return two things")
    assert_fails(ex.q2, reversed_pair, message_contains="should be the new optimizer")


def test_q2_template_is_not_attempted():
    def template(model, head_optimizer, base_lr, step_size, gamma):
        ____  # noqa: B018
        optimizer = ____
        scheduler = ____
        return optimizer, scheduler

    assert_not_attempted(ex.q2, template)


# ----------------------------------------------------------------------------- q3


def test_q3_feature_extraction_is_right():
    assert_passes(ex.q3, "feature extraction")
    assert_passes(ex.q3, " Feature Extraction ")


@pytest.mark.parametrize(
    ("answer", "explanation"),
    [
        ("full fine-tuning", "overfits easily"),
        ("freeze then unfreeze", "in minutes"),
        ("train from scratch", "far too few"),
        ("transfer learning", "Pick one of"),
    ],
)
def test_q3_wrong_choices_explain_why(answer, explanation):
    assert_fails(ex.q3, answer, message_contains=explanation)


def test_q3_blank_is_not_attempted():
    assert_not_attempted(ex.q3, ____)


def test_checkers_never_raise_on_odd_answers():
    for question in (ex.q1, ex.q2):
        assert_fails(question, 42)
        assert_fails(question, lambda *args: 1 / 0, message_contains="ZeroDivisionError")
