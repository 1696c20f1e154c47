"""Exercises of lesson 05 (transfer learning): freeze all but the head, an optimizer over the
trainable parameters, a new VGG head, and freezing all but the last stage and the head.

    >>> from coursekit.exercises import lesson05 as ex  # doctest: +SKIP
    >>> ex.q1.check(freeze_all_but_head)                # doctest: +SKIP

Every checker builds its own tiny network, so it runs in milliseconds and never downloads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from coursekit.exercises.core import (
    Question,
    call_answer,
    expect,
    expect_callable,
    expect_equal,
    expect_shape,
    safe_repr,
)


class TinyNet(nn.Module):
    """A ResNet-shaped toy: a conv stem with BatchNorm, four small stages ``layer1``...``layer4``
    (each a conv and a BatchNorm), global pool and an ``fc`` head."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = _stage(4, 4)
        self.layer2 = _stage(4, 8)
        self.layer3 = _stage(8, 8)
        self.layer4 = _stage(8, 8)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _stage(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class TinyVGG(nn.Module):
    """A VGG-shaped toy: ``features``, ``avgpool`` and a 7-layer ``classifier`` 32 wide."""

    def __init__(self, num_classes: int = 10, hidden: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(4 * 2 * 2, hidden),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def _trainable_names(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def frozen_backbone_net() -> TinyNet:
    """A TinyNet whose backbone is frozen and whose head trains (lesson 05's situation)."""
    model = TinyNet()
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith("fc.")
    return model


def parts_of(names: Sequence[str]) -> str:
    """``"conv1, bn1, layer1"`` for parameter names: shorter than a list of every tensor."""
    return ", ".join(dict.fromkeys(name.split(".")[0] for name in names))


def _expect_model(result: Any, name: str) -> None:
    expect(result is not None, f"`{name}` returned None: end it with `return model`.")
    expect(
        isinstance(result, nn.Module),
        f"`{name}` should return the model, but it returned {safe_repr(result)}.",
    )


def _expect_same_head(result: nn.Module, head_weight: torch.Tensor) -> None:
    head = getattr(result, "fc", None)
    expect(
        isinstance(head, nn.Linear)
        and head.weight.shape == head_weight.shape
        and torch.equal(head.weight.detach(), head_weight),
        "The head changed: this exercise keeps the existing `model.fc` and only changes "
        "`requires_grad` (replacing the head is `ck.replace_head`'s job).",
    )


# ----------------------------------------------------------------------------- q1


class FreezeAllButHead(Question):
    title = "Freeze every parameter except the head's"
    hints = [
        "Two steps: switch off `requires_grad` for EVERY parameter, then switch it back on for "
        "the parameters of `model.fc`.",
        "`model.parameters()` yields every parameter; `model.fc.parameters()` only the head's. "
        "Each has a `requires_grad` attribute you can set to True or False.",
        "`for p in model.parameters(): p.requires_grad = False`, then the same loop over "
        "`model.fc.parameters()` with `True`, then `return model`.",
    ]
    solution_code = """
        def freeze_all_but_head(model):
            for parameter in model.parameters():
                parameter.requires_grad = False
            for parameter in model.fc.parameters():
                parameter.requires_grad = True
            return model
    """

    def _check(self, freeze_all_but_head: Callable[[nn.Module], nn.Module]) -> None:
        expect_callable(freeze_all_but_head, "freeze_all_but_head")
        model = TinyNet()
        head_weight = model.fc.weight.detach().clone()
        result = call_answer(freeze_all_but_head, model)
        _expect_model(result, "freeze_all_but_head")
        trainable = _trainable_names(result)
        everything = [name for name, _ in result.named_parameters()]
        expect(
            trainable,
            "Nothing is trainable, not even the head: after freezing everything, set "
            "`requires_grad = True` on the parameters of `model.fc`.",
        )
        expect(
            trainable != everything,
            "Nothing is frozen: set `requires_grad = False` on every parameter first.",
        )
        backbone = [name for name in trainable if not name.startswith("fc.")]
        expect(
            not backbone,
            f"These backbone parameters still train: {', '.join(backbone)}. Freeze every "
            "parameter, not only some layers (BatchNorm weights count too).",
        )
        frozen_head = sorted({"fc.weight", "fc.bias"} - set(trainable))
        expect(
            not frozen_head,
            f"Part of the head is frozen ({', '.join(frozen_head)}): both `fc.weight` and "
            "`fc.bias` must train.",
        )
        _expect_same_head(result, head_weight)
        trainable_numbers = sum(p.numel() for p in result.parameters() if p.requires_grad)
        expect_equal(trainable_numbers, 8 * 3 + 3, "the number of trainable numbers (8 x 3 + 3)")


# ----------------------------------------------------------------------------- q2


class OptimizerOverTrainable(Question):
    title = "An optimizer over the trainable parameters only"
    hints = [
        "Keep only the parameters with `requires_grad` set, and give those to the optimizer.",
        "`[p for p in model.parameters() if p.requires_grad]` is the list of params to learn.",
        "`return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)`",
    ]
    solution_code = """
        def make_optimizer(model, lr):
            params_to_learn = [p for p in model.parameters() if p.requires_grad]
            return torch.optim.Adam(params_to_learn, lr=lr)
    """

    lr = 0.01

    def _check(self, make_optimizer: Callable[[nn.Module, float], torch.optim.Optimizer]) -> None:
        expect_callable(make_optimizer, "make_optimizer")
        model = frozen_backbone_net()
        optimizer = call_answer(make_optimizer, model, self.lr)
        expect(
            isinstance(optimizer, torch.optim.Optimizer),
            "Return the optimizer itself, e.g. `torch.optim.Adam(params, lr=lr)`, not "
            f"{safe_repr(optimizer)}.",
        )
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        names = {id(p): name for name, p in model.named_parameters()}
        frozen = sorted(
            names[i] for i in in_optimizer if i in names and not names[i].startswith("fc.")
        )
        expect(
            not frozen,
            f"The optimizer also holds frozen parameters ({', '.join(frozen)}). That trains "
            "correctly today (frozen parameters get no gradient, and Adam skips them), but "
            "this exercise asks for an optimizer that holds ONLY the params to learn: it then "
            "says what it trains, and it will not start training the backbone if someone "
            "unfreezes it later. Pass `[p for p in model.parameters() if p.requires_grad]`.",
        )
        missing = sorted(
            name
            for name, p in model.named_parameters()
            if p.requires_grad and id(p) not in in_optimizer
        )
        expect(
            not missing,
            f"The optimizer misses trainable parameters: {', '.join(missing)}. It must update "
            "all of them (here: the head's weight and bias).",
        )
        expect(
            in_optimizer <= set(names),
            "The optimizer holds parameters of another model: build it from the `model` argument.",
        )
        for group in optimizer.param_groups:
            expect(
                group["lr"] == self.lr,
                f"The learning rate should be the `lr` argument ({self.lr}), but it is "
                f"{group['lr']}: pass `lr=lr` to the optimizer.",
            )


# ----------------------------------------------------------------------------- q3


class ReplaceVggHead(Question):
    title = "A new head for a VGG-style classifier"
    hints = [
        "A VGG has no `fc`. Its head is the LAST layer of `model.classifier`, which is an "
        "`nn.Sequential`: `model.classifier[-1]`.",
        "Read the number of inputs from the old layer (`model.classifier[-1].in_features`) "
        "instead of writing 4096: not every VGG-style network is 4096 wide.",
        "`model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)`, "
        "then `return model`.",
    ]
    solution_code = """
        def replace_vgg_head(model, num_classes):
            in_features = model.classifier[-1].in_features
            model.classifier[-1] = nn.Linear(in_features, num_classes)
            return model
    """

    def _check(self, replace_vgg_head: Callable[[nn.Module, int], nn.Module]) -> None:
        expect_callable(replace_vgg_head, "replace_vgg_head")
        for num_classes in (3, 5):
            model = TinyVGG()
            first_layers = list(model.classifier)[:-1]
            hidden = model.classifier[-1].in_features
            result = call_answer(replace_vgg_head, model, num_classes)
            _expect_model(result, "replace_vgg_head")
            classifier = getattr(result, "classifier", None)
            expect(
                isinstance(classifier, nn.Sequential),
                "`model.classifier` is no longer an nn.Sequential: replace only its LAST layer "
                "(`model.classifier[-1] = ...`), not the whole block.",
            )
            old_head_kept = (
                classifier[-1].out_features == 10
                if isinstance(classifier[-1], nn.Linear)
                else False
            )
            expect(
                not (old_head_kept and isinstance(getattr(result, "fc", None), nn.Module)),
                "A VGG has no `fc`: setting `model.fc` adds a layer that `forward` never uses. "
                "Replace `model.classifier[-1]` instead.",
            )
            expect_equal(
                len(classifier), len(first_layers) + 1, "the number of layers in `model.classifier`"
            )
            expect(
                all(new is old for new, old in zip(classifier, first_layers, strict=False)),
                "The layers before the head changed: keep them and replace only "
                "`model.classifier[-1]`.",
            )
            head = classifier[-1]
            expect(
                isinstance(head, nn.Linear),
                f"The new head should be an nn.Linear, not {safe_repr(head)}.",
            )
            expect(
                head.in_features == hidden,
                f"The new head takes {head.in_features} inputs, but the layer before it gives "
                f"{hidden}: read `model.classifier[-1].in_features` instead of writing a number.",
            )
            expect(
                head.out_features == num_classes,
                f"Called with num_classes={num_classes}, the new head has {head.out_features} "
                "outputs: use the `num_classes` argument.",
            )
            expect_shape(
                result(torch.zeros(2, 3, 8, 8)), (2, num_classes), "the output for 2 images"
            )


# ----------------------------------------------------------------------------- q4

LAST_STAGE_AND_HEAD = ("layer4.", "fc.")


class FreezeAllButLastStage(Question):
    title = "Freeze everything except the last stage and the head"
    hints = [
        "The two steps of exercise 1: switch off `requires_grad` for EVERY parameter, then switch "
        "it back on, this time for the parameters of `model.layer4` AND of `model.fc`.",
        "`model.layer4.parameters()` yields every parameter of the last stage, its BatchNorm "
        "weights included; `model.fc.parameters()` the head's.",
        "`for p in model.parameters(): p.requires_grad = False`, then "
        "`for p in [*model.layer4.parameters(), *model.fc.parameters()]: p.requires_grad = True`, "
        "then `return model`.",
    ]
    solution_code = """
        def freeze_all_but_last_stage(model):
            for parameter in model.parameters():
                parameter.requires_grad = False
            for parameter in [*model.layer4.parameters(), *model.fc.parameters()]:
                parameter.requires_grad = True
            return model
    """

    def _check(self, freeze_all_but_last_stage: Callable[[nn.Module], nn.Module]) -> None:
        expect_callable(freeze_all_but_last_stage, "freeze_all_but_last_stage")
        cases = (
            (TinyNet(), "a network with nothing frozen"),
            (frozen_backbone_net(), "a network whose backbone is already frozen"),
        )
        for model, description in cases:
            head_weight = model.fc.weight.detach().clone()
            result = call_answer(freeze_all_but_last_stage, model)
            _expect_model(result, "freeze_all_but_last_stage")
            self._expect_last_stage_and_head(result, description)
            _expect_same_head(result, head_weight)

    @staticmethod
    def _expect_last_stage_and_head(model: nn.Module, description: str) -> None:
        names = [name for name, _ in model.named_parameters()]
        trainable = _trainable_names(model)
        wanted = [name for name in names if name.startswith(LAST_STAGE_AND_HEAD)]
        on = f"Starting from {description}"
        expect(
            trainable,
            f"{on}, nothing trains afterwards: after freezing everything, set "
            "`requires_grad = True` on the parameters of `model.layer4` and `model.fc`.",
        )
        expect(
            trainable != names,
            f"{on}, nothing is frozen afterwards: set `requires_grad = False` on every parameter first.",
        )
        too_many = [name for name in trainable if name not in wanted]
        expect(
            not too_many,
            f"{on}, these parts still train: {parts_of(too_many)}. Freeze every parameter, "
            "then unfreeze only `model.layer4` and `model.fc`.",
        )
        frozen_head = [name for name in wanted if name.startswith("fc.") and name not in trainable]
        expect(
            not frozen_head,
            f"{on}, the head ends up frozen ({', '.join(frozen_head)}): the new head must train too.",
        )
        frozen_stage = [name for name in wanted if name not in trainable]
        expect(
            len(frozen_stage) < len([name for name in wanted if name.startswith("layer4.")]),
            f"{on}, all of `layer4` ends up frozen: this exercise trains the last stage as well as the "
            "head. Unfreeze `model.layer4.parameters()` too.",
        )
        expect(
            not frozen_stage,
            f"{on}, part of `layer4` ends up frozen ({', '.join(frozen_stage)}): unfreeze all of its "
            "parameters, the BatchNorm weights included.",
        )


q1 = FreezeAllButHead()
q2 = OptimizerOverTrainable()
q3 = ReplaceVggHead()
q4 = FreezeAllButLastStage()
