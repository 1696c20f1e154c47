"""Lesson 03's diagrams: feature maps shrinking through ResNet-18, a VGG config list turned
into layers, and the BasicBlock next to the Bottleneck. Every channel count and size is read
from coursekit's models, built on the meta device (shapes only, no memory)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import nn

import coursekit as ck
from tools.diagrams import COLORS, arrow, box, canvas, label

IMAGE_SIZE = 224  # the size these networks were designed for


def draw_resnet18_feature_maps() -> plt.Figure:
    """One square per stage of ResNet-18, its side shrinking with the map: 224 -> ... -> 7."""
    with torch.device("meta"):
        stages = ck.feature_map_sizes(ck.resnet18(), IMAGE_SIZE)
    columns = [("input", (1, 3, IMAGE_SIZE, IMAGE_SIZE)), *stages[:-1]]  # avgpool: text only
    fig, ax = canvas(3.6)
    step = 8.6 / len(columns)
    base = 2.1
    for i, (name, (_, channels, height, width)) in enumerate(columns):
        side = 0.2 + 0.8 * (height / IMAGE_SIZE) ** 0.5  # sqrt keeps 7x7 visible
        x = 0.2 + i * step + (step - side) / 2
        box(ax, x, base - side / 2, side, side, "", "data" if i == 0 else "layer")
        label(ax, x + side / 2, 3.35, name, size=11, fontweight="bold")
        label(ax, x + side / 2, 1.05, f"{height} x {width}", size=11)
        label(ax, x + side / 2, 0.7, f"{channels} ch", size=10)
        if i:
            arrow(ax, (0.2 + i * step - 0.18, base), (0.2 + i * step + 0.12, base))
    _, (_, channels, _, _) = stages[-1]
    label(
        ax, 4.5, 0.25, f"then avgpool: {channels} numbers per image, read by the fc head", size=10
    )
    return fig


def draw_vgg_config() -> plt.Figure:
    """VGG-16's config list, cut at each "M": each group becomes convs + a max-pool."""
    config = ck.VGG_CFGS["D"]
    with torch.device("meta"):
        features = ck.make_vgg("D").features
        x = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
        pooled = []
        for layer in features:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                pooled.append(tuple(x.shape))
    groups, current = [], []
    for item in config:
        current.append(item)
        if item == "M":
            groups.append(current)
            current = []
    fig, ax = canvas(5.2)
    label(
        ax,
        4.5,
        4.95,
        'vgg16_config = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", ...]',
        size=10,
        family="monospace",
    )
    width, gap = 1.55, 0.18
    for g, (group, shape) in enumerate(zip(groups, pooled, strict=True)):
        left = 0.2 + g * (width + gap)
        text = ", ".join(f'"{i}"' if i == "M" else str(i) for i in group)
        label(ax, left + width / 2, 4.45, f"[{text}]", size=10, family="monospace")
        y = 3.9
        for item in group:
            is_pool = item == "M"
            name = "max-pool 2x2" if is_pool else f"conv 3x3, {item}"
            box(ax, left, y - 0.4, width, 0.4, name, "step" if is_pool else "layer", size=10)
            y -= 0.52
        _, channels, height, width_px = shape
        label(
            ax,
            left + width / 2,
            1.25,
            f"-> {channels} x {height} x {width_px}",
            size=10,
            fontweight="bold",
        )
    label(
        ax,
        4.5,
        0.75,
        "every conv keeps the size (+ ReLU after it), every max-pool halves it:",
        size=10,
    )
    sizes = " -> ".join(str(s[2]) for s in [(0, 0, IMAGE_SIZE)] + pooled)
    label(ax, 4.5, 0.35, sizes, size=11, fontweight="bold")
    return fig


def _stack(ax: plt.Axes, x: float, top: float, rows: list[tuple[str, str]], w: float = 2.6):
    """Boxes from top to bottom joined by arrows; returns (x centre, y of the last box's bottom)."""
    h, gap = 0.42, 0.2
    y = top
    for i, (text, color) in enumerate(rows):
        box(ax, x, y - h, w, h, text, color, size=10)
        if i:
            arrow(ax, (x + w / 2, y + gap), (x + w / 2, y))
        y -= h + gap
    return x + w / 2, y + gap


def _conv_text(conv: nn.Conv2d) -> str:
    k = conv.kernel_size[0]
    stride = f", stride {conv.stride[0]}" if conv.stride[0] != 1 else ""
    return f"conv {k}x{k}, {conv.in_channels}->{conv.out_channels}{stride}"


def _block(ax: plt.Axes, x: float, title: str, block: nn.Module, convs: list[nn.Conv2d]):
    """One residual block: its convolutions down the middle, the shortcut down the right."""
    w = 2.4
    centre = x + w / 2
    label(ax, centre + 0.5, 6.95, title, size=12, fontweight="bold")
    label(ax, centre, 6.5, "x (input)", size=11)
    rows: list[tuple[str, str]] = []
    for i, conv in enumerate(convs):
        rows.append((_conv_text(conv), "layer"))
        rows.append(("BN" if i == len(convs) - 1 else "BN, ReLU", "step"))
    arrow(ax, (centre, 6.35), (centre, 6.1))
    _, bottom = _stack(ax, x, 6.1, rows, w)
    add_y = bottom - 0.55
    ax.add_patch(plt.Circle((centre, add_y), 0.2, facecolor="white", edgecolor=COLORS["edge"]))
    label(ax, centre, add_y, "+", size=13)
    arrow(ax, (centre, bottom), (centre, add_y + 0.2))
    box(ax, x, add_y - 0.85, w, 0.4, "ReLU -> out", "step", size=10)
    arrow(ax, (centre, add_y - 0.2), (centre, add_y - 0.45))
    # The shortcut: from the input, down the right side, into the (+).
    side = x + w + 0.3
    arrow(ax, (centre + 0.45, 6.5), (side, 6.5), style="-")
    arrow(ax, (side, 6.5), (side, add_y), style="-")
    arrow(ax, (side, add_y), (centre + 0.2, add_y))
    down = block.downsample[0]
    k = down.kernel_size[0]
    label(ax, side + 0.1, 5.6, "shortcut:\nx itself,", size=10, ha="left", va="top")
    label(
        ax,
        side + 0.1,
        4.9,
        f"or if the shape\nchanges:\n{k}x{k} conv,\n{down.in_channels}->{down.out_channels},"
        f"\nstride {down.stride[0]}, BN",
        size=10,
        ha="left",
        va="top",
    )


def draw_resnet_blocks() -> plt.Figure:
    """The first block of layer2 in ResNet-18 (BasicBlock) and ResNet-50 (Bottleneck)."""
    with torch.device("meta"):
        basic = ck.resnet18().layer2[0]
        bottleneck = ck.resnet50().layer2[0]
    fig, ax = canvas(7.2)
    _block(ax, 0.1, "BasicBlock (ResNet-18)", basic, [basic.conv1, basic.conv2])
    _block(
        ax,
        4.6,
        "Bottleneck (ResNet-50)",
        bottleneck,
        [bottleneck.conv1, bottleneck.conv2, bottleneck.conv3],
    )
    label(ax, 2.0, 1.2, "both drawn as the first block\nof layer2, which halves the map", size=10)
    return fig


DIAGRAMS = {
    "03_resnet18_feature_maps.png": draw_resnet18_feature_maps,
    "03_vgg_config.png": draw_vgg_config,
    "03_resnet_blocks.png": draw_resnet_blocks,
}
