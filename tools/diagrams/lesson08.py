"""Lesson 08 diagram: the inference pipeline, file -> preprocessing -> model -> softmax -> top-k.

The shapes under the boxes come from running the course's evaluation transform and a
MobileNetV2 with two classes (ants, bees) on a 500 x 375 photo-sized image.
"""

from __future__ import annotations

import torch
import torchvision
from PIL import Image

import coursekit as ck
from tools.diagrams import FONT_SIZE, canvas, label, row_of_boxes

PHOTO_SIZE = (500, 375)  # width x height of a typical ants/bees photo
CLASS_NAMES = ("ants", "bees")


def _shapes() -> dict[str, str]:
    """Shapes leaving each step, computed by running the steps on a blank photo."""
    settings = ck.Settings()  # the full-size defaults: 224 px crop of a 256 px resize
    photo = Image.new("RGB", PHOTO_SIZE)
    tensor = ck.eval_transforms(settings.image_size, settings.resize_size)(photo).unsqueeze(0)
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=len(CLASS_NAMES)).eval()
    with torch.inference_mode():
        logits = model(tensor)
    k = min(settings.top_k, len(CLASS_NAMES))
    return {
        "photo": f"{photo.width} x {photo.height} pixels",
        "tensor": " x ".join(map(str, tensor.shape)),
        "scores": " x ".join(map(str, logits.shape)),
        "top": f"top-{k} names\nand probabilities",
        "resize": f"resize {settings.resize_size},\ncrop {settings.image_size},\nnormalize",
    }


def draw_pipeline():
    shapes = _shapes()
    fig, ax = canvas(2.6)
    texts = [
        "photo file",
        "preprocessing\n(as validation):\nRGB, " + shapes["resize"],
        "model\neval(), no grad",
        "softmax\nscores -> probs",
        "top-k\nclass names",
    ]
    colors = ["data", "step", "frozen", "step", "learned"]
    rects = row_of_boxes(ax, texts, y=0.9, h=1.55, color=colors, size=FONT_SIZE - 1)
    below = [
        shapes["photo"],
        f"tensor {shapes['tensor']}",
        f"scores {shapes['scores']}",
        f"probs {shapes['scores']}",
        shapes["top"],
    ]
    for (x, _, w, _), text in zip(rects, below, strict=True):
        label(ax, x + w / 2, 0.5, text, size=FONT_SIZE - 1)
    return fig


DIAGRAMS = {"08_inference_pipeline.png": draw_pipeline}
