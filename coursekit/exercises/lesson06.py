"""Exercises of lesson 06 (fine-tuning): discriminative parameter groups, starting the
fine-tuning phase (unfreeze, a new optimizer, a scheduler on it), and choosing a strategy.

    >>> from coursekit.exercises import lesson06 as ex  # doctest: +SKIP
    >>> ex.q1.check(make_param_groups)                  # doctest: +SKIP

Every checker builds its own tiny network, so it runs in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from coursekit.exercises.core import (
    Incorrect,
    MultipleChoice,
    Question,
    call_answer,
    expect,
    expect_callable,
    safe_repr,
)

# The same ResNet-shaped toy and helpers as lesson 05.
from coursekit.exercises.lesson05 import TinyNet, frozen_backbone_net, parts_of

#: The head learns this many times faster than the backbone, in every exercise of the lesson.
HEAD_LR_MULTIPLIER = 10


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=0.0)


def _expect_rates(backbone_lrs: Sequence[float], head_lr: float, base_lr: float) -> None:
    """The head at 10 * base_lr and every backbone group at base_lr, each mistake named."""
    fast = HEAD_LR_MULTIPLIER * base_lr
    if backbone_lrs and all(_close(lr, fast) for lr in backbone_lrs) and _close(head_lr, base_lr):
        raise Incorrect(
            f"The rates are swapped: the backbone got 10 * base_lr = {fast:g} and the head "
            f"base_lr = {base_lr:g}. The pretrained backbone needs the SMALL rate and the new "
            "head the large one."
        )
    expect(
        not _close(head_lr, base_lr / HEAD_LR_MULTIPLIER),
        f"The head's LR is {head_lr:g}, 10x SLOWER than the backbone: multiply `base_lr` by "
        "10 for the head instead of dividing.",
    )
    expect(
        not (backbone_lrs and all(_close(lr, head_lr) for lr in backbone_lrs)),
        f"Every parameter learns at {head_lr:g}: the backbone needs base_lr = {base_lr:g} and "
        f"the head 10 * base_lr = {fast:g}, so put them in two groups with their own `lr`.",
    )
    expect(
        _close(head_lr, fast),
        f"The head's LR should be 10 * base_lr = {fast:g}, but it is {head_lr:g}.",
    )
    for lr in backbone_lrs:
        expect(
            _close(lr, base_lr),
            f"The backbone's LR should be base_lr = {base_lr:g}, but it is {lr:g}.",
        )


# ----------------------------------------------------------------------------- q1


class DiscriminativeGroups(Question):
    title = "Parameter groups: the head learns 10x faster than the backbone"
    hints = [
        "Return a list of two dicts, each `{'params': [...], 'lr': ...}`: one for the backbone "
        "at `base_lr`, one for the head (`model.fc`) at `10 * base_lr`.",
        "Use `model.named_parameters()`: a name starting with `'fc.'` belongs to the head. Skip "
        "parameters whose `requires_grad` is False, and put every other one in exactly ONE group.",
        "`head = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith('fc.')]`, "
        "`backbone = [p for n, p in model.named_parameters() if p.requires_grad and not "
        "n.startswith('fc.')]`, then `return [{'params': backbone, 'lr': base_lr}, "
        "{'params': head, 'lr': 10 * base_lr}]`.",
    ]
    solution_code = """
        def make_param_groups(model, base_lr):
            head, backbone = [], []
            for name, parameter in model.named_parameters():
                if not parameter.requires_grad:
                    continue  # frozen: the optimizer must not hold it
                (head if name.startswith("fc.") else backbone).append(parameter)
            return [
                {"params": backbone, "lr": base_lr},
                {"params": head, "lr": 10 * base_lr},
            ]
    """

    base_lr = 1e-4

    def _check(self, make_param_groups: Callable[[nn.Module, float], list[dict[str, Any]]]) -> None:
        expect_callable(make_param_groups, "make_param_groups")
        model = TinyNet()
        # The stem stays frozen, as after unfreezing only the later stages.
        for parameter in [*model.conv1.parameters(), *model.bn1.parameters()]:
            parameter.requires_grad = False
        groups = call_answer(make_param_groups, model, self.base_lr)
        expect(
            not isinstance(groups, torch.optim.Optimizer),
            "Return the list of groups itself; the optimizer is built from it afterwards "
            "(`torch.optim.Adam(groups)`).",
        )
        expect(
            isinstance(groups, list | tuple)
            and groups
            and all(isinstance(g, dict) and "params" in g and "lr" in g for g in groups),
            "Return a list of dicts, each with a 'params' list and an 'lr', e.g. "
            f"`[{{'params': backbone, 'lr': base_lr}}, ...]`, not {safe_repr(groups)}.",
        )
        names = {id(p): name for name, p in model.named_parameters()}
        group_params = [list(g["params"]) for g in groups]
        seen: dict[int, int] = {}
        for index, params in enumerate(group_params):
            for p in params:
                expect(
                    id(p) not in seen,
                    f"`{names.get(id(p), 'a parameter')}` is in two groups: every parameter must "
                    "be in exactly one (torch refuses: 'some parameters appear in more than one "
                    "parameter group'). Keep the head's parameters out of the backbone group.",
                )
                seen[id(p)] = index
        expect(
            set(seen) <= set(names),
            "The groups hold parameters of another model: use the `model` argument.",
        )
        frozen = sorted(
            name for name, p in model.named_parameters() if id(p) in seen and not p.requires_grad
        )
        expect(
            not frozen,
            f"The groups hold frozen parameters ({', '.join(frozen)}): keep only those with "
            "`requires_grad`.",
        )
        missing = sorted(
            name for name, p in model.named_parameters() if p.requires_grad and id(p) not in seen
        )
        expect(not missing, f"These trainable parameters are in no group: {', '.join(missing)}.")
        head_ids = {id(p) for p in model.fc.parameters()}
        head_groups = {seen[i] for i in head_ids}
        expect(
            len(head_groups) == 1,
            "`fc.weight` and `fc.bias` are in different groups: put the whole head in one group.",
        )
        head_group = head_groups.pop()
        expect(
            {id(p) for p in group_params[head_group]} == head_ids,
            "The head's group also holds backbone parameters: it should hold only `model.fc`'s "
            "weight and bias.",
        )
        backbone_lrs = [
            group["lr"]
            for index, group in enumerate(groups)
            if index != head_group and group_params[index]
        ]
        _expect_rates(backbone_lrs, groups[head_group]["lr"], self.base_lr)
        torch.optim.SGD(groups)  # the groups must make a valid optimizer


# ----------------------------------------------------------------------------- q2


class StartFineTuning(Question):
    title = "Start the fine-tuning phase: unfreeze, a NEW optimizer, a scheduler on it"
    hints = [
        "Three steps, in this order: set `requires_grad = True` on every parameter; build a NEW "
        "optimizer from two parameter groups (exercise 1); create the StepLR FROM that new "
        "optimizer. `head_optimizer` belongs to phase 1: leave it alone.",
        "The groups: `[{'params': backbone, 'lr': base_lr}, {'params': head, 'lr': 10 * base_lr}]`"
        ", where `head` is `list(model.fc.parameters())` and `backbone` every other parameter "
        "(or use `ck.param_groups(model, base_lr)`).",
        "`optimizer = torch.optim.Adam(groups)`, then `scheduler = torch.optim.lr_scheduler."
        "StepLR(optimizer, step_size=step_size, gamma=gamma)` and `return optimizer, scheduler`.",
    ]
    solution_code = """
        def start_fine_tuning(model, head_optimizer, base_lr, step_size, gamma):
            for parameter in model.parameters():  # 1. unfreeze everything
                parameter.requires_grad = True
            head = list(model.fc.parameters())
            backbone = [p for name, p in model.named_parameters() if not name.startswith("fc.")]
            optimizer = torch.optim.Adam([  # 2. a NEW optimizer, the head 10x faster
                {"params": backbone, "lr": base_lr},
                {"params": head, "lr": 10 * base_lr},
            ])
            # 3. the scheduler FROM the new optimizer (head_optimizer is phase 1's)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
            return optimizer, scheduler
    """

    #: (base_lr, step_size, gamma) combinations the checker tries; phase 1's head LR.
    cases = ((1e-4, 2, 0.1), (3e-4, 3, 0.5))
    head_phase_lr = 1e-3

    def _check(self, start_fine_tuning: Callable[..., tuple[Any, Any]]) -> None:
        expect_callable(start_fine_tuning, "start_fine_tuning")
        for base_lr, step_size, gamma in self.cases:
            model = frozen_backbone_net()
            head_optimizer = torch.optim.Adam(model.fc.parameters(), lr=self.head_phase_lr)
            result = call_answer(
                start_fine_tuning, model, head_optimizer, base_lr, step_size, gamma
            )
            optimizer, scheduler = self._expect_pair(result)
            self._expect_new_optimizer(model, optimizer, head_optimizer)
            head_lr = _lr_of(optimizer, model.fc.weight)
            backbone = [p for name, p in model.named_parameters() if not name.startswith("fc.")]
            backbone_lrs = sorted({_lr_of(optimizer, p) for p in backbone})
            _expect_rates(backbone_lrs, head_lr, base_lr)
            self._expect_scheduler_on(scheduler, optimizer, head_optimizer)
            self._expect_decay(optimizer, scheduler, step_size, gamma)

    @staticmethod
    def _expect_pair(result: Any) -> tuple[Any, Any]:
        expect(
            isinstance(result, tuple | list) and len(result) == 2,
            "Return two things, the new optimizer and its scheduler: `return optimizer, "
            f"scheduler`, not {safe_repr(result)}.",
        )
        optimizer, scheduler = result
        expect(
            isinstance(optimizer, torch.optim.Optimizer),
            f"The first thing returned should be the new optimizer, not {safe_repr(optimizer)} "
            "(`return optimizer, scheduler`, in that order).",
        )
        expect(
            callable(getattr(scheduler, "step", None))
            and not isinstance(scheduler, torch.optim.Optimizer),
            f"The second thing returned should be the scheduler (a StepLR), not "
            f"{safe_repr(scheduler)}.",
        )
        return optimizer, scheduler

    @staticmethod
    def _expect_new_optimizer(
        model: nn.Module, optimizer: torch.optim.Optimizer, head_optimizer: torch.optim.Optimizer
    ) -> None:
        frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
        expect(
            not frozen,
            f"The backbone is still frozen ({parts_of(frozen)}): fine-tuning trains every "
            "parameter, so set `requires_grad = True` on all of them BEFORE building the optimizer.",
        )
        expect(
            optimizer is not head_optimizer,
            "You returned `head_optimizer`, phase 1's optimizer (its learning rate and Adam "
            "statistics belong to the head phase). Build a NEW optimizer for the unfrozen model.",
        )
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [name for name, p in model.named_parameters() if id(p) not in held]
        expect(
            not missing,
            f"The new optimizer does not hold {parts_of(missing)}, so they would never be updated. "
            "Unfreeze first, then build the optimizer from ALL the parameters.",
        )

    @staticmethod
    def _expect_scheduler_on(
        scheduler: Any, optimizer: torch.optim.Optimizer, head_optimizer: torch.optim.Optimizer
    ) -> None:
        driven = getattr(scheduler, "optimizer", None)
        expect(
            driven is not head_optimizer,
            "Your scheduler drives `head_optimizer`, phase 1's optimizer: its learning-rate "
            "changes never reach the new optimizer that trains, so the schedule silently does "
            "nothing (the bug of section 4). Create it from the NEW optimizer.",
        )
        expect(
            driven is optimizer,
            "Your scheduler drives another optimizer than the one you return: create it from "
            "the new optimizer, `StepLR(optimizer, ...)`.",
        )

    @staticmethod
    def _expect_decay(
        optimizer: torch.optim.Optimizer, scheduler: Any, step_size: int, gamma: float
    ) -> None:
        start = [group["lr"] for group in optimizer.param_groups]
        called = f"With step_size={step_size}, gamma={gamma}"
        for epoch in range(1, step_size + 1):
            optimizer.step()  # no gradients: nothing changes, but the order is the real one
            scheduler.step()
            lrs = [group["lr"] for group in optimizer.param_groups]
            if epoch < step_size:
                expect(
                    all(_close(lr, first) for lr, first in zip(lrs, start, strict=True)),
                    f"{called}, the learning rates changed after {epoch} epoch(s); they should "
                    f"stay until epoch {step_size}. Pass `step_size` to the StepLR.",
                )
        for lr, first in zip(lrs, start, strict=True):
            expect(
                _close(lr, first * gamma),
                f"{called}, a group that starts at {first:g} should be at {first:g} x {gamma:g} = "
                f"{first * gamma:g} after {step_size} epochs, but it is {lr:g}. Pass both "
                "`step_size` and `gamma` to the StepLR.",
            )


def _lr_of(optimizer: torch.optim.Optimizer, parameter: nn.Parameter) -> float:
    return next(g["lr"] for g in optimizer.param_groups if any(p is parameter for p in g["params"]))


# ----------------------------------------------------------------------------- q3

FEATURE_EXTRACTION = "feature extraction"
FULL_FINE_TUNING = "full fine-tuning"
FREEZE_THEN_UNFREEZE = "freeze then unfreeze"
FROM_SCRATCH = "train from scratch"

q3 = MultipleChoice(
    title="Pick a strategy",
    options=(FEATURE_EXTRACTION, FULL_FINE_TUNING, FREEZE_THEN_UNFREEZE, FROM_SCRATCH),
    expected=FEATURE_EXTRACTION,
    wrong_answers={
        FULL_FINE_TUNING: "Updating millions of parameters from the first step, with a random "
        "head sending large errors back, risks damaging the pretrained features, and with 150 "
        "photos per class it overfits easily. It also costs a full backward pass per image on a "
        "CPU, far from 'minutes'.",
        FREEZE_THEN_UNFREEZE: "A good next step when you have more time: it usually adds a little "
        "accuracy. But the unfrozen phase trains the whole network on a CPU, and the scenario "
        "asks for a result in minutes. Start with the strategy that trains only the head.",
        FROM_SCRATCH: "150 photos per class are far too few to learn millions of parameters: "
        "a network trained from scratch would memorize them. Reuse pretrained features.",
    },
    hints=[
        "Two facts decide: how much data there is (and how much it looks like ImageNet), and "
        "how much compute and time you have.",
        "Everyday objects look like ImageNet photos, so pretrained features fit well. Which "
        "strategy trains the fewest parameters and can even use cached features?",
    ],
    solution_code=f"""
        answer = {FEATURE_EXTRACTION!r}
        # Little data that looks like ImageNet, a CPU and minutes: train only a new head on the
        # frozen backbone (with cached features, every epoch takes a fraction of a second).
    """,
)

q1 = DiscriminativeGroups()
q2 = StartFineTuning()
