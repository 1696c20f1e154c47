"""Lesson 09 ends with its pipeline in plain PyTorch: it must reach the coursekit path's accuracy.

The test runs the notebook's OWN plain-PyTorch cell (tagged ``plain-pytorch``) and its own
comparison cell (tagged ``plain-pytorch-check``), so there is no second copy of that code to
drift. Both paths start from the same "pretrained" weights: a fixed random ResNet-18 saved
where torchvision looks for its ImageNet file (tests never touch the network), which both
``ck.pretrained`` and ``torchvision.models.get_model(weights=...)`` load from the cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import coursekit as ck

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "09_capstone_your_own_data.ipynb"
#: Colours close enough that noise makes some photos ambiguous: accuracies stay below 100 %.
CLASSES = {"red": (200, 60, 60), "orange": (200, 120, 50), "green": (60, 170, 70),
           "blue": (60, 80, 200)}
IMAGES_PER_CLASS = 40


def tagged_source(tag: str) -> str:
    """The source of the one code cell of lesson 09 tagged ``tag``."""
    cells = [
        cell.source
        for cell in nbformat.read(NOTEBOOK, as_version=4).cells
        if cell.cell_type == "code" and tag in cell.get("metadata", {}).get("tags", [])
    ]
    assert len(cells) == 1, f"lesson 09 should have one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def draw_photo(colour: tuple[int, int, int], rng: np.random.Generator) -> Image.Image:
    """A noisy 64 x 64 picture dominated by its class's colour, with a random blob on it."""
    pixels = np.asarray(colour, dtype=float) + rng.normal(0, 50, size=(64, 64, 3))
    top, left = rng.integers(0, 40, size=2)
    pixels[top : top + 24, left : left + 24] = rng.integers(0, 256, size=3)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """One folder of 4 class sub-folders (no valid split), plus an empty file and a checkpoint
    folder, like the lesson's demo folder."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name, colour in CLASSES.items():
        (folder / name).mkdir()
        for number in range(IMAGES_PER_CLASS):
            draw_photo(colour, rng).save(folder / name / f"img_{number:03d}.png")
    (folder / "red" / "IMG_broken.jpg").write_bytes(b"")
    shutil.copytree(folder / "red", folder / ".ipynb_checkpoints")
    return folder


@pytest.fixture(scope="module")
def settings():
    # Enough epochs for the head to learn; the rest is the quick run's small sizes.
    return ck.get_settings("smoke", epochs=15, batch_size=16, lr_step_size=10)


@pytest.fixture(scope="module")
def pretrained_weights(tmp_path_factory, photo_folder, settings):
    """A fixed ResNet-18 stored as torchvision's cached ImageNet file; TORCH_HOME points there.

    Its weights are random, but its BatchNorm statistics are measured on the photos (as
    pretraining would have done), so its features tell the classes apart.
    """
    torch_home = tmp_path_factory.mktemp("torch_home")
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    transform = ck.eval_transforms(settings.image_size, settings.resize_size)
    photos = [path for name in CLASSES for path in sorted((photo_folder / name).glob("*.png"))[:8]]
    batch = torch.stack([transform(ck.load_image(path)) for path in photos])
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # a plain average over what it sees
    with torch.no_grad():
        model.train()(batch)
    torch.save(model.state_dict(), checkpoints / Path(weights.url).name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(torch_home))
        yield weights


def coursekit_head_accuracy(folder: Path, settings) -> float:
    """Lesson 09's phase 1 with coursekit: frozen backbone, head trained on cached features."""
    transform = ck.eval_transforms(settings.image_size, settings.resize_size)
    train_ds, valid_ds = ck.build_datasets(
        folder, transform, transform, validation_split=settings.validation_split,
        split_seed=settings.split_seed, seed=settings.seed,
    )
    loaders = ck.make_loaders(train_ds, valid_ds, settings.batch_size, seed=settings.seed)
    model = ck.pretrained(settings.arch, settings=settings)
    for parameter in model.parameters():
        parameter.requires_grad = False
    head = ck.replace_head(model, len(train_ds.classes))
    optimizer = torch.optim.Adam(head.parameters(), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, settings.lr_step_size, settings.lr_gamma)
    history = ck.fit_on_features(
        ck.without_head(model), head, loaders, nn.CrossEntropyLoss(), optimizer,
        epochs=settings.epochs, device="cpu", seed=settings.seed, scheduler=scheduler,
        progress=False,
    )
    return history.best_acc


@pytest.fixture(scope="module")
def both_paths(photo_folder, settings, pretrained_weights):
    """The notebook's plain cell run on the folder, and the coursekit accuracy next to it."""
    namespace = {"MY_DATA": photo_folder, "settings": settings, "WEIGHTS": pretrained_weights}
    exec(compile(tagged_source("plain-pytorch"), "plain-pytorch cell", "exec"), namespace)
    namespace["coursekit_accuracy"] = coursekit_head_accuracy(photo_folder, settings)
    return namespace


def run_check(namespace: dict) -> dict:
    exec(compile(tagged_source("plain-pytorch-check"), "plain-pytorch-check cell", "exec"), namespace)
    return namespace


def test_plain_pytorch_reads_the_folder_like_coursekit(both_paths):
    # The hidden folder is no class and the empty file is skipped: 4 classes, 120 images.
    assert both_paths["classes"] == sorted(CLASSES)
    assert len(both_paths["train_set"]) + len(both_paths["valid_set"]) == 4 * IMAGES_PER_CLASS
    assert len(both_paths["valid_set"]) == 4 * round(0.2 * IMAGES_PER_CLASS)


def test_plain_pytorch_reaches_the_coursekit_accuracy_within_noise(both_paths, capsys):
    chance = 1 / len(CLASSES)
    # Both learned something, so agreeing is not two models guessing alike.
    assert both_paths["plain_best_acc"] > chance + 0.3
    assert both_paths["coursekit_accuracy"] > chance + 0.3
    checked = run_check(dict(both_paths))
    assert checked["same_within_noise"], capsys.readouterr().out


def test_the_comparison_can_fail(both_paths):
    """The tolerance is narrower than the gap between a trained head and guessing: a plain
    path that learned nothing would be reported as different."""
    checked = run_check(dict(both_paths, coursekit_accuracy=1 / len(CLASSES)))
    assert not checked["same_within_noise"]
    assert checked["noise"] < both_paths["plain_best_acc"] - 1 / len(CLASSES)
