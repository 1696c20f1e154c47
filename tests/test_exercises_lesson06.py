"""Lesson 06 exercises: the reference solutions pass, typical mistakes fail with their message,
and the untouched templates count as not attempted."""

from __future__ import annotations

import pytest
import torch

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

    assert_fails(ex.q1, divided, message_contains="10x SLOWER")
    assert_fails(ex.q1, same_lr, message_contains="should be 10 * base_lr")


def test_q1_optimizer_instead_of_groups_fails():
    def optimizer(model, base_lr):
        return torch.optim.Adam(make_param_groups(model, base_lr))

    assert_fails(ex.q1, optimizer, message_contains="Return the list of groups itself")


def test_q1_template_is_not_attempted():
    def template(model, base_lr):
        return ____

    assert_not_attempted(ex.q1, template)


# ----------------------------------------------------------------------------- q2


def make_scheduler(optimizer, step_size, gamma):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


def test_q2_solution_passes():
    assert_passes(ex.q2, make_scheduler)


def test_q2_scheduler_on_the_old_optimizer_fails():
    old_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    old_scheduler = torch.optim.lr_scheduler.StepLR(old_optimizer, step_size=3, gamma=0.5)

    def keeps_the_old_one(optimizer, step_size, gamma):
        return old_scheduler

    assert_fails(ex.q2, keeps_the_old_one, message_contains="drives a different optimizer")


def test_q2_hard_coded_numbers_fail():
    def seven_epochs(optimizer, step_size, gamma):
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=gamma)

    def every_epoch(optimizer, step_size, gamma):
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=gamma)

    def tenth(optimizer, step_size, gamma):
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=0.1)

    assert_fails(ex.q2, seven_epochs, message_contains="should be 0.1 x 0.5 = 0.05")
    assert_fails(ex.q2, every_epoch, message_contains="after 1 step(s)")
    assert_fails(ex.q2, tenth, message_contains="Pass both `step_size` and `gamma`")


def test_q2_returning_the_optimizer_fails():
    assert_fails(
        ex.q2,
        lambda optimizer, step_size, gamma: optimizer,
        message_contains="Return the scheduler",
    )


def test_q2_template_is_not_attempted():
    def template(optimizer, step_size, gamma):
        return ____

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
