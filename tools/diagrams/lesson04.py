"""Lesson 04's diagram: one epoch of the training loop, as the lesson writes it out."""

from __future__ import annotations

import matplotlib.pyplot as plt

from tools.diagrams import arrow, box, canvas, label

TRAIN_STEPS = ("forward", "loss", "backward()", "step()")
VALID_STEPS = ("forward", "loss", "count right")
#: Right edge of the two phase boxes; the "next epoch" arrow runs to the right of it.
PHASE_RIGHT = 8.0


def _phase(ax: plt.Axes, y: float, title: str, mode: str, steps: tuple[str, ...], color: str):
    """A phase box: its name and mode on the left, its per-batch steps looping on the right."""
    box(ax, 0.2, y, PHASE_RIGHT - 0.2, 1.75, "", color)
    label(ax, 1.3, y + 1.2, title, size=12, fontweight="bold")
    label(ax, 1.3, y + 0.6, mode, size=10, family="monospace")
    x, w, gap = 2.55, 1.15, 0.25
    label(ax, x, y + 1.5, "for each batch:", size=10, ha="left")
    for i, step in enumerate(steps):
        left = x + i * (w + gap)
        box(ax, left, y + 0.75, w, 0.55, step, "layer", size=10)
        if i:
            arrow(ax, (left - gap, y + 1.02), (left, y + 1.02))
    last_middle = x + (len(steps) - 1) * (w + gap) + w / 2
    arrow(ax, (last_middle, y + 0.75), (x + w / 2, y + 0.75), curve=-0.18)
    label(ax, (x + last_middle) / 2, y + 0.22, "next batch", size=10)


def draw_one_epoch() -> plt.Figure:
    """Train phase, valid phase, best checkpoint, scheduler step, and back to the next epoch."""
    fig, ax = canvas(6.0)
    train_y, valid_y = 4.0, 1.8
    _phase(ax, train_y, "train phase", "model.train()", TRAIN_STEPS, "learned")
    _phase(ax, valid_y, "valid phase", "model.eval()\ntorch.no_grad()", VALID_STEPS, "data")
    box(
        ax,
        0.2,
        0.2,
        4.2,
        1.0,
        "best valid accuracy so far?\nthen deepcopy weights, save checkpoint",
        "step",
        size=10,
    )
    box(ax, 4.9, 0.2, 2.6, 1.0, "scheduler.step()\n(once per epoch)", "step", size=10)
    arrow(ax, (1.3, train_y), (1.3, valid_y + 1.75))
    arrow(ax, (1.3, valid_y), (1.3, 1.2))
    arrow(ax, (4.4, 0.7), (4.9, 0.7))
    # Back to the train phase: right, up, then left into the train box.
    arrow(ax, (7.5, 0.7), (8.5, 0.7), style="-")
    arrow(ax, (8.5, 0.7), (8.5, train_y + 0.9), style="-")
    arrow(ax, (8.5, train_y + 0.9), (PHASE_RIGHT, train_y + 0.9))
    label(ax, 8.72, 2.6, "next epoch", size=10, rotation=90)
    return fig


DIAGRAMS = {"04_one_epoch.png": draw_one_epoch}
