"""Lesson 10's picture: data-parallel training, N processes with one shard each.

The gradient volume is computed from torchvision's ResNet-18: one float32 gradient per
parameter, averaged over the processes after every backward pass.
"""

from __future__ import annotations

import torchvision

from tools.diagrams import arrow, box, canvas

PROCESSES = 2
BYTES_PER_GRADIENT = 4  # float32


def resnet18_gradient_megabytes() -> float:
    """The gradients of one ResNet-18 step, in MB (10^6 bytes)."""
    model = torchvision.models.resnet18(weights=None)
    parameters = sum(p.numel() for p in model.parameters())
    return parameters * BYTES_PER_GRADIENT / 1e6


def data_parallel():
    fig, ax = canvas(6.0)
    gradients_mb = resnet18_gradient_megabytes()
    top = 5.25
    box(ax, 0.3, top, 8.4, 0.6, "one shuffle of the training set per epoch (seed + epoch)", "data")
    column_x = (0.6, 4.9)
    width = 3.5
    for rank, x in enumerate(column_x):
        centre = x + width / 2
        arrow(ax, (centre, top), (centre, top - 0.4))
        shard = ", ".join(str(rank + PROCESSES * i) for i in range(3))
        box(ax, x, top - 1.0, width, 0.6, f"rank {rank}: images {shard}, ...", "data")
        arrow(ax, (centre, top - 1.0), (centre, top - 1.4))
        box(ax, x, top - 2.0, width, 0.6, f"model replica {rank}: forward, backward", "layer")
        arrow(ax, (centre, top - 2.0), (centre, top - 2.55))
    box(
        ax, 0.3, top - 3.15, 8.4, 0.6,
        f"all-reduce: average the gradients (ResNet-18: {gradients_mb:.0f} MB per step)",
        "learned",
    )
    for x in column_x:
        centre = x + width / 2
        arrow(ax, (centre, top - 3.15), (centre, top - 3.55))
        box(ax, x, top - 4.15, width, 0.6, "the same optimizer step", "step")
    centre = column_x[0] + width / 2
    arrow(ax, (centre, top - 4.15), (centre, top - 4.55))
    box(ax, column_x[0], top - 5.15, width, 0.6, "rank 0 only: checkpoint, prints", "warn")
    return fig


DIAGRAMS = {"10_data_parallel.png": data_parallel}
