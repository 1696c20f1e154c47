"""Lesson 05's diagrams: a frozen backbone with a new head, and training on cached features.

The sizes (features handed to the head, parameters frozen and learned) are read from a
torchvision ResNet-18 built on the meta device, the model the lesson takes apart.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
import torchvision
from torch import nn

from tools.diagrams import COLORS, arrow, box, canvas, label

NUM_CLASSES = 2  # ants and bees


def _resnet18_sizes() -> tuple[int, int, int]:
    """(features the head receives, frozen backbone parameters, parameters of the new head)."""
    with torch.device("meta"):
        model = torchvision.models.resnet18(weights=None)
    features = model.fc.in_features
    head = nn.Linear(features, NUM_CLASSES)
    backbone = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("fc."))
    return features, backbone, sum(p.numel() for p in head.parameters())


def frozen_backbone_and_head() -> plt.Figure:
    features, backbone, head = _resnet18_sizes()
    fig, ax = canvas(3.3)
    box(ax, 0.15, 1.1, 1.3, 1.0, "photo\n3 x 224 x 224", "data")
    box(ax, 1.95, 0.8, 3.6, 1.6,
        f"pretrained backbone\nconv stem, layer1 ... layer4, avg pool\n{backbone:,} parameters\n"
        "FROZEN (requires_grad=False)", "frozen")
    box(ax, 6.45, 1.05, 1.45, 1.1, f"new head\nLinear({features}, {NUM_CLASSES})\n"
        f"{head:,} parameters\nLEARNED", "learned")
    box(ax, 8.2, 1.25, 0.7, 0.7, "ant\nbee", "data", size=10)
    arrow(ax, (1.45, 1.6), (1.95, 1.6))
    arrow(ax, (5.55, 1.6), (6.45, 1.6), f"{features}\nfeatures", size=10)
    arrow(ax, (7.9, 1.6), (8.2, 1.6))
    arrow(ax, (7.6, 2.25), (6.7, 2.25), curve=0.6, style="-|>")
    label(ax, 7.15, 2.95, "gradients update the head only", size=10)
    label(ax, 4.5, 0.35,
          "ResNet-18 with a two-class head: the optimizer gets the head's "
          f"{head:,} numbers, nothing else", size=10, color=COLORS["edge"])
    return fig


def cached_features() -> plt.Figure:
    features, _, _ = _resnet18_sizes()
    fig, ax = canvas(3.6)
    label(ax, 0.15, 3.3, "ONCE (one pass, no augmentation)", ha="left", fontweight="bold")
    box(ax, 0.15, 2.15, 1.9, 0.8, "every train and\nvalid image (eval_tf)", "data", size=10)
    box(ax, 2.6, 2.15, 2.2, 0.8, "frozen backbone\neval mode, no grad", "frozen", size=10)
    box(ax, 5.35, 2.15, 3.5, 0.8, f"cache: one row of {features} numbers\nper image + its label",
        "data", size=10)
    arrow(ax, (2.05, 2.55), (2.6, 2.55))
    arrow(ax, (4.8, 2.55), (5.35, 2.55))
    label(ax, 0.15, 1.55, "EVERY EPOCH (fast: no backbone)", ha="left", fontweight="bold")
    box(ax, 0.15, 0.35, 2.4, 0.8, f"cached features\nbatches of N x {features}", "data", size=10)
    box(ax, 3.1, 0.35, 2.0, 0.8, f"head\nLinear({features}, {NUM_CLASSES})", "learned", size=10)
    box(ax, 5.65, 0.35, 1.6, 0.8, "loss,\nbackward", "step", size=10)
    box(ax, 7.8, 0.35, 1.05, 0.8, "Adam\nstep", "step", size=10)
    arrow(ax, (2.55, 0.75), (3.1, 0.75))
    arrow(ax, (5.1, 0.75), (5.65, 0.75))
    arrow(ax, (7.25, 0.75), (7.8, 0.75))
    arrow(ax, (7.1, 2.15), (1.35, 1.15), curve=-0.15)
    return fig


DIAGRAMS = {
    "05_frozen_backbone_head.png": frozen_backbone_and_head,
    "05_cached_features.png": cached_features,
}
