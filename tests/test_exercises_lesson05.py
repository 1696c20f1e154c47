"""Lesson 05 exercises: the reference solutions pass, typical mistakes fail with their message,
and the untouched templates count as not attempted."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from coursekit.exercises import ____, assert_fails, assert_not_attempted, assert_passes, core
from coursekit.exercises import lesson05 as ex


@pytest.fixture(autouse=True)
def plain_text(monkeypatch):
    monkeypatch.setattr(core, "_in_ipython", lambda: False)


# ----------------------------------------------------------------------------- q1


def freeze_all_but_head(model):
    for parameter in model.parameters():
        parameter.requires_grad = False
    for parameter in model.fc.parameters():
        parameter.requires_grad = True
    return model


def test_q1_solution_passes():
    assert_passes(ex.q1, freeze_all_but_head)


def test_q1_works_on_a_torchvision_resnet_too():
    import torchvision

    model = freeze_all_but_head(torchvision.models.resnet18(weights=None, num_classes=3))
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]


def test_q1_head_frozen_too():
    def everything_frozen(model):
        for parameter in model.parameters():
            parameter.requires_grad = False
        return model

    assert_fails(ex.q1, everything_frozen, message_contains="not even the head")


def test_q1_nothing_frozen_and_only_convs_frozen():
    def nothing(model):
        return model

    def only_convs(model):
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                for parameter in module.parameters():
                    parameter.requires_grad = False
        return model

    assert_fails(ex.q1, nothing, message_contains="Nothing is frozen")
    assert_fails(ex.q1, only_convs, message_contains="bn1.weight")


def test_q1_forgot_to_return_and_replaced_head():
    def no_return(model):
        freeze_all_but_head(model)

    def replaced(model):
        freeze_all_but_head(model)
        model.fc = nn.Linear(model.fc.in_features, model.fc.out_features)
        return model

    assert_fails(ex.q1, no_return, message_contains="return model")
    assert_fails(ex.q1, replaced, message_contains="The head changed")


def test_q1_template_is_not_attempted():
    def template(model):
        ____  # noqa: B018 - the blank, as in the notebook
        return model

    assert_not_attempted(ex.q1, template)
    assert_not_attempted(ex.q1, ____)


# ----------------------------------------------------------------------------- q2


def make_optimizer(model, lr):
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)


def test_q2_solution_passes():
    assert_passes(ex.q2, make_optimizer)


def test_q2_all_parameters_and_default_lr_fail():
    def every_parameter(model, lr):
        return torch.optim.Adam(model.parameters(), lr=lr)

    def default_lr(model, lr):
        return torch.optim.Adam([p for p in model.parameters() if p.requires_grad])

    assert_fails(ex.q2, every_parameter, message_contains="also holds frozen parameters")
    assert_fails(ex.q2, default_lr, message_contains="should be the `lr` argument")


def test_q2_all_parameters_message_says_it_would_train_but_is_not_what_was_asked():
    def every_parameter(model, lr):
        return torch.optim.Adam(model.parameters(), lr=lr)

    assert_fails(ex.q2, every_parameter, message_contains="Adam skips them")
    assert_fails(ex.q2, every_parameter, message_contains="asks for an optimizer that holds ONLY")


def test_q2_other_ways_to_keep_only_the_trainable_parameters_pass():
    def with_filter(model, lr):
        return torch.optim.Adam(filter(lambda p: p.requires_grad, model.parameters()), lr=lr)

    def by_name(model, lr):
        return torch.optim.Adam(
            [p for _, p in model.named_parameters() if p.requires_grad], lr=lr
        )

    assert_passes(ex.q2, with_filter)
    assert_passes(ex.q2, by_name)


def test_q2_returning_the_parameter_list_fails():
    def params_only(model, lr):
        return [p for p in model.parameters() if p.requires_grad]

    assert_fails(ex.q2, params_only, message_contains="Return the optimizer itself")


def test_q2_template_is_not_attempted():
    def template(model, lr):
        return ____

    assert_not_attempted(ex.q2, template)


# ----------------------------------------------------------------------------- q3


def replace_vgg_head(model, num_classes):
    model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


def test_q3_solution_passes():
    assert_passes(ex.q3, replace_vgg_head)


def test_q3_hard_coded_4096_fails():
    def hard_coded(model, num_classes):
        model.classifier[-1] = nn.Linear(4096, num_classes)
        return model

    assert_fails(ex.q3, hard_coded, message_contains="read `model.classifier[-1].in_features`")


def test_q3_whole_classifier_or_fc_fails():
    def whole_block(model, num_classes):
        model.classifier = nn.Linear(16, num_classes)
        return model

    def resnet_habit(model, num_classes):
        model.fc = nn.Linear(32, num_classes)
        return model

    assert_fails(ex.q3, whole_block, message_contains="replace only its LAST layer")
    assert_fails(ex.q3, resnet_habit, message_contains="A VGG has no `fc`")


def test_q3_hard_coded_class_count_fails():
    def three_classes(model, num_classes):
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, 3)
        return model

    assert_fails(ex.q3, three_classes, message_contains="use the `num_classes` argument")


def test_q3_template_is_not_attempted():
    def template(model, num_classes):
        ____  # noqa: B018
        return model

    assert_not_attempted(ex.q3, template)


# ----------------------------------------------------------------------------- q4


def freeze_all_but_last_stage(model):
    for parameter in model.parameters():
        parameter.requires_grad = False
    for parameter in [*model.layer4.parameters(), *model.fc.parameters()]:
        parameter.requires_grad = True
    return model


def test_q4_solution_passes():
    assert_passes(ex.q4, freeze_all_but_last_stage)


def test_q4_solution_with_coursekit_passes():
    import coursekit as ck

    def with_coursekit(model):
        ck.freeze(model)
        ck.unfreeze(model, ["layer4", "fc"])
        return model

    assert_passes(ex.q4, with_coursekit)


def test_q4_works_on_a_torchvision_resnet_too():
    import torchvision

    model = freeze_all_but_last_stage(torchvision.models.resnet18(weights=None, num_classes=3))
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer4", "fc"}


def only_trainable(model, *parts):
    """Freeze ``model``, then unfreeze the named parts: the shape of a typical wrong answer."""
    model.requires_grad_(False)
    for part in parts:
        getattr(model, part).requires_grad_(True)
    return model


def test_q4_only_the_head_or_only_the_stage_fails():
    assert_fails(
        ex.q4, lambda model: only_trainable(model, "fc"), message_contains="all of `layer4` ends up"
    )
    assert_fails(
        ex.q4,
        lambda model: only_trainable(model, "layer4"),
        message_contains="the head ends up frozen (fc.weight, fc.bias)",
    )
    assert_fails(
        ex.q4,
        lambda model: only_trainable(model, "layer3", "layer4", "fc"),
        message_contains="these parts still train: layer3.",
    )


def test_q4_earlier_stages_left_trainable_fail():
    def freezes_stages_only(model):
        for stage in (model.layer1, model.layer2, model.layer3):
            stage.requires_grad_(False)
        return model

    def unfreezes_without_freezing(model):
        model.layer4.requires_grad_(True)
        model.fc.requires_grad_(True)
        return model

    assert_fails(ex.q4, freezes_stages_only, message_contains="these parts still train: conv1, bn1")
    assert_fails(ex.q4, unfreezes_without_freezing, message_contains="nothing is frozen")


def test_q4_convolutions_only_fails():
    def convs_only(model):
        freeze_all_but_last_stage(model)
        for module in model.layer4.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.requires_grad_(False)
        return model

    assert_fails(
        ex.q4, convs_only, message_contains="part of `layer4` ends up frozen (layer4.1.weight"
    )


def test_q4_everything_frozen_and_replaced_head_fail():
    def replaced(model):
        freeze_all_but_last_stage(model)
        model.fc = nn.Linear(model.fc.in_features, model.fc.out_features)
        return model

    assert_fails(ex.q4, only_trainable, message_contains="nothing trains afterwards")
    assert_fails(ex.q4, replaced, message_contains="The head changed")


def test_q4_template_is_not_attempted():
    def template(model):
        ____  # noqa: B018
        return model

    assert_not_attempted(ex.q4, template)
    assert_not_attempted(ex.q4, ____)


def test_checkers_never_raise_on_odd_answers():
    for question in (ex.q1, ex.q2, ex.q3, ex.q4):
        assert_fails(question, 42)
        assert_fails(question, lambda *args: 1 / 0, message_contains="ZeroDivisionError")
