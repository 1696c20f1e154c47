"""Exercises of lesson 05 (transfer learning): freeze all but the head, an optimizer over the
trainable parameters, a new VGG head, and counting trainable parameters.

    >>> from coursekit.exercises import lesson05 as ex  # doctest: +SKIP
    >>> ex.q1.check(freeze_all_but_head)                # doctest: +SKIP

Every checker builds its own tiny network, so it runs in milliseconds and never downloads.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
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
    """A ResNet-shaped toy: a conv stem with BatchNorm, one stage, global pool, ``fc`` head."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(nn.Conv2d(4, 8, kernel_size=3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


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


def _frozen_backbone_net() -> TinyNet:
    """A TinyNet whose backbone is frozen and whose head trains (lesson 05's situation)."""
    model = TinyNet()
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith("fc.")
    return model


def _expect_model(result: Any, name: str) -> None:
    expect(result is not None, f"`{name}` returned None: end it with `return model`.")
    expect(
        isinstance(result, nn.Module),
        f"`{name}` should return the model, but it returned {safe_repr(result)}.",
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
        expect(
            isinstance(result.fc, nn.Linear)
            and result.fc.weight.shape == head_weight.shape
            and torch.equal(result.fc.weight.detach(), head_weight),
            "The head changed: this exercise keeps the existing `model.fc` and only changes "
            "`requires_grad` (replacing the head is `ck.replace_head`'s job).",
        )
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
        model = _frozen_backbone_net()
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
            f"The optimizer also holds frozen parameters ({', '.join(frozen)}): pass only those "
            "with `requires_grad`, e.g. `[p for p in model.parameters() if p.requires_grad]`.",
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


class CountTrainable(Question):
    title = "Count the trainable parameters"
    hints = [
        "A parameter is a tensor; it holds `p.numel()` numbers. Count numbers, not tensors.",
        "Add up `p.numel()` for the parameters `p` of `model.parameters()` whose "
        "`p.requires_grad` is True.",
        "`return sum(p.numel() for p in model.parameters() if p.requires_grad)`",
    ]
    solution_code = """
        def count_trainable(model):
            return sum(p.numel() for p in model.parameters() if p.requires_grad)
    """

    def _check(self, count_trainable: Callable[[nn.Module], int]) -> None:
        expect_callable(count_trainable, "count_trainable")
        frozen_backbone = _frozen_backbone_net()
        everything = TinyNet()
        cases = (
            (frozen_backbone, "a network with a frozen backbone"),
            (everything, "a network with nothing frozen"),
        )
        for model, description in cases:
            expected = sum(p.numel() for p in model.parameters() if p.requires_grad)
            answer = call_answer(count_trainable, model)
            total = sum(p.numel() for p in model.parameters())
            tensors = len([p for p in model.parameters() if p.requires_grad])
            expect(
                not (answer == total and total != expected),
                f"For {description} you counted every parameter ({total}); count only those "
                "with `requires_grad`.",
            )
            expect(
                not (answer == tensors and tensors != expected),
                f"For {description} you counted {tensors} tensors; count the numbers inside "
                "them with `p.numel()`.",
            )
            expect(
                isinstance(answer, numbers.Integral) and not isinstance(answer, bool),
                f"Return an int, not {safe_repr(answer)} (`sum` of `p.numel()` is an int).",
            )
            expect_equal(answer, expected, f"the trainable count for {description}")


q1 = FreezeAllButHead()
q2 = OptimizerOverTrainable()
q3 = ReplaceVggHead()
q4 = CountTrainable()
