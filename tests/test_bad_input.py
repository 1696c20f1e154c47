"""COURSE_SPEC §10 end to end: bad input gets a clear message and loses nothing.

Each test is one row of the spec's table, driven through the public path a learner uses
(``ck.build_datasets`` -> ``ck.make_loaders`` -> ``ck.fit``, ``python -m coursekit
check-data``, ``ck.load_checkpoint`` / ``ck.load_bundle``, ``python -m data_scripts get``),
and it checks both halves of the promise:

* what the learner reads names the file or setting AND says what to do about it;
* nothing is lost: the dataset folder is byte-for-byte unchanged, checkpoints still load,
  and no half-extracted or half-downloaded folder ever looks like a dataset.

The unit tests of each module (test_data.py, test_train.py, inference/test_*.py,
test_data_scripts_*.py) cover the details; this file is the learner-level table. Everything
runs offline on 16-32 px images and models of a few hundred parameters.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import socket
import struct
import subprocess
import sys
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch
import torchvision
from data_scripts_helpers import (
    FileServer,
    hymenoptera_layout,
    make_image_tree,
    snapshot,
    tar_folder,
    zip_folder,
)
from PIL import Image
from torch import nn
from torch.optim.lr_scheduler import StepLR
from torchvision import transforms

import coursekit as ck
import data_scripts.get
from coursekit.__main__ import main as coursekit_main
from data_scripts.__main__ import main as data_scripts_main
from data_scripts.download import Checksum
from data_scripts.registry import RemoteFile, dataset_spec

SIZE, RESIZE, BATCH, LR = 16, 18, 4, 0.1
PETS = ("cat", "dog")
RED, GREEN, BLUE, WHITE = (220, 30, 30), (0, 200, 0), (30, 30, 220), (255, 255, 255)
CHECK_DATA = "python -m coursekit check-data"
#: A small torchvision classifier for bundles (they are rebuilt from a torchvision arch name).
BUNDLE_ARCH = "shufflenet_v2_x0_5"


# --------------------------------------------------------------------------- files


def save_image(
    path: Path, colour: Any = RED, size: tuple[int, int] = (20, 20), mode: str = "RGB"
) -> Path:
    """A one-colour image; the suffix picks the format. Folders are created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def save_noise(path: Path, size: int = 32) -> Path:
    """Random pixels: their compressed data is long enough to cut in half meaningfully."""
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def cut_in_half(path: Path) -> Path:
    """What an interrupted copy or download leaves behind."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_dataset(
    root: Path, train: tuple[str, ...] = PETS, valid: tuple[str, ...] | None = None
) -> Path:
    """root/train/<class>/0..2.png and root/valid/<class>/0..1.png, one colour per class."""
    valid = valid or train
    colours = dict(zip(sorted({*train, *valid}), itertools.cycle([RED, BLUE, GREEN, WHITE])))
    for split, classes, count in (("train", train, 3), ("valid", valid, 2)):
        for name in classes:
            for index in range(count):
                save_image(root / split / name / f"{index}.png", colours[name])
    return root


# --- broken image files, as learners get them


def zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def truncated_jpeg(path: Path) -> Path:
    return cut_in_half(save_noise(path.with_suffix(".jpg")))


def truncated_png(path: Path) -> Path:
    return cut_in_half(save_noise(path.with_suffix(".png")))


def truncated_bmp(path: Path) -> Path:
    return cut_in_half(save_noise(path.with_suffix(".bmp")))


def truncated_gif(path: Path) -> Path:
    return cut_in_half(save_noise(path.with_suffix(".gif")))


def truncated_tiff(path: Path) -> Path:
    return cut_in_half(save_noise(path.with_suffix(".tiff")))


def web_page(path: Path) -> Path:
    """A "photo" that is really the HTML error page a browser saved under an image name."""
    path.write_text("<!doctype html><title>404 Not Found</title>", encoding="utf-8")
    return path


def corrupt_jpeg(path: Path) -> Path:
    """A complete JPEG (end marker intact) whose Huffman table was overwritten by a bad copy."""
    path = save_noise(path.with_suffix(".jpg"))
    data = bytearray(path.read_bytes())
    table = data.index(b"\xff\xc4") + 4  # DHT marker + segment length
    data[table : table + 40] = random.Random(0).randbytes(40)
    path.write_bytes(bytes(data))
    return path


def decompression_bomb(path: Path, width: int = 20_000, height: int = 10_000) -> Path:
    """A 65-byte PNG whose header claims 200 megapixels, the shape of a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    path = path.with_suffix(".png")
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    return path


@dataclass(frozen=True)
class BrokenKind:
    """How to make one kind of broken image, and the words the learner should read about it."""

    make: Callable[[Path], Path]
    problem: str
    fix: str


BROKEN = {
    "zero-byte": BrokenKind(zero_bytes, "empty (0 bytes)", "copy the image again"),
    "truncated-jpeg": BrokenKind(truncated_jpeg, "truncated or corrupt", "copy it again"),
    "truncated-png": BrokenKind(truncated_png, "truncated or corrupt", "copy it again"),
    "truncated-bmp": BrokenKind(truncated_bmp, "truncated or corrupt", "copy it again"),
    "truncated-gif": BrokenKind(truncated_gif, "truncated or corrupt", "copy it again"),
    "truncated-tiff": BrokenKind(truncated_tiff, "truncated or corrupt", "copy it again"),
    "corrupt-jpeg": BrokenKind(corrupt_jpeg, "truncated or corrupt", "copy it again"),
    "web-page-as-jpg": BrokenKind(web_page, "not an image", "replace it with a real image"),
    "decompression-bomb": BrokenKind(decompression_bomb, "decompression bomb", "MAX_IMAGE_PIXELS"),
}


def make_broken(kind: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return BROKEN[kind].make(folder / f"broken {kind}.jpg")


def line_naming(output: str, path: Path) -> str:
    """The one line of ``output`` that names ``path`` (fails if there is none)."""
    lines = [line for line in output.splitlines() if str(path) in line]
    assert lines, f"{path} is not named in:\n{output}"
    return lines[0]


# --------------------------------------------------------------------------- a learner's lesson


def tiny_net(num_classes: int, *, depth: int = 1, seed: int = 0) -> nn.Module:
    """A CNN that trains in milliseconds; another ``depth`` is another architecture."""
    torch.manual_seed(seed)
    convs: list[nn.Module] = []
    for index in range(depth):
        convs += [nn.Conv2d(3 if index == 0 else 4, 4, 3), nn.ReLU()]
    return nn.Sequential(*convs, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))


@dataclass
class Lesson:
    """What a training lesson builds from a dataset folder: data, model, optimizer, StepLR."""

    train_ds: ck.ImageFolderDataset
    valid_ds: ck.ImageFolderDataset
    loaders: dict[str, torch.utils.data.DataLoader]
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: StepLR

    @property
    def metadata(self) -> dict[str, Any]:
        classes = self.train_ds.classes
        return {"arch": "tiny_net", "num_classes": len(classes), "class_names": list(classes)}

    def fit(self, epochs: int = 1, **kwargs: Any) -> ck.History:
        return ck.fit(
            self.model,
            self.loaders,
            nn.CrossEntropyLoss(),
            self.optimizer,
            epochs=epochs,
            scheduler=self.scheduler,
            device="cpu",
            metadata=self.metadata,
            progress=False,
            **kwargs,
        )


def lesson_on(root: Path, seed: int = 0) -> Lesson:
    """build_datasets -> make_loaders -> model, optimizer and scheduler, as lesson 04 does."""
    train_ds, valid_ds = ck.build_datasets(
        root, ck.train_transforms(SIZE, RESIZE), ck.eval_transforms(SIZE, RESIZE)
    )
    loaders = ck.make_loaders(train_ds, valid_ds, batch_size=BATCH)
    model = tiny_net(len(train_ds.classes), seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    return Lesson(train_ds, valid_ds, loaders, model, optimizer, StepLR(optimizer, 1, gamma=0.5))


def training_batches(model: nn.Module, ctrl_c_at: int | None = None) -> list[int]:
    """Count the model's training batches; press Ctrl-C at batch number ``ctrl_c_at``."""
    seen: list[int] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if module.training:
            seen.append(inputs[0].shape[0])
            if len(seen) == ctrl_c_at:
                raise KeyboardInterrupt

    model.register_forward_pre_hook(hook)
    return seen


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def assert_same_state(model: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    torch.testing.assert_close(model.state_dict(), expected, rtol=0, atol=0)


def run_check_data(root: Path) -> subprocess.CompletedProcess[str]:
    """The learner's command, in its own process, exactly as typed in a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "coursekit", "check-data", str(root)],
        capture_output=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )


def count_table(lines: list[str]) -> dict[str, list[str]]:
    """check-data's table as {class: [count per split]}, from the header down to "total"."""
    start = next(i for i, line in enumerate(lines) if line.startswith("class")) + 2
    end = next(i for i, line in enumerate(lines) if line.startswith("total")) + 1
    return {cells[0]: cells[1:] for cells in map(str.split, lines[start:end])}


def get_hymenoptera(root: Path, *options: str) -> int:
    """``python -m data_scripts get hymenoptera --root ROOT [options]``; the exit status."""
    return data_scripts_main(["get", "hymenoptera", "--root", str(root), *options])


# --------------------------------------------------------------------------- broken images


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_image_is_skipped_named_and_left_on_disk(tmp_path, capsys, kind):
    root = make_dataset(tmp_path / "pets")
    bad = make_broken(kind, root / "train" / "cat")
    before = snapshot(root)

    lesson = lesson_on(root)
    history = lesson.fit()  # the epoch must finish: no crash in the middle of training

    out = capsys.readouterr().out
    assert history.epochs_done == 1
    assert bad not in {path for path, _ in lesson.train_ds.samples}
    assert len(lesson.train_ds) == 6
    assert BROKEN[kind].problem in line_naming(out, bad)
    assert "Skipped 1 unreadable image(s)" in out and f"{CHECK_DATA} {root}" in out
    assert snapshot(root) == before  # reported, never deleted: the learner decides
    assert PIL.Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's safety limit left alone


def test_the_skip_report_says_how_to_fix_each_file(tmp_path, capsys):
    root = make_dataset(tmp_path / "pets")
    broken = {kind: make_broken(kind, root / "train" / "dog") for kind in BROKEN}
    lesson_on(root)
    out = capsys.readouterr().out
    for kind, path in broken.items():
        assert BROKEN[kind].fix in line_naming(out, path), kind


def test_non_image_files_in_a_class_folder_are_ignored_and_check_data_names_them(tmp_path, capsys):
    root = make_dataset(tmp_path / "pets")
    strays = [root / "train" / "cat" / "notes.txt", root / "valid" / "dog" / "labels.csv"]
    for stray in strays:
        stray.write_text("not a picture", encoding="utf-8")
    before = snapshot(root)

    lesson = lesson_on(root)
    lesson.fit()
    assert (len(lesson.train_ds), len(lesson.valid_ds)) == (6, 4)
    assert capsys.readouterr().out == ""  # not an image file: not a problem for training

    problems = {p.path: p for p in ck.check_dataset(root).problems}
    assert set(problems) == set(strays)
    assert all("move it out of the class folder" in p.fix for p in problems.values())
    assert snapshot(root) == before


def test_jupyter_and_os_clutter_is_neither_a_class_nor_an_image(tmp_path, capsys):
    root = make_dataset(tmp_path / "pets")
    save_image(root / "train" / ".ipynb_checkpoints" / "0-checkpoint.png")  # a hidden "class"
    save_image(root / "train" / "cat" / ".ipynb_checkpoints" / "0-checkpoint.png")
    save_image(root / "valid" / "__MACOSX" / "dog" / "._0.png")
    for folder in (root, root / "train", root / "train" / "cat", root / "valid" / "dog"):
        (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")

    lesson = lesson_on(root)
    lesson.fit()
    assert lesson.train_ds.classes == list(PETS)
    assert (len(lesson.train_ds), len(lesson.valid_ds)) == (6, 4)
    assert capsys.readouterr().out == ""
    report = ck.check_dataset(root)
    assert report.ok and report.classes == list(PETS)
    assert not any(word in str(report) for word in ("ipynb", "MACOSX", "DS_Store"))


def save_palette_image(path: Path) -> None:
    image = Image.new("P", (20, 20), 1)
    image.putpalette([0, 0, 0, *GREEN])  # every pixel is palette entry 1
    image.save(path)


def save_16_bit_gray(path: Path) -> None:
    Image.fromarray(np.full((20, 20), 32896, dtype=np.uint16)).save(path)  # 32896 / 257 = 128


MODES = {  # file name -> (how it is saved, the colour a learner expects to see)
    "transparent.png": (lambda p: save_image(p, (0, 0, 0, 0), mode="RGBA"), WHITE),
    "gray.png": (lambda p: save_image(p, 77, mode="L"), (77, 77, 77)),
    "cmyk.jpg": (lambda p: save_image(p, (0, 255, 255, 0), mode="CMYK"), (255, 0, 0)),
    "palette.png": (save_palette_image, GREEN),
    "16-bit.png": (save_16_bit_gray, (128, 128, 128)),  # scaled to 8 bits, not clipped
}


def test_every_image_mode_trains_as_rgb_and_keeps_its_colours(tmp_path, capsys):
    root = make_dataset(tmp_path / "pets")
    for name, (save, _) in MODES.items():
        save(root / "train" / "cat" / name)

    lesson = lesson_on(root)
    images, _ = next(iter(lesson.loaders["train"]))
    assert images.shape[1:] == (3, SIZE, SIZE)
    assert lesson.fit().epochs_done == 1
    assert capsys.readouterr().out == ""  # nothing skipped

    as_tensors, _ = ck.build_datasets(root, transforms.ToTensor(), transforms.ToTensor())
    colours = {
        path.name: (as_tensors[index][0].mean(dim=(1, 2)) * 255).tolist()
        for index, (path, _) in enumerate(as_tensors.samples)
        if path.name in MODES
    }
    assert colours.keys() == MODES.keys()
    for name, (_, expected) in MODES.items():
        assert np.allclose(colours[name], expected, atol=4), (name, colours[name], expected)


def test_an_exif_rotated_phone_photo_is_upright(tmp_path):
    root = make_dataset(tmp_path / "pets")
    stored = Image.new("RGB", (40, 20), BLUE)  # landscape pixels...
    stored.paste(RED, (0, 0, 4, 20))  # ...with a red stripe on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # ...and the flag "rotate 90 degrees clockwise to display"
    photo = root / "train" / "cat" / "phone.jpg"
    stored.save(photo, exif=exif, quality=95)

    raw_train, _ = ck.build_datasets(root, None, None)
    upright = raw_train[[path for path, _ in raw_train.samples].index(photo)][0]
    assert upright.size == (20, 40)  # portrait, as the phone showed it
    assert np.allclose(upright.getpixel((10, 1)), RED, atol=40)  # the stripe is on top
    assert lesson_on(root).fit().epochs_done == 1


# --------------------------------------------------------------------------- class folders


def test_an_empty_class_folder_keeps_its_label_and_is_named_with_the_fix(tmp_path, capsys):
    root = make_dataset(tmp_path / "pets")
    for split in ("train", "valid"):
        (root / split / "bird").mkdir()

    lesson = lesson_on(root)
    assert lesson.fit().epochs_done == 1
    assert lesson.train_ds.classes == ["bird", "cat", "dog"]
    warning = line_naming(capsys.readouterr().out, root / "train")
    assert "bird" in warning and "no training images" in warning
    assert "Add images" in warning and "delete" in warning

    empty = [p for p in ck.check_dataset(root).problems if "empty class folder" in p.problem]
    assert {p.path for p in empty} == {root / "train" / "bird", root / "valid" / "bird"}
    assert all("add images, or delete the folder" in p.fix for p in empty)


def test_a_valid_split_missing_a_class_keeps_every_label(tmp_path):
    root = make_dataset(tmp_path / "zoo", train=("cat", "dog", "fox"), valid=("cat", "fox"))

    lesson = lesson_on(root)
    assert lesson.fit().epochs_done == 1
    assert lesson.valid_ds.class_to_idx == lesson.train_ds.class_to_idx
    for path, target in lesson.valid_ds.samples:
        assert lesson.valid_ds.classes[target] == path.parent.name  # fox is 2, not shifted to 1

    (problem,) = ck.check_dataset(root).problems
    assert problem.path == root / "valid" / "dog" and "never validated" in problem.problem
    assert f"add a few of its images to {root / 'valid' / 'dog'}" == problem.fix


def test_build_datasets_says_when_the_valid_split_misses_a_class(tmp_path, capsys):
    root = make_dataset(tmp_path / "zoo", train=("cat", "dog", "fox"), valid=("cat", "fox"))
    lesson_on(root)
    warning = line_naming(capsys.readouterr().out, root / "valid")
    assert "dog" in warning and "validation" in warning and "Add" in warning


# --------------------------------------------------------------------------- the data check


def test_check_data_lists_every_problem_with_counts_per_class_in_one_pass(tmp_path):
    root = tmp_path / "course data" / "flowers ✿"
    make_dataset(root, train=("1", "2", "10"), valid=("1", "2"))
    broken = [make_broken(kind, root / "train" / "10") for kind in BROKEN]
    strays = [root / "train" / "1" / "notes.txt", save_image(root / "valid" / "stray.png")]
    strays[0].write_text("todo", encoding="utf-8")
    (root / "valid" / "3").mkdir()
    save_image(root / "train" / ".ipynb_checkpoints" / "x.png")
    (root / "train" / "2" / ".DS_Store").write_bytes(b"\0")
    before = snapshot(root)

    result = run_check_data(root)

    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert count_table(lines) == {
        "1": ["3", "2"], "10": ["3", "0"], "2": ["3", "2"], "3": ["0", "0"], "total": ["9", "4"],
    }  # fmt: skip
    reported = [line for line in lines if line.startswith("- ")]
    expected = {*broken, *strays, root / "valid" / "3", root / "valid" / "10", root / "train" / "3"}
    assert len(reported) == len(expected)
    for path in expected:
        assert sum(line.startswith(f"- {path}: ") for line in reported) == 1, path
    assert f"{len(expected)} problem(s):" in lines
    assert sum(line.strip().startswith("fix: ") for line in lines) == len(expected)
    assert snapshot(root) == before


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture
def trained(tmp_path) -> tuple[Lesson, Path]:
    """A lesson trained for one epoch, and its best checkpoint."""
    lesson = lesson_on(make_dataset(tmp_path / "pets"))
    checkpoint = tmp_path / "runs" / "best.pt"
    lesson.fit(checkpoint_path=checkpoint)
    return lesson, checkpoint


OTHER_MODELS = {
    "other-class-count": (lambda: tiny_net(3, seed=5), ["stored shape (2, 4)", "(3, 4)"]),
    "other-architecture": (
        lambda: tiny_net(2, depth=2, seed=5),
        ["layers missing from the checkpoint", "layers this model does not have"],
    ),
}


@pytest.mark.parametrize("other", OTHER_MODELS)
def test_a_checkpoint_for_another_model_is_refused_with_the_reason(trained, other):
    lesson, checkpoint = trained
    build, details = OTHER_MODELS[other]
    saved = checkpoint.read_bytes()

    with pytest.raises(ck.CheckpointMismatchError) as caught:
        ck.load_checkpoint(checkpoint, build())

    message = str(caught.value)
    assert str(checkpoint) in message and all(detail in message for detail in details)
    assert "arch='tiny_net', num_classes=2" in message
    assert "build the model the same way" in message
    assert checkpoint.read_bytes() == saved
    same = tiny_net(2, seed=9)
    ck.load_checkpoint(checkpoint, same)  # the right model still loads it
    assert_same_state(same, state_of(lesson.model))


@pytest.mark.parametrize("other", OTHER_MODELS)
def test_a_refused_checkpoint_leaves_the_model_as_it_was(trained, other):
    _, checkpoint = trained
    model = OTHER_MODELS[other][0]()
    before = state_of(model)  # e.g. weights the learner trained a minute ago
    with pytest.raises(ck.CheckpointMismatchError):
        ck.load_checkpoint(checkpoint, model)
    assert_same_state(model, before)


def test_expected_settings_are_checked_before_the_model_is_touched(trained):
    _, checkpoint = trained
    model = tiny_net(2, seed=5)
    before = state_of(model)
    with pytest.raises(ck.CheckpointMismatchError) as caught:
        ck.load_checkpoint(checkpoint, model, expected={"arch": "resnet18", "num_classes": 2})
    assert "arch: stored 'tiny_net', expected 'resnet18'" in str(caught.value)
    assert_same_state(model, before)


def claim_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torch.save record every tensor as stored on "cuda:0", as a GPU machine does."""
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")


def test_a_checkpoint_saved_on_a_gpu_loads_and_resumes_on_a_cpu(tmp_path, monkeypatch):
    lesson = lesson_on(make_dataset(tmp_path / "pets"))
    checkpoint = tmp_path / "runs" / "gpu.pt"
    with monkeypatch.context() as patch:
        claim_cuda(patch)
        lesson.fit(checkpoint_path=checkpoint)
    with pytest.raises(RuntimeError, match="CUDA"):  # what a plain torch.load does here
        torch.load(checkpoint, weights_only=True)

    model = tiny_net(2, seed=9)
    state = ck.load_checkpoint(checkpoint, model)
    assert {t.device.type for t in state["model_state"].values()} == {"cpu"}
    assert_same_state(model, state_of(lesson.model))
    resumed = lesson_on(tmp_path / "pets", seed=9)
    history = resumed.fit(2, resume_from=ck.last_checkpoint_path(checkpoint))
    assert history.epochs_done == 2


def export_tiny_bundle(path: Path, class_names: list[str]) -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.get_model(BUNDLE_ARCH, weights=None, num_classes=len(class_names))
    ck.export_bundle(
        path, model, class_names=class_names, arch=BUNDLE_ARCH, image_size=32, resize_size=36,
        mean=ck.IMAGENET_MEAN, std=ck.IMAGENET_STD,
    )  # fmt: skip
    return model.eval()


def test_a_bundle_saved_on_a_gpu_loads_and_predicts_on_a_cpu(tmp_path, monkeypatch):
    bundle_path = tmp_path / "exports" / "pets.pt"
    with monkeypatch.context() as patch:
        claim_cuda(patch)
        original = export_tiny_bundle(bundle_path, list(PETS))
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(bundle_path, weights_only=True)

    bundle = ck.load_bundle(bundle_path)
    photo = save_noise(tmp_path / "photo.png")
    expected = ck.predict_image(original, photo, ck.eval_transforms(32, 36), list(PETS))
    got = bundle.predict(photo)
    assert got.top_classes == expected.top_classes
    assert got.top_probs == pytest.approx(expected.top_probs)


@pytest.mark.parametrize("what", ["checkpoint", "bundle"])
def test_a_half_copied_checkpoint_or_bundle_is_named_with_the_fix(trained, tmp_path, what):
    _, checkpoint = trained
    if what == "bundle":
        checkpoint = tmp_path / "exports" / "pets.pt"
        export_tiny_bundle(checkpoint, list(PETS))
    cut_in_half(checkpoint)
    load = ck.load_checkpoint if what == "checkpoint" else ck.load_bundle
    with pytest.raises((ck.CheckpointError, ck.BundleError)) as caught:
        load(checkpoint)
    assert str(checkpoint) in str(caught.value)
    assert "truncated" in str(caught.value) and "again" in str(caught.value)


# --------------------------------------------------------------------------- interruptions


def test_ctrl_c_during_training_keeps_the_best_checkpoint_and_resume_continues(tmp_path, capsys):
    root = make_dataset(tmp_path / "pets")
    checkpoint = tmp_path / "runs" / "best.pt"
    lesson = lesson_on(root)
    per_epoch = len(lesson.loaders["train"])
    training_batches(lesson.model, ctrl_c_at=2 * per_epoch + 1)  # first batch of epoch 3

    stopped = lesson.fit(4, checkpoint_path=checkpoint)

    out = capsys.readouterr().out
    assert stopped.epochs_done == 2 and "Training stopped during epoch 3 of 4" in out
    assert str(checkpoint) in out
    best = ck.load_checkpoint(checkpoint, tiny_net(2))
    assert best["epoch"] == stopped.best_epoch and best["history"]["best_acc"] == stopped.best_acc
    assert ck.load_checkpoint(ck.last_checkpoint_path(checkpoint))["epoch"] == 2

    resumed = lesson_on(root, seed=9)  # a fresh kernel: other weights, new optimizer
    batches = training_batches(resumed.model)
    history = resumed.fit(
        4, checkpoint_path=checkpoint, resume_from=ck.last_checkpoint_path(checkpoint)
    )

    assert len(batches) == 2 * per_epoch  # epochs 3 and 4 only
    assert history.epochs_done == 4
    assert history.lr == pytest.approx([LR, LR / 2, LR / 4, LR / 8])  # StepLR picked up
    assert history.train_loss[:2] == stopped.train_loss
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(LR / 16)


def test_the_ctrl_c_message_says_how_to_resume(tmp_path, capsys):
    lesson = lesson_on(make_dataset(tmp_path / "pets"))
    training_batches(lesson.model, ctrl_c_at=len(lesson.loaders["train"]) + 1)
    checkpoint = tmp_path / "runs" / "best.pt"
    lesson.fit(3, checkpoint_path=checkpoint)
    out = capsys.readouterr().out
    assert "resume_from=" in out and str(ck.last_checkpoint_path(checkpoint)) in out


@pytest.fixture
def no_waiting(monkeypatch) -> None:
    """Download retries back off with time.sleep; the tests need not wait."""
    monkeypatch.setattr("data_scripts.download.time.sleep", lambda seconds: None)


def hymenoptera_zip(folder: Path, name: str = "hymenoptera_data.zip") -> tuple[Path, Path]:
    """A tiny stand-in for the official archive, and the tree it was made from."""
    tree = make_image_tree(folder / "tree", hymenoptera_layout(2))
    return zip_folder(tree, folder / name, top="hymenoptera_data"), tree


def serve_as_official(monkeypatch, archive: Path, server: FileServer) -> None:
    """Make `get hymenoptera` download ``archive`` from ``server`` (checksum included)."""
    digest = Checksum("sha256", "").of(archive)
    official = RemoteFile(archive.name, server.url(archive.name), Checksum("sha256", digest))
    spec = dataclasses.replace(dataset_spec("hymenoptera"), files=(official,))
    monkeypatch.setattr(data_scripts.get, "dataset_spec", lambda name: spec)


class CtrlCHalfway:
    """A urlopen answer that delivers half of the body, then the learner presses Ctrl-C."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self._left = int(response.headers["Content-Length"]) // 2

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)

    def __enter__(self) -> CtrlCHalfway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._response.close()

    def read(self, size: int = -1) -> bytes:
        if self._left == 0:
            raise KeyboardInterrupt
        chunk = self._response.read(self._left if size < 0 else min(size, self._left))
        self._left -= len(chunk)
        return chunk


def downloaded_files(data_root: Path) -> list[Path]:
    """What a download keeps in ``.downloads/``, leaving out the empty lock files of finished runs."""
    return sorted(p for p in (data_root / ".downloads").iterdir() if p.suffix != ".lock")


def test_ctrl_c_during_a_download_installs_nothing_and_the_rerun_resumes(
    tmp_path, monkeypatch, capsys, no_waiting
):
    archive, tree = hymenoptera_zip(tmp_path)
    root = tmp_path / "data"
    with FileServer({archive.name: archive.read_bytes()}) as server:
        serve_as_official(monkeypatch, archive, server)
        with monkeypatch.context() as patch:
            real_urlopen = urllib.request.urlopen
            patch.setattr(
                urllib.request, "urlopen", lambda *a, **k: CtrlCHalfway(real_urlopen(*a, **k))
            )
            assert get_hymenoptera(root) == 130

        err = capsys.readouterr().err
        assert "Nothing half-done was installed" in err and "run the command again" in err
        assert sorted(p.name for p in root.iterdir()) == [".downloads"]  # no dataset, no scratch
        (part,) = downloaded_files(root)
        assert part.name.endswith(".part") and part.stat().st_size == archive.stat().st_size // 2
        status = {s.name: s for s in ck.dataset_status(ck.get_settings("full", data_root=root))}
        assert not status["hymenoptera"].present  # no lesson mistakes it for a dataset

        arrived = part.stat().st_size
        assert get_hymenoptera(root) == 0
        assert server.requests[-1][1] == f"bytes={arrived}-"  # resumed, not restarted
    assert snapshot(root / "hymenoptera") == snapshot(tree)
    assert [p.name for p in downloaded_files(root)] == [archive.name]


# --------------------------------------------------------------------------- archives


def test_an_archive_member_escaping_the_data_folder_is_refused_and_the_old_dataset_kept(
    tmp_path, capsys
):
    archive, _ = hymenoptera_zip(tmp_path, "ants and bees.zip")
    root = tmp_path / "data"
    assert get_hymenoptera(root, "--from", str(archive)) == 0
    installed = snapshot(root / "hymenoptera")
    with zipfile.ZipFile(archive, "a") as bundle:
        bundle.writestr("hymenoptera_data/../../../escaped.txt", "gotcha")
    capsys.readouterr()

    code = get_hymenoptera(root, "--from", str(archive), "--force")

    err = capsys.readouterr().err
    assert code == 1
    assert str(archive) in err and "escaped.txt" in err and "outside" in err
    assert "nothing was extracted" in err and "get the archive again" in err
    assert not list(tmp_path.rglob("escaped.txt"))
    assert snapshot(root / "hymenoptera") == installed
    assert sorted(p.name for p in root.iterdir()) == ["hymenoptera"]  # no scratch left behind


@pytest.mark.parametrize(
    ("pack", "name"), [(zip_folder, "ants.zip"), (tar_folder, "ants.tgz")], ids=["zip", "tgz"]
)
def test_a_truncated_archive_is_named_as_damaged_and_installs_nothing(tmp_path, capsys, pack, name):
    tree = make_image_tree(tmp_path / "tree", hymenoptera_layout(3))
    archive = cut_in_half(pack(tree, tmp_path / name, "hymenoptera_data"))
    root = tmp_path / "data"

    code = get_hymenoptera(root, "--from", str(archive))

    err = capsys.readouterr().err
    assert code == 1 and str(archive) in err
    assert any(word in err for word in ("damaged", "incomplete", "truncated"))
    assert "again" in err
    assert not root.exists() or list(root.iterdir()) == []


# --------------------------------------------------------------------------- paths


def test_paths_with_spaces_and_non_ascii_characters_work_end_to_end(tmp_path, capsys):
    root = tmp_path / "my photos"
    classes = sorted(["été", "hiver ❄"])  # sorted by code point: "hiver ❄" comes first
    for split, count in (("train", 3), ("valid", 2)):
        for name, colour in zip(classes, (RED, BLUE), strict=True):
            for index in range(count):
                save_image(root / split / name / f"ä ö {index}.jpg", colour)
    broken = zero_bytes(root / "train" / "été" / "ü leer.jpg")

    lesson = lesson_on(root)
    checkpoint = tmp_path / "runs ü" / "modèle 1.pt"
    assert lesson.fit(checkpoint_path=checkpoint).epochs_done == 1
    assert str(broken) in capsys.readouterr().out
    assert ck.load_checkpoint(checkpoint, tiny_net(2))["metadata"]["class_names"] == classes

    bundle_path = tmp_path / "exports ß" / "bündel.pt"
    export_tiny_bundle(bundle_path, classes)
    predictions = ck.load_bundle(bundle_path).predict_folder(root / "valid")
    assert [p.source for p in predictions] == [
        str(path) for path in sorted((root / "valid").rglob("*.jpg"))
    ]
    assert {p.label for p in predictions} <= set(classes)

    assert coursekit_main(["check-data", str(root)]) == 1  # the empty file
    report = capsys.readouterr().out
    assert str(broken) in report and "hiver ❄" in report

    archive, tree = hymenoptera_zip(tmp_path / "téléchargements", "fourmis et abeilles.zip")
    data_root = tmp_path / "données ü"
    assert get_hymenoptera(data_root, "--from", str(archive)) == 0
    assert snapshot(data_root / "hymenoptera") == snapshot(tree)


# --------------------------------------------------------------------------- no network


@pytest.fixture
def offline(monkeypatch, no_waiting) -> list[str]:
    """No network at all: every host name lookup fails as it does on an offline laptop.

    Patching the lowest level means every client (urllib in data_scripts, torch.hub in
    pretrained) meets the URLError an offline learner meets. Returns the hosts asked for.
    """
    asked: list[str] = []

    def no_dns(host: str, *args: object, **kwargs: object) -> None:
        asked.append(host)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    return asked


@pytest.fixture
def empty_torch_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch home"))
    hub = Path(torch.hub.get_dir())
    assert hub.is_relative_to(tmp_path), "set TORCH_HOME, not torch.hub.set_dir, for this test"
    return hub


def test_offline_get_names_the_url_and_how_to_install_from_a_file(tmp_path, capsys, offline):
    root = tmp_path / "data"
    assert get_hymenoptera(root) == 1
    err = capsys.readouterr().err
    assert offline  # it tried, and the lookup failed as it does offline
    assert "https://download.pytorch.org/tutorial/hymenoptera_data.zip" in err
    assert "offline" in err and "get hymenoptera --from PATH" in err
    assert not (root / "hymenoptera").exists()
    assert downloaded_files(root) == []  # nothing half-done kept


def test_offline_weights_command_says_how_to_install_from_a_folder(
    empty_torch_cache, capsys, offline
):
    assert data_scripts_main(["weights", "resnet18"]) == 1
    err = capsys.readouterr().err
    assert "resnet18-f37072fd.pth" in err and "offline" in err and "--from" in err
    assert not list(empty_torch_cache.rglob("*.pth"))


def test_offline_pretrained_stops_in_full_mode_and_falls_back_in_smoke_mode(
    empty_torch_cache, capsys, offline
):
    with pytest.raises(ck.WeightsUnavailableError) as caught:
        ck.pretrained("resnet18", settings=ck.get_settings("full"), num_classes=2)
    message = str(caught.value)
    assert "python -m data_scripts weights resnet18" in message and "--from DIR" in message
    assert str(empty_torch_cache) in message
    assert not list(empty_torch_cache.rglob("*.pth"))
    capsys.readouterr()

    model = ck.pretrained("resnet18", settings=ck.get_settings("smoke"), num_classes=2)
    (line,) = capsys.readouterr().out.splitlines()
    assert "random initialization" in line and "python -m data_scripts weights resnet18" in line
    assert model.fc.out_features == 2
