"""Lesson 06's diagram: freeze, then unfreeze with one learning rate per group.

Parameter counts per stage come from a torchvision ResNet-18 with a two-class head built on
the meta device; the learning rates are the course's full-run settings.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
import torchvision

from coursekit.config import Settings
from tools.diagrams import arrow, box, canvas, label

STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4")


def _stage_sizes() -> tuple[dict[str, int], int]:
    """Parameters per backbone stage (the stem's BatchNorm counted with conv1), and the head's."""
    with torch.device("meta"):
        model = torchvision.models.resnet18(weights=None, num_classes=2)
    sizes = dict.fromkeys(STAGES, 0)
    head = 0
    for name, parameter in model.named_parameters():
        top = name.split(".")[0]
        if top == "fc":
            head += parameter.numel()
        else:
            sizes["conv1" if top == "bn1" else top] += parameter.numel()
    return sizes, head


def _network(ax: plt.Axes, y: float, frozen: bool, lrs: tuple[str, str]) -> None:
    sizes, head = _stage_sizes()
    x = 0.2
    for stage, count in sizes.items():
        box(ax, x, y, 1.25, 0.75, f"{stage}\n{count / 1e6:.2f} M", "frozen" if frozen else "layer",
            size=10)
        x += 1.4
    box(ax, x + 0.15, y, 1.5, 0.75, f"head (fc)\n{head:,}", "learned", size=10)
    backbone_lr, head_lr = lrs
    label(ax, 3.6, y - 0.25, backbone_lr, size=10)
    label(ax, x + 0.9, y - 0.25, head_lr, size=10)


def freeze_then_unfreeze() -> plt.Figure:
    settings = Settings.for_mode("full")
    head_phase_lr = f"{settings.lr:g}"
    backbone_lr = settings.fine_tune_lr
    head_lr = backbone_lr * settings.head_lr_multiplier
    fig, ax = canvas(5.0)
    label(ax, 0.2, 4.75, "PHASE 1 (lesson 05): backbone frozen, head trained on cached features",
          ha="left", fontweight="bold")
    _network(ax, 3.6, frozen=True,
             lrs=("frozen: no gradients, pretrained BatchNorm statistics",
                  f"Adam lr {head_phase_lr}"))
    arrow(ax, (4.5, 3.2), (4.5, 2.6))
    label(ax, 4.65, 2.9, "ck.unfreeze(model): everything trainable", size=10, ha="left")
    label(ax, 0.2, 2.3, "PHASE 2: a NEW optimizer with two groups, and a NEW scheduler on it",
          ha="left", fontweight="bold")
    _network(ax, 1.2, frozen=False,
             lrs=(f"group 'backbone': up to {backbone_lr:g} (BatchNorm statistics kept)",
                  f"'head': up to {head_lr:g}"))
    label(ax, 0.2, 0.35, "NEW scheduler (OneCycleLR, built from the new optimizer):\n"
          "warm-up, then decay, stepped every batch", size=10, ha="left")
    _one_cycle_inset(fig, settings)
    return fig


def _one_cycle_inset(fig: plt.Figure, settings: Settings, steps: int = 100) -> None:
    """The head group's learning rate over phase 2, as torch's OneCycleLR computes it."""
    head = torch.nn.Parameter(torch.zeros(1))
    top = settings.fine_tune_lr * settings.head_lr_multiplier
    optimizer = torch.optim.Adam([head], lr=top)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=top, total_steps=steps,
                                                   pct_start=0.3)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    inset = fig.add_axes((0.62, 0.075, 0.36, 0.085))
    inset.plot(rates, color="#2a7f3f")
    inset.set_xticks([])
    inset.set_yticks([])
    inset.set_xlabel("batches of phase 2", fontsize=10, labelpad=1)
    inset.set_ylabel("LR", fontsize=10)


DIAGRAMS = {"06_freeze_then_unfreeze.png": freeze_then_unfreeze}
