"""Exercises of lesson 06 (fine-tuning): discriminative parameter groups, a scheduler that
follows its optimizer, and choosing a strategy.

    >>> from coursekit.exercises import lesson06 as ex  # doctest: +SKIP
    >>> ex.q1.check(make_param_groups)                  # doctest: +SKIP

Every checker builds its own tiny network or a single parameter, so it runs in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from coursekit.exercises.core import (
    MultipleChoice,
    Question,
    call_answer,
    expect,
    expect_callable,
    safe_repr,
)
from coursekit.exercises.lesson05 import TinyNet  # the same ResNet-shaped toy


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=0.0)


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
        head_lr, base_lr = groups[head_group]["lr"], self.base_lr
        expect(
            not _close(head_lr, base_lr / 10),
            f"The head's LR is {head_lr}, 10x SLOWER than the backbone: multiply `base_lr` by "
            "10 for the head instead of dividing.",
        )
        expect(
            _close(head_lr, 10 * base_lr),
            f"The head's LR should be 10 * base_lr = {10 * base_lr:g}, but it is {head_lr}.",
        )
        for index, group in enumerate(groups):
            if index != head_group and group_params[index]:
                expect(
                    _close(group["lr"], base_lr),
                    f"The backbone's LR should be base_lr = {base_lr:g}, but it is {group['lr']}.",
                )
        torch.optim.SGD(groups)  # the groups must make a valid optimizer


# ----------------------------------------------------------------------------- q2


class SchedulerFollowsOptimizer(Question):
    title = "A StepLR for the optimizer you are given"
    hints = [
        "Build the scheduler FROM the `optimizer` argument: a scheduler changes the LR of the "
        "one optimizer it was created with.",
        "`torch.optim.lr_scheduler.StepLR(optimizer, step_size=..., gamma=...)`: pass the "
        "`step_size` and `gamma` arguments, don't write numbers.",
        "`return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)`",
    ]
    solution_code = """
        def make_scheduler(optimizer, step_size, gamma):
            return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    """

    #: (step_size, gamma) pairs the checker tries.
    cases = ((3, 0.5), (2, 0.1))
    start_lr = 0.1

    def _check(self, make_scheduler: Callable[[torch.optim.Optimizer, int, float], Any]) -> None:
        expect_callable(make_scheduler, "make_scheduler")
        for step_size, gamma in self.cases:
            optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=self.start_lr)
            scheduler = call_answer(make_scheduler, optimizer, step_size, gamma)
            expect(
                callable(getattr(scheduler, "step", None))
                and not isinstance(scheduler, torch.optim.Optimizer),
                f"Return the scheduler (e.g. a StepLR), not {safe_repr(scheduler)}.",
            )
            expect(
                getattr(scheduler, "optimizer", None) is optimizer,
                "Your scheduler drives a different optimizer than the one passed in, so its LR "
                "changes would never reach training. Create it from the `optimizer` argument.",
            )
            called = f"With step_size={step_size}, gamma={gamma}"
            for epoch in range(1, step_size + 1):
                optimizer.step()  # no gradients: nothing changes, but the order is the real one
                scheduler.step()
                lr = optimizer.param_groups[0]["lr"]
                if epoch < step_size:
                    expect(
                        _close(lr, self.start_lr),
                        f"{called}, the LR changed to {lr:g} after {epoch} step(s); it should "
                        f"stay {self.start_lr:g} until step {step_size}. Pass `step_size`.",
                    )
            expected = self.start_lr * gamma
            expect(
                _close(lr, expected),
                f"{called}, the LR after {step_size} steps should be {self.start_lr:g} x "
                f"{gamma:g} = {expected:g}, but it is {lr:g}. Pass both `step_size` and `gamma`.",
            )


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
q2 = SchedulerFollowsOptimizer()
