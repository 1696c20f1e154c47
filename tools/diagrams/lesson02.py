"""Lesson 02's picture: the training pipeline next to the evaluation pipeline, step by step.

Each box is read from the transforms ``ck.train_transforms`` and ``ck.eval_transforms`` build
at the full run's sizes, and the output shape from running the evaluation pipeline on an image.
"""

from __future__ import annotations

from PIL import Image
from torchvision import transforms as T

from coursekit.config import Settings
from coursekit.data import eval_transforms, train_transforms
from tools.diagrams import COLORS, arrow, box, canvas, label

#: Transforms that draw a random number each time they run.
RANDOM = (T.RandomRotation, T.RandomHorizontalFlip, T.RandomVerticalFlip, T.ColorJitter,
          T.RandomGrayscale, T.RandomResizedCrop)


def _columns(pipeline: T.Compose) -> list:
    """The pipeline's steps, with the horizontal and vertical flips joined into one column."""
    columns: list = []
    for step in pipeline.transforms:
        flip = isinstance(step, T.RandomHorizontalFlip | T.RandomVerticalFlip)
        if flip and columns and isinstance(columns[-1], tuple):
            columns[-1] = (*columns[-1], step)
        else:
            columns.append((step,) if flip else step)
    return columns


def _text(step) -> str:
    """A two- or three-line label for one transform, with its numbers read from it."""
    if isinstance(step, T.Resize):
        return f"Resize\nshorter\nside {step.size}"
    if isinstance(step, T.RandomRotation):
        return f"Random\nRotation\n±{step.degrees[1]:g}°"
    if isinstance(step, T.CenterCrop):
        return f"Center\nCrop\n{step.size[0]}x{step.size[1]}"
    if isinstance(step, tuple):  # the two flips share a box
        return "flips\n" + " & ".join(
            "H" if isinstance(flip, T.RandomHorizontalFlip) else "V" for flip in step
        ) + f"\np={step[0].p:g} each"
    if isinstance(step, T.ColorJitter):
        return f"Color\nJitter\nlight ±{step.brightness[1] - 1:.0%}"
    if isinstance(step, T.RandomGrayscale):
        return f"Gray-\nscale\np={step.p:g}"
    if isinstance(step, T.ToTensor):
        return "ToTensor\n0..255\n-> 0..1"
    if isinstance(step, T.Normalize):
        return "Normalize\n(x - mean)\n/ std"
    return type(step).__name__


def train_vs_eval():
    settings = Settings.for_mode("full")
    size, resize = settings.image_size, settings.resize_size
    train_steps = _columns(train_transforms(size, resize))
    eval_pipeline = eval_transforms(size, resize)
    eval_types = [type(step) for step in eval_pipeline.transforms]
    output = tuple(eval_pipeline(Image.new("RGB", (4 * size, 3 * size))).shape)

    fig, ax = canvas(3.9)
    x0, gap, h = 1.25, 0.12, 1.05
    w = (9.0 - 0.1 - x0 - gap * (len(train_steps) - 1)) / len(train_steps)
    rows = {"training": 2.45, "evaluation\n& inference": 0.95}
    for name, y in rows.items():
        label(ax, 0.1, y + h / 2, name, ha="left", fontweight="bold")
    previous = {name: None for name in rows}
    for column, step in enumerate(train_steps):
        x = x0 + column * (w + gap)
        random = isinstance(step, (tuple, *RANDOM))
        box(ax, x, rows["training"], w, h, _text(step), "warn" if random else "step", size=10)
        if previous["training"] is not None:
            arrow(ax, (previous["training"], rows["training"] + h / 2), (x, rows["training"] + h / 2))
        previous["training"] = x + w
        if type(step) in eval_types:
            y = rows["evaluation\n& inference"]
            box(ax, x, y, w, h, _text(step), "step", size=10)
            if previous["evaluation\n& inference"] is not None:
                arrow(ax, (previous["evaluation\n& inference"], y + h / 2), (x, y + h / 2))
            previous["evaluation\n& inference"] = x + w
    box(ax, x0, 3.62, 0.3, 0.2, color="warn")
    label(ax, x0 + 0.4, 3.72, "random: different every time", ha="left", size=10)
    box(ax, x0 + 3.6, 3.62, 0.3, 0.2, color=COLORS["step"])
    label(ax, x0 + 4.0, 3.72, "the same every time", ha="left", size=10)
    label(
        ax, x0, 0.45,
        f"Both end in a tensor of shape {list(output)}; evaluation skips every random step.",
        ha="left", size=10,
    )
    return fig


DIAGRAMS = {"02_train_vs_eval.png": train_vs_eval}
