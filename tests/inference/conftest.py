"""Fixtures of the inference tests: one thread, no remembered speeds, a model, images."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from inference_helpers import IMAGE_SIZE, RESIZE_SIZE, make_image, random_resnet18
from torch import nn

from coursekit import timing
from coursekit.config import IMAGENET_MEAN, IMAGENET_STD
from coursekit.data import eval_transforms


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny inputs gain nothing from intra-op threads, which thrash on a busy shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _forget_measured_speeds():
    """Each test measures afresh: speeds are remembered per model type, which tests share."""
    timing._MEASURED.clear()
    yield
    timing._MEASURED.clear()


@pytest.fixture(scope="module")
def _resnet() -> nn.Module:
    return random_resnet18()


@pytest.fixture
def model(_resnet: nn.Module) -> nn.Module:
    return copy.deepcopy(_resnet)


@pytest.fixture(scope="module")
def transform():
    return eval_transforms(IMAGE_SIZE, RESIZE_SIZE, IMAGENET_MEAN, IMAGENET_STD)


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return [make_image(tmp_path / "imgs" / f"img{i}.png", seed=i) for i in range(5)]
