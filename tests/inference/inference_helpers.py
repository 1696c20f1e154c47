"""What the inference tests share: the class names, sizes, images and probe models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

from coursekit.config import IMAGENET_MEAN, IMAGENET_STD
from coursekit.folders import load_image

CLASSES = ["ants", "bees", "wasps"]
IMAGE_SIZE, RESIZE_SIZE = 32, 36
BUNDLE_ARGS = dict(
    class_names=CLASSES,
    arch="resnet18",
    image_size=IMAGE_SIZE,
    resize_size=RESIZE_SIZE,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)


def random_resnet18() -> nn.Module:
    """A seeded random ResNet-18 for CLASSES whose train and eval modes give other outputs."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=len(CLASSES))
    # Non-trivial running statistics, so that train-mode and eval-mode outputs differ.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


def make_image(path: Path, seed: int, size: tuple[int, int] = (48, 40)) -> Path:
    """A random-coloured image file (each seed gives a different picture)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def reference_probs(model: nn.Module, transform, path: Path) -> torch.Tensor:
    """Softmax of the model in eval mode, written out without coursekit.infer."""
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(transform(load_image(path)).unsqueeze(0)), dim=1)[0]


class ModeProbe(nn.Module):
    """Scores class 0 in train mode and class 1 in eval mode, and records every call."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.calls: list[dict] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(
            {
                "training": self.training,
                "bn_training": self.bn.training,
                "inference_mode": torch.is_inference_mode_enabled(),
                "batch": len(x),
            }
        )
        winner = 0 if self.training else 1
        return nn.functional.one_hot(torch.full((len(x),), winner), len(CLASSES)).float() * 5


def count_forwards(model: nn.Module) -> list[int]:
    """A list that grows by one entry (the batch size) per forward pass of ``model``."""
    calls: list[int] = []
    model.register_forward_hook(lambda module, args, output: calls.append(len(args[0])))
    return calls
