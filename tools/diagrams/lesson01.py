"""Lesson 01's picture: class folders on disk -> ImageFolder's classes -> DataLoader batches.

The class order, the batch shape and the flower names are computed here (sorted folder
names, a collated batch at the full run's sizes, the registry's Oxford 102 names), never typed.
"""

from __future__ import annotations

import torch
from torch.utils.data import default_collate

from coursekit.config import Settings
from data_scripts.registry import FLOWERS102_CLASS_NAMES
from tools.diagrams import COLORS, arrow, box, canvas, label

#: Folder names as on disk, "1" ... "102", and the names in the label map for each.
FOLDERS = [str(number) for number in range(1, len(FLOWERS102_CLASS_NAMES) + 1)]
CAT_TO_NAME = dict(zip(FOLDERS, FLOWERS102_CLASS_NAMES, strict=True))
MONO = {"family": "monospace", "ha": "left", "va": "top"}


def _batch_shapes() -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """Batch size and the shapes of one collated batch at the full run's sizes."""
    settings = Settings.for_mode("full")
    side = settings.image_size
    items = [(torch.zeros(3, side, side), 0)] * settings.batch_size
    images, labels = default_collate(items)
    return settings.batch_size, tuple(images.shape), tuple(labels.shape)


def folder_to_batch():
    classes = sorted(FOLDERS)  # what ImageFolder does: strings, character by character
    fig, ax = canvas(5.6)
    top = 5.15
    heads = [(0.15, "1. on disk"), (3.15, "2. ImageFolder"), (6.25, "3. DataLoader")]
    for x, text in heads:
        label(ax, x, top + 0.2, text, ha="left", fontweight="bold")

    box(ax, 0.15, 2.35, 2.6, 2.75, color="data")
    tree = ["train/"] + [f" ├─ {name}/" for name in classes[:5]] + [" ├─ ...", f" └─ {classes[-1]}/"]
    tree[1] += "   *.jpg"
    label(ax, 0.3, 5.0, "\n".join(tree), size=10.5, linespacing=1.45, **MONO)
    label(ax, 1.45, 2.6, "the folder name is the label", size=10)

    box(ax, 3.15, 2.35, 2.75, 2.75, color="step")
    shown = classes[:6]
    rows = [f"'{name}'{' ' * (4 - len(name))}-> {classes.index(name)}" for name in shown]
    rows += ["  ...", f"'2'   -> {classes.index('2')}"]
    label(ax, 3.3, 5.0, "class_to_idx\n(sorted as strings)", size=10.5, **MONO)
    label(ax, 3.3, 4.45, "\n".join(rows), size=10.5, linespacing=1.3, **MONO)
    label(ax, 3.3, 2.75, "samples: (path, index)", size=10.5, **{**MONO, "va": "center"})
    arrow(ax, (2.8, 3.7), (3.1, 3.7))

    batch_size, images, labels = _batch_shapes()
    box(ax, 6.25, 2.35, 2.6, 2.75, color="learned")
    label(
        ax, 6.4, 5.0,
        f"batch_size={batch_size}\nshuffle=True (train)\n\none batch:\n images {list(images)}"
        f"\n        (B, C, H, W)\n labels {list(labels)}",
        size=10.5, linespacing=1.35, **MONO,
    )
    arrow(ax, (5.95, 3.7), (6.2, 3.7))

    # The way back from a model's output to a name, and the shortcut that gives wrong names.
    index = classes.index("100")
    folder = classes[index]
    label(ax, 0.15, 1.95, "From an output index to a name:", ha="left", fontweight="bold")
    box(ax, 0.15, 0.95, 1.6, 0.7, f"index {index}", color="learned")
    box(ax, 2.25, 0.95, 2.3, 0.7, f"classes[{index}] = '{folder}'", color="step")
    box(ax, 5.05, 0.95, 3.8, 0.7, f"cat_to_name['{folder}']\n= '{CAT_TO_NAME[folder]}'", color="data")
    arrow(ax, (1.8, 1.3), (2.2, 1.3))
    arrow(ax, (4.6, 1.3), (5.0, 1.3))
    wrong_key = str(index + 1)
    box(
        ax, 2.25, 0.1, 6.6, 0.6,
        f"wrong: cat_to_name[str({index} + 1)] = '{CAT_TO_NAME[wrong_key]}'",
        color=COLORS["warn"],
    )
    return fig


DIAGRAMS = {"01_folder_to_batch.png": folder_to_batch}
