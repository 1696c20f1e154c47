"""Tests for coursekit.data on tiny images generated in tmp_path (no network, no real data)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path, PureWindowsPath

import numpy as np
import PIL.Image
import pytest
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader, Subset, TensorDataset
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.models import ResNet18_Weights

from coursekit.config import IMAGENET_MEAN, IMAGENET_STD, get_settings
from coursekit.data import (
    DatasetLayoutError,
    DatasetMissingError,
    ImageFolderDataset,
    _ImageCache,
    build_datasets,
    class_counts,
    compute_mean_std,
    dataset_status,
    eval_transforms,
    find_classes,
    find_dataset,
    load_label_names,
    make_loaders,
    normalization_of,
    readable_class_names,
    split_samples,
    train_transforms,
)
from coursekit.folders import UnreadableImageError, is_hidden, load_image, to_rgb
from coursekit.train import fit, last_checkpoint_path

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def save(path: Path, mode: str = "RGB", size: tuple[int, int] = (8, 8), color=RED, **kw) -> Path:
    """Write a one-colour image (format from the extension), creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, **kw)
    return path


def save_noise(path: Path, size: int = 32, **options) -> Path:
    """An image that compresses badly, so that cutting the file in half truncates pixel data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, **options)
    return path


def truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def make_tree(root: Path, layout: dict[str, int]) -> None:
    """``{"train/a": 3}`` -> three small PNGs of distinct colours in root/train/a."""
    for folder, count in layout.items():
        for i in range(count):
            save(root / folder / f"{i:02d}.png", color=(i * 20 % 256, 100, 200))


def assert_close_rgb(actual, expected, tolerance=8):
    assert all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)), actual


# --------------------------------------------------------------------------- files and classes


def test_is_hidden_names():
    hidden = [".ipynb_checkpoints", ".DS_Store", "Thumbs.db", "__MACOSX", "._img.jpg", ".git"]
    assert all(is_hidden(Path("data/train") / name) for name in hidden)
    assert not any(is_hidden(name) for name in ["ants", "1", "img_.jpg", "a__b"])


def test_find_classes_is_the_sorted_union_of_all_splits(tmp_path):
    make_tree(tmp_path, {"train/1": 1, "train/10": 1, "train/2": 1, "valid/1": 1, "valid/3": 1})
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "valid" / "__MACOSX").mkdir()
    # String order, as torchvision's ImageFolder: the '1', '10', '2' pitfall is real.
    assert find_classes(tmp_path / "train", tmp_path / "valid") == ["1", "10", "2", "3"]


def test_find_classes_without_classes_explains_the_layout(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"train/<class>/image\.jpg"):
        find_classes(tmp_path / "train", tmp_path / "missing")


def test_one_mapping_when_valid_misses_a_class(tmp_path, capsys):
    make_tree(tmp_path, {"train/ants": 2, "train/bees": 2, "train/wasps": 2})
    make_tree(tmp_path, {"val/ants": 1, "val/wasps": 1})
    train_ds, valid_ds = build_datasets(tmp_path, None, None)
    assert train_ds.classes == valid_ds.classes == ["ants", "bees", "wasps"]
    assert train_ds.class_to_idx == valid_ds.class_to_idx
    # Each valid label must point at the folder the image came from (no shift to 0, 1).
    for path, target in valid_ds.samples:
        assert valid_ds.classes[target] == path.parent.name
    assert sorted(valid_ds.targets) == [0, 2]
    assert class_counts(valid_ds) == {"ants": 1, "bees": 0, "wasps": 1}


def test_hidden_folders_and_files_are_ignored(tmp_path):
    make_tree(tmp_path, {"train/a": 2})
    save(tmp_path / "train" / ".ipynb_checkpoints" / "x.png")  # hidden "class"
    save(tmp_path / "train" / "a" / ".ipynb_checkpoints" / "y.png")  # hidden sub-folder
    save(tmp_path / "train" / "a" / "._z.png")  # macOS resource fork
    (tmp_path / "train" / "a" / ".DS_Store").write_bytes(b"\0")
    save(tmp_path / "train" / "a" / "UPPER.JPG")  # extensions are case-insensitive
    dataset = ImageFolderDataset(tmp_path / "train")
    assert dataset.classes == ["a"]
    assert sorted(p.name for p, _ in dataset.samples) == ["00.png", "01.png", "UPPER.JPG"]


# --------------------------------------------------------------------------- one image


@pytest.mark.parametrize(
    ("mode", "color", "suffix", "expected"),
    [
        ("RGBA", (0, 0, 0, 0), ".png", WHITE),  # transparent black -> white, not black
        ("RGBA", (255, 0, 0, 255), ".png", RED),
        ("LA", (0, 0), ".png", WHITE),
        ("L", 77, ".png", (77, 77, 77)),
        ("1", 1, ".png", WHITE),
        ("CMYK", (0, 255, 255, 0), ".jpg", RED),
        ("RGB", RED, ".webp", RED),
        ("RGB", BLUE, ".bmp", BLUE),
        ("RGB", BLUE, ".tiff", BLUE),
    ],
)
def test_every_mode_loads_as_rgb(tmp_path, mode, color, suffix, expected):
    path = save(tmp_path / f"img{suffix}", mode, color=color)
    image = load_image(path)
    assert image.mode == "RGB"
    assert_close_rgb(image.getpixel((4, 4)), expected)


def _palette_image(transparent_index: int | None) -> Image.Image:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)  # index 0 black, index 1 green
    image.paste(1, (0, 0, 4, 8))
    if transparent_index is not None:
        image.info["transparency"] = transparent_index
    return image


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_images_with_transparency_composite_on_white(tmp_path, suffix):
    path = tmp_path / f"p{suffix}"
    _palette_image(transparent_index=0).save(path, transparency=0)
    image = load_image(path)
    assert image.getpixel((6, 4)) == WHITE  # the transparent (black) index
    assert image.getpixel((1, 4)) == (0, 200, 0)


def test_palette_image_without_transparency_keeps_its_colours(tmp_path):
    path = tmp_path / "p.png"
    _palette_image(transparent_index=None).save(path)
    image = load_image(path)
    assert (image.getpixel((1, 4)), image.getpixel((6, 4))) == ((0, 200, 0), (0, 0, 0))


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "depth16.png"
    Image.fromarray(np.full((8, 8), 32896, dtype=np.uint16)).save(path)  # 32896 / 257 = 128
    assert Image.open(path).mode.startswith("I")
    assert load_image(path).getpixel((2, 2)) == (128, 128, 128)


@pytest.mark.parametrize(
    ("array", "gray"),
    [
        (np.full((4, 4), 65535, dtype=np.int32), 255),  # "I" holding 16-bit data
        (np.full((4, 4), 100, dtype=np.int32), 100),  # "I" holding 8-bit data
        (np.full((4, 4), 0.5, dtype=np.float32), 128),  # "F" in [0, 1]
    ],
)
def test_32_bit_and_float_images_become_sensible_gray(array, gray):
    assert to_rgb(Image.fromarray(array)).getpixel((0, 0)) == (gray, gray, gray)


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 4, 20))  # a red stripe on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    image = load_image(path)
    assert image.size == (20, 40)
    assert_close_rgb(image.getpixel((10, 1)), RED, tolerance=40)  # left edge is now the top
    assert_close_rgb(image.getpixel((10, 38)), BLUE, tolerance=40)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: truncate(save_noise(p)), "truncated or corrupt"),
        (lambda p: p.write_text("<html>not an image</html>"), "not an image"),
    ],
    ids=["zero-byte", "truncated", "text-file"],
)
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_unreadable_files_are_named_with_a_fix(tmp_path, make, reason, suffix):
    path = tmp_path / "class a" / f"broken{suffix}"  # a space in the path, on purpose
    path.parent.mkdir()
    make(path)
    with pytest.raises(UnreadableImageError, match=reason) as caught:
        load_image(path)
    assert isinstance(caught.value, ValueError)
    assert str(path) in str(caught.value) and "Fix:" in str(caught.value)
    assert caught.value.path == path


@pytest.mark.parametrize("limit", [3000, 1000], ids=["bomb-warning", "bomb-error"])
def test_decompression_bombs_are_refused_without_changing_pil(tmp_path, monkeypatch, limit):
    path = save(tmp_path / "huge.png", size=(64, 64))  # 4096 pixels
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(UnreadableImageError, match="too large") as caught:
        load_image(path)
    assert "MAX_IMAGE_PIXELS" in str(caught.value) and str(path) in str(caught.value)
    assert PIL.Image.MAX_IMAGE_PIXELS == limit


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        load_image(tmp_path / "nope.jpg")


# --------------------------------------------------------------------------- subsets and splits


def test_per_class_is_balanced_deterministic_and_seeded(tmp_path):
    make_tree(tmp_path, {"a": 10, "b": 10, "c": 2})

    def chosen(seed: int) -> list[tuple[Path, int]]:
        return ImageFolderDataset(tmp_path, per_class=3, seed=seed).samples

    assert class_counts(ImageFolderDataset(tmp_path, per_class=3)) == {"a": 3, "b": 3, "c": 2}
    assert chosen(0) == chosen(0)
    assert chosen(0) != chosen(1)
    with pytest.raises(ValueError, match="per_class"):
        ImageFolderDataset(tmp_path, per_class=0)


def _samples(per_class: dict[int, int]) -> list[tuple[Path, int]]:
    return [(Path(f"c{t}/{i}.png"), t) for t, n in per_class.items() for i in range(n)]


def test_split_samples_is_seeded_disjoint_covering_and_stratified():
    samples = _samples({0: 20, 1: 5, 2: 2, 3: 1})
    train, valid = split_samples(samples, validation_split=0.2, seed=123)
    assert (train, valid) == split_samples(samples, validation_split=0.2, seed=123)
    assert not set(train) & set(valid)
    assert sorted(train + valid) == sorted(samples)
    valid_per_class = {t: sum(1 for _, v in valid if v == t) for t in range(4)}
    assert valid_per_class == {0: 4, 1: 1, 2: 1, 3: 0}  # >= 1 where possible, 20% of 20
    assert split_samples(samples, 0.2, seed=124) != (train, valid)


def test_split_samples_rejects_a_bad_fraction():
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_samples(_samples({0: 4}), validation_split=1.5)


@pytest.mark.parametrize("folder", ["", "train"], ids=["classes-in-root", "train-only"])
def test_build_datasets_splits_a_single_folder(tmp_path, capsys, folder):
    make_tree(tmp_path / folder, {"cats": 10, "dogs": 5})
    train_ds, valid_ds = build_datasets(tmp_path, None, None, validation_split=0.2, split_seed=7)
    printed = capsys.readouterr().out
    assert (
        printed.count("\n") == 1 and "validation_split=0.2" in printed and "split_seed=7" in printed
    )
    assert train_ds.classes == valid_ds.classes == ["cats", "dogs"]
    assert not set(train_ds.samples) & set(valid_ds.samples)
    assert len(train_ds) + len(valid_ds) == 15
    assert class_counts(valid_ds) == {"cats": 2, "dogs": 1}


def test_build_datasets_rejects_valid_without_train(tmp_path):
    make_tree(tmp_path, {"valid/a": 1})
    with pytest.raises(DatasetLayoutError, match="no train/ folder"):
        build_datasets(tmp_path, None, None)


def test_verify_drops_unreadable_files_and_names_them(tmp_path, capsys):
    make_tree(tmp_path, {"train/a": 2, "train/b": 2, "valid/a": 1, "valid/b": 1})
    broken = [
        truncate(save_noise(tmp_path / "train" / "a" / "cut.jpg")),  # verify() alone misses it
        tmp_path / "train" / "b" / "page.jpg",
        tmp_path / "valid" / "a" / "empty.png",
    ]
    broken[1].write_text("<html>")
    broken[2].write_bytes(b"")
    unchecked = build_datasets(tmp_path, None, None, verify=False)
    assert [len(ds) for ds in unchecked] == [6, 3]
    train_ds, valid_ds = build_datasets(tmp_path, None, None)
    report = capsys.readouterr().out
    assert [len(train_ds), len(valid_ds)] == [4, 2]
    assert all(str(path) in report for path in broken)
    assert f"python -m coursekit check-data {tmp_path}" in report
    assert [load_image(p).mode for p, _ in train_ds.samples + valid_ds.samples] == ["RGB"] * 6


#: Every image extension the course reads, and the options that make Pillow write it.
FORMATS = {
    ".jpg": {},
    ".jpeg": {},
    ".png": {},
    ".bmp": {},
    ".gif": {},
    ".webp": {},
    ".webp-lossless": {"lossless": True},
    ".tif": {},
    ".tiff-lzw": {"compression": "tiff_lzw"},
}


@pytest.mark.parametrize("image_format", FORMATS)
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # a cut TIFF's EXIF is cut too
def test_verify_drops_a_truncated_file_of_every_format(tmp_path, capsys, image_format):
    suffix = image_format.split("-")[0]
    make_tree(tmp_path, {"train/a": 2, "valid/a": 1})
    cut = tmp_path / "train" / "a" / f"cut{suffix}"
    whole = tmp_path / "train" / "a" / f"whole{suffix}"
    for path in (cut, whole):
        save_noise(path, **FORMATS[image_format])
    truncate(cut)
    train_ds, _ = build_datasets(tmp_path, None, None)
    assert str(cut) in capsys.readouterr().out
    assert sorted(path.name for path, _ in train_ds.samples) == ["00.png", "01.png", whole.name]
    assert all(image.mode == "RGB" for image, _ in train_ds)  # what is kept really loads


def test_adding_a_class_leaves_the_split_of_the_other_classes_alone(tmp_path, capsys):
    make_tree(tmp_path, {"cats": 10, "dogs": 10})

    def split_of(names: set[str]) -> tuple[set[Path], set[Path]]:
        train_ds, valid_ds = build_datasets(tmp_path, None, None, validation_split=0.3)
        return tuple(
            {path for path, target in ds.samples if ds.classes[target] in names}
            for ds in (train_ds, valid_ds)
        )

    before = split_of({"cats", "dogs"})
    make_tree(tmp_path, {"bats": 10})  # sorts first: every other class index moves up by one
    assert split_of({"cats", "dogs"}) == before
    assert not before[0] & before[1]


def test_adding_a_class_leaves_the_per_class_subset_of_the_others_alone(tmp_path):
    make_tree(tmp_path, {"cats": 10, "dogs": 10})
    before = set(ImageFolderDataset(tmp_path, per_class=3).samples)
    make_tree(tmp_path, {"bats": 10})
    after = ImageFolderDataset(tmp_path, per_class=3)
    kept = {(path, target - 1) for path, target in after.samples if path.parent.name != "bats"}
    assert kept == before


def test_split_does_not_depend_on_listing_order_even_where_paths_ignore_case():
    # Windows paths compare without case: sorting them alone would keep the listing order.
    samples = [(PureWindowsPath(f"C:/data/Cats/{name}.png"), 0) for name in "AaBbCcDdEe"]
    assert split_samples(samples, 0.2, seed=1) == split_samples(samples[::-1], 0.2, seed=1)


def test_an_empty_valid_folder_suggests_removing_it_so_train_is_split(tmp_path, capsys):
    make_tree(tmp_path, {"train/a": 3, "train/b": 3})
    (tmp_path / "valid").mkdir()
    build_datasets(tmp_path, None, None)
    printed = capsys.readouterr().out
    assert f"{tmp_path / 'valid'} has no readable images" in printed
    assert "Remove that folder" in printed and "delete the class folders" not in printed
    assert printed.count("\n") == 1


def test_a_file_instead_of_a_dataset_folder_is_named_as_a_file(tmp_path):
    archive = tmp_path / "pets.zip"
    archive.write_bytes(b"PK")
    with pytest.raises(DatasetLayoutError, match="it is a file, not a folder.*extract it first"):
        build_datasets(archive, None, None)


def test_a_class_without_training_images_is_warned_about(tmp_path, capsys):
    make_tree(tmp_path, {"train/a": 2, "valid/a": 1, "valid/b": 1})
    build_datasets(tmp_path, None, None)
    assert "WARNING" in capsys.readouterr().out
    train_ds, _ = build_datasets(tmp_path, None, None)
    assert class_counts(train_ds) == {"a": 2, "b": 0}


def test_per_class_limits_in_build_datasets(tmp_path):
    make_tree(tmp_path, {"train/a": 6, "train/b": 6, "valid/a": 4, "valid/b": 4})
    train_ds, valid_ds = build_datasets(tmp_path, None, None, train_per_class=4, valid_per_class=2)
    assert class_counts(train_ds) == {"a": 4, "b": 4}
    assert class_counts(valid_ds) == {"a": 2, "b": 2}
    assert "8 in 2 classes" in repr(train_ds)


# --------------------------------------------------------------------------- loaders


@pytest.fixture
def tensor_datasets(tmp_path):
    make_tree(tmp_path, {"train/a": 5, "train/b": 5, "valid/a": 3, "valid/b": 2})
    return build_datasets(tmp_path, train_transforms(16, 20), eval_transforms(16, 20))


def test_loaders_yield_batches_of_the_right_shape(tensor_datasets):
    loaders = make_loaders(*tensor_datasets, batch_size=4, seed=3)
    images, labels = next(iter(loaders["train"]))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert sum(len(y) for _, y in loaders["valid"]) == 5
    assert torch.equal(torch.cat([y for _, y in loaders["valid"]]), torch.tensor([0, 0, 0, 1, 1]))


def test_train_loader_order_is_shuffled_and_repeats_with_the_seed(tensor_datasets):
    def order(seed: int) -> list[int]:
        train_ds = TensorDataset(torch.arange(len(tensor_datasets[0])))
        return torch.cat(
            [b[0] for b in make_loaders(train_ds, train_ds, 10, seed=seed)["train"]]
        ).tolist()

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == list(range(10))


def test_dataset_pickles_and_works_with_worker_processes(tensor_datasets):
    train_ds, valid_ds = tensor_datasets
    copy = pickle.loads(pickle.dumps(valid_ds))
    assert copy.samples == valid_ds.samples
    assert torch.equal(copy[0][0], valid_ds[0][0])
    loaders = make_loaders(train_ds, valid_ds, batch_size=5, num_workers=1)
    assert not loaders["train"].persistent_workers  # restarted, and so re-seeded, every epoch
    assert [len(y) for _, y in loaders["valid"]] == [5]


class RandomShade:
    """An augmentation drawn from torch's RNG: in a worker process, from the worker's seed."""

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return transforms.functional.to_tensor(image) * torch.rand(1)


def fit_tiny(train_ds, valid_ds, epochs: int, checkpoint: Path, resume: bool = False):
    """A fresh tiny model and fresh loaders (num_workers=2), as a new session would build them."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loaders = make_loaders(train_ds, valid_ds, batch_size=2, num_workers=2, seed=3)
    return fit(
        model,
        loaders,
        torch.nn.CrossEntropyLoss(),
        optimizer,
        epochs=epochs,
        device="cpu",
        progress=False,
        checkpoint_path=checkpoint,
        resume_from=last_checkpoint_path(checkpoint) if resume else None,
    )


def test_resuming_with_worker_processes_repeats_the_uninterrupted_run(tmp_path):
    make_tree(tmp_path / "data", {"train/a": 4, "train/b": 4, "valid/a": 2, "valid/b": 2})
    shade = transforms.Compose([transforms.Resize((4, 4)), RandomShade()])
    datasets = build_datasets(tmp_path / "data", shade, shade)

    straight = fit_tiny(*datasets, epochs=2, checkpoint=tmp_path / "straight.pt")
    fit_tiny(*datasets, epochs=1, checkpoint=tmp_path / "resumed.pt")
    resumed = fit_tiny(*datasets, epochs=2, checkpoint=tmp_path / "resumed.pt", resume=True)

    assert straight.train_loss[0] != straight.train_loss[1]  # the augmentation does vary
    assert (resumed.train_loss, resumed.train_acc) == (straight.train_loss, straight.train_acc)
    assert (resumed.valid_loss, resumed.valid_acc) == (straight.valid_loss, straight.valid_acc)


def test_empty_training_set_is_refused(tmp_path):
    empty = TensorDataset(torch.zeros(0))
    with pytest.raises(ValueError, match="empty"):
        make_loaders(empty, empty, batch_size=2)


# --------------------------------------------------------------------------- label names


def test_label_names_follow_class_index_order_not_numeric_order(tmp_path):
    make_tree(tmp_path, {"1": 1, "2": 1, "10": 1})
    classes = ImageFolderDataset(tmp_path).classes
    label_map = tmp_path / "cat_to_name.json"
    label_map.write_text(json.dumps({"1": "rose", "2": "tulip", "10": "daisy"}))
    assert classes == ["1", "10", "2"]
    assert load_label_names(label_map, classes) == ["rose", "daisy", "tulip"]


def test_label_names_keep_folder_names_for_missing_classes(tmp_path, capsys):
    label_map = tmp_path / "names.json"
    label_map.write_text(json.dumps({"1": "rose"}))
    assert load_label_names(label_map, ["1", "7"]) == ["rose", "7"]
    warning = capsys.readouterr().out
    assert warning.count("\n") == 1 and "7" in warning and str(label_map) in warning


def test_readable_class_names_come_from_the_label_map_next_to_the_splits(tmp_path):
    (tmp_path / "cat_to_name.json").write_text(
        json.dumps({"1": "rose", "2": "tulip", "10": "daisy"})
    )
    assert readable_class_names(tmp_path, ["1", "10", "2"]) == ["rose", "daisy", "tulip"]


def test_readable_class_names_are_the_folder_names_without_a_label_map(tmp_path):
    classes = ("ants", "bees")
    (tmp_path / "names.json").write_text(json.dumps({"ants": "not this file"}))
    assert readable_class_names(tmp_path, classes) == ["ants", "bees"]


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_bad_label_map_names_the_file(tmp_path, content):
    label_map = tmp_path / "cat_to_name.json"
    label_map.write_text(content)
    with pytest.raises(ValueError, match="cat_to_name.json"):
        load_label_names(label_map, ["1"])


# --------------------------------------------------------------------------- transforms


@pytest.fixture
def photo() -> Image.Image:
    pixels = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("resize_size", [None, 40])
def test_train_transforms_give_normalized_crops(photo, resize_size):
    pipeline = train_transforms(32, resize_size)
    assert pipeline(photo).shape == (3, 32, 32)
    assert normalization_of(pipeline) == (IMAGENET_MEAN, IMAGENET_STD)
    assert any(isinstance(t, transforms.RandomGrayscale) for t in pipeline.transforms)


def test_vertical_flip_can_be_turned_off():
    def has_vertical_flip(pipeline) -> bool:
        return any(isinstance(t, transforms.RandomVerticalFlip) for t in pipeline.transforms)

    assert has_vertical_flip(train_transforms(32)) and not has_vertical_flip(
        train_transforms(32, vertical_flip=False)
    )


def test_eval_transforms_are_deterministic(photo):
    pipeline = eval_transforms(32, 40, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    first, second = pipeline(photo), pipeline(photo)
    assert first.shape == (3, 32, 32) and torch.equal(first, second)
    assert normalization_of(pipeline) == ((0.5,) * 3, (0.25,) * 3)


def test_crop_larger_than_resize_is_refused():
    with pytest.raises(ValueError, match="resize_size"):
        eval_transforms(64, 32)


def test_eval_transforms_reproduce_the_resnet_preset(photo):
    # Resize 256 -> CenterCrop 224 -> ImageNet normalization is what the preset does, with
    # the same resampling and arithmetic: the tensors are equal, not just close.
    ours = eval_transforms(224, 256)(photo)
    assert torch.equal(ours, ResNet18_Weights.DEFAULT.transforms()(photo))


def test_normalization_of_finds_nested_and_preset_normalization():
    nested = transforms.Compose([transforms.Compose([transforms.Normalize((0.1,), (0.2,))])])
    assert normalization_of(nested) == ((0.1,), (0.2,))
    assert normalization_of(ResNet18_Weights.DEFAULT.transforms()) == (
        IMAGENET_MEAN,
        IMAGENET_STD,
    )
    assert normalization_of(transforms.Compose([transforms.ToTensor()])) is None


# --------------------------------------------------------------------------- image cache


@pytest.fixture
def photo_tree(tmp_path) -> Path:
    """Noisy JPEGs and PNGs of several sizes and aspect ratios, in train/ and valid/."""
    sizes = [(90, 120), (120, 90), (200, 50), (41, 37)]
    for split in ("train", "valid"):
        for i, (width, height) in enumerate(sizes):
            pixels = np.random.default_rng(i).integers(0, 256, (height, width, 3), dtype=np.uint8)
            folder = tmp_path / split / "ab"[i % 2]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / f"{i}.{'jpg' if i % 2 else 'png'}")
    return tmp_path


def epochs_of_items(dataset, epochs: int = 3) -> list[list[torch.Tensor]]:
    """Every item of ``epochs`` passes, torch seeded by the epoch, as a loader's seed would."""
    items = []
    for epoch in range(epochs):
        torch.manual_seed(epoch)
        items.append([dataset[i][0] for i in range(len(dataset))])
    return items


def test_cached_items_equal_the_uncached_ones_bit_for_bit(photo_tree):
    pipelines = train_transforms(32, 40), eval_transforms(32, 40)
    cached = build_datasets(photo_tree, *pipelines, image_cache_mib=16)
    plain = build_datasets(photo_tree, *pipelines, image_cache_mib=0)
    for cached_ds, plain_ds in zip(cached, plain, strict=True):
        expected, got = epochs_of_items(plain_ds), epochs_of_items(cached_ds)
        assert len(cached_ds._cache.images) == len(cached_ds) and not plain_ds._cache.images
        for expected_epoch, got_epoch in zip(expected, got, strict=True):
            assert all(map(torch.equal, expected_epoch, got_epoch))
    train_epochs = epochs_of_items(cached[0])
    assert not all(map(torch.equal, train_epochs[0], train_epochs[1]))  # still augmented


def test_cached_eval_items_equal_plain_torchvision(photo_tree):
    _, valid_ds = build_datasets(photo_tree, None, eval_transforms(32, 40), image_cache_mib=16)
    torchvision_pipeline = transforms.Compose(
        [
            transforms.Resize(40),
            transforms.CenterCrop(32),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    for _ in range(2):  # the first pass fills the cache, the second reads it
        for (path, _), (tensor, _) in zip(valid_ds.samples, valid_ds, strict=True):
            assert torch.equal(tensor, torchvision_pipeline(load_image(path)))


def test_photos_are_decoded_in_the_first_epoch_only(photo_tree, monkeypatch):
    decoded: list[Path] = []

    def counting_load_image(path):
        decoded.append(path)
        return load_image(path)

    monkeypatch.setattr("coursekit.data.load_image", counting_load_image)
    datasets = build_datasets(photo_tree, train_transforms(32, 40), eval_transforms(32, 40))
    for dataset in datasets:
        epochs_of_items(dataset, epochs=1)
        assert len(decoded) == len(dataset)
        epochs_of_items(dataset, epochs=2)
        assert len(decoded) == len(dataset)
        decoded.clear()


def test_the_setting_turns_the_cache_off(photo_tree, monkeypatch):
    monkeypatch.setenv("COURSE_IMAGE_CACHE_MIB", "0")
    train_ds, _ = build_datasets(photo_tree, train_transforms(32, 40), None)
    epochs_of_items(train_ds, epochs=1)
    assert train_ds._cache.budget == 0 and not train_ds._cache.images
    with pytest.raises(ValueError, match="image_cache_mib=-1 must be at least 0"):
        ImageFolderDataset(photo_tree / "train", image_cache_mib=-1)


def test_a_changed_transform_or_a_replaced_file_is_not_served_from_the_cache(photo_tree):
    _, valid_ds = build_datasets(photo_tree, None, eval_transforms(32, 40), image_cache_mib=16)
    epochs_of_items(valid_ds, epochs=1)
    valid_ds.transform = eval_transforms(16, 20)
    assert valid_ds[0][0].shape == (3, 16, 16)
    path = valid_ds.samples[0][0]
    Image.new("RGB", (50, 50), WHITE).save(path)
    os.utime(path, ns=(0, 10**18))  # a new modification time, even on a coarse clock
    assert torch.equal(valid_ds[0][0], eval_transforms(16, 20)(Image.new("RGB", (50, 50), WHITE)))


def test_untransformed_and_random_first_pipelines_are_not_cached(photo_tree):
    raw, _ = build_datasets(photo_tree, None, None, image_cache_mib=16)
    random_first, _ = build_datasets(photo_tree, train_transforms(32), None, image_cache_mib=16)
    for dataset in (raw, random_first):
        epochs_of_items(dataset, epochs=1)
        assert not dataset._cache.images


def test_the_budget_is_shared_by_every_cache_of_the_process(monkeypatch):
    monkeypatch.setattr(_ImageCache, "process_bytes", 0)
    image = Image.new("RGB", (10, 10))  # 400 bytes
    first, second = _ImageCache(budget=1000), _ImageCache(budget=1000)
    for cache in (first, second):
        for key in range(3):
            cache.add(key, image)
    assert (len(first.images), len(second.images), _ImageCache.process_bytes) == (2, 0, 800)
    del first  # a dataset that is gone gives its memory back
    second.add(0, image)
    assert _ImageCache.process_bytes == 400


def test_workers_read_the_cache_but_do_not_fill_it(photo_tree, monkeypatch):
    _, valid_ds = build_datasets(photo_tree, None, eval_transforms(32, 40), image_cache_mib=16)
    copy = pickle.loads(pickle.dumps(valid_ds))  # as a spawn-ed worker gets it: empty
    assert copy._cache.budget == valid_ds._cache.budget and not copy._cache.images
    monkeypatch.setattr("coursekit.data.get_worker_info", lambda: object())
    epochs_of_items(valid_ds, epochs=1)
    assert not valid_ds._cache.images


# --------------------------------------------------------------------------- statistics


def test_compute_mean_std_is_exact_over_all_pixels():
    generator = torch.Generator().manual_seed(0)
    # Different image sizes: a mean of per-image means would be wrong here.
    images = [
        torch.rand(3, size, size, generator=generator) * (i + 1) for i, size in enumerate([2, 5, 9])
    ]
    pixels = torch.cat([image.reshape(3, -1) for image in images], dim=1).double()
    expected_mean, expected_std = pixels.mean(1), pixels.std(1, unbiased=False)
    mean, std = compute_mean_std([(image, 0) for image in images])
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), expected_mean)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), expected_std)


def test_compute_mean_std_from_a_loader_equals_the_dataset_result():
    dataset = TensorDataset(torch.rand(7, 3, 4, 4), torch.zeros(7))
    from_loader = compute_mean_std(DataLoader(dataset, batch_size=3))
    from_dataset = compute_mean_std(dataset)
    assert np.allclose(from_loader, from_dataset)


def test_compute_mean_std_needs_tensors(tmp_path):
    make_tree(tmp_path, {"a": 1})
    with pytest.raises(TypeError, match="ToTensor"):
        compute_mean_std(ImageFolderDataset(tmp_path))


def test_class_counts_keep_class_order_and_zeros(tmp_path):
    make_tree(tmp_path, {"b": 2, "a": 3})
    dataset = ImageFolderDataset(tmp_path, classes=["a", "b", "c"])
    assert list(class_counts(dataset).items()) == [("a", 3), ("b", 2), ("c", 0)]
    assert class_counts(Subset(dataset, [0, 4])) == {"a": 1, "b": 1, "c": 0}


def test_class_counts_of_nested_subsets_and_concatenations_match_imagefolder(tmp_path):
    make_tree(tmp_path, {"b": 2, "a": 3})
    ours, theirs = ImageFolderDataset(tmp_path), ImageFolder(str(tmp_path))
    nested = Subset(Subset(ours, [0, 1, 3, 4]), [1, 2, 3])  # a, b, b
    both = ConcatDataset([ours, Subset(theirs, [0])])
    assert class_counts(nested) == {"a": 1, "b": 2}
    assert class_counts(both) == {"a": 4, "b": 2}
    assert class_counts(Subset(both, [0, 5])) == {"a": 2, "b": 0}


def test_class_counts_explain_what_they_need(tmp_path):
    make_tree(tmp_path, {"a": 1, "b": 1})
    with pytest.raises(TypeError, match=r"\.classes and \.targets.*TensorDataset"):
        class_counts(Subset(TensorDataset(torch.zeros(2)), [0]))
    other = ImageFolderDataset(tmp_path, classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="different class lists"):
        class_counts(ConcatDataset([ImageFolderDataset(tmp_path), other]))


# --------------------------------------------------------------------------- find_dataset


def settings_for(tmp_path: Path, dataset: str | None = None):
    # dataset is always passed, so a COURSE_DATASET in the environment cannot leak in.
    return get_settings("full", data_root=tmp_path, dataset=dataset)


def test_find_dataset_returns_a_present_dataset(tmp_path):
    make_tree(tmp_path, {"flowers102/train/1": 1})
    assert find_dataset("flowers102", settings_for(tmp_path)) == tmp_path / "flowers102"


def test_find_dataset_falls_back_to_synthetic_with_one_line(tmp_path, capsys):
    make_tree(tmp_path, {"synthetic/train/1": 1})
    assert find_dataset("flowers102", settings_for(tmp_path)) == tmp_path / "synthetic"
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and "python -m data_scripts get flowers102" in printed


def test_find_dataset_required_raises_with_the_fetch_command(tmp_path):
    make_tree(tmp_path, {"synthetic/train/1": 1})
    (tmp_path / "flowers102" / "valid" / "1").mkdir(parents=True)  # half there is not there
    with pytest.raises(DatasetMissingError, match="python -m data_scripts get flowers102"):
        find_dataset("flowers102", settings_for(tmp_path), required=True)


def test_find_dataset_without_synthetic_says_how_to_make_it(tmp_path):
    for name in ["synthetic", "hymenoptera"]:
        with pytest.raises(DatasetMissingError, match="python -m data_scripts synthetic") as info:
            find_dataset(name, settings_for(tmp_path))
        assert "(or:" not in str(info.value)  # one flat sentence, no nested alternatives
    assert str(info.value).endswith(
        "Run python -m data_scripts get hymenoptera, or python -m data_scripts synthetic for "
        "the offline set."
    )


def test_settings_dataset_wins_by_name_or_path(tmp_path):
    make_tree(tmp_path, {"hymenoptera/train/ants": 1, "flowers102/train/1": 1})
    own = tmp_path / "my photos"
    make_tree(own, {"cats": 1})
    chosen = settings_for(tmp_path, dataset="hymenoptera")
    assert find_dataset("flowers102", chosen, required=True) == tmp_path / "hymenoptera"
    assert find_dataset("flowers102", settings_for(tmp_path, dataset=str(own))) == own
    with pytest.raises(DatasetMissingError, match="COURSE_DATASET"):
        find_dataset("flowers102", settings_for(tmp_path, dataset="nosuchset"))


def test_dataset_status_counts_present_sets_and_names_the_command_for_missing(tmp_path):
    make_tree(tmp_path, {"synthetic/train/1": 2, "synthetic/valid/1": 1})
    statuses = {s.name: s for s in dataset_status(settings_for(tmp_path))}
    assert list(statuses) == ["synthetic", "hymenoptera", "flowers102"]
    assert statuses["synthetic"].present and statuses["synthetic"].images == 3
    assert not statuses["hymenoptera"].present
    assert "python -m data_scripts get hymenoptera" in str(statuses["hymenoptera"])
    assert "present" in str(statuses["synthetic"])
