"""data_scripts.synthetic: the generated offline dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_scripts_helpers import snapshot
from PIL import Image
from torchvision.datasets import ImageFolder

import data_scripts.synthetic as synthetic
from data_scripts.errors import DataScriptError
from data_scripts.layout import check_layout
from data_scripts.registry import dataset_spec
from data_scripts.synthetic import SYNTHETIC_CLASS_NAMES, draw_sample, make_synthetic

TRAIN, VALID = 4, 2


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("root"), TRAIN, VALID, seed=7)


def all_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".png", ".jpg"))


def test_classes_are_numbered_folders_with_a_label_map(dataset: Path) -> None:
    numbers = [str(n) for n in range(1, 13)]
    for split, count in (("train", TRAIN), ("valid", VALID)):
        folder = ImageFolder(str(dataset / split))
        # ImageFolder sorts folder names as strings: the '1', '10', '11', '12', '2' pitfall.
        assert folder.classes == sorted(numbers)
        assert folder.classes[:5] == ["1", "10", "11", "12", "2"]
        assert len(folder) == 12 * count
    label_map = json.loads((dataset / "cat_to_name.json").read_text())
    assert label_map == {str(i + 1): name for i, name in enumerate(SYNTHETIC_CLASS_NAMES)}
    assert check_layout(dataset, dataset_spec("synthetic")).ok


def test_modes_formats_and_sizes_vary(dataset: Path) -> None:
    seen_modes, formats_by_mode, sizes = set(), set(), set()
    for path in all_images(dataset):
        with Image.open(path) as image:
            seen_modes.add(image.mode)
            formats_by_mode.add((image.mode, image.format))
            sizes.add(image.size)
    assert seen_modes == {"RGB", "L", "RGBA", "P"}
    formats = {fmt for _, fmt in formats_by_mode}
    assert formats == {"JPEG", "PNG"}
    # JPEG cannot hold transparency or a palette: only RGB and L images are JPEG.
    assert {mode for mode, fmt in formats_by_mode if fmt == "JPEG"} <= {"RGB", "L"}
    assert len(sizes) > len(all_images(dataset)) // 2
    assert any(width != height for width, height in sizes)
    assert all(48 <= side <= 320 for size in sizes for side in size)


@pytest.mark.parametrize("class_index", range(len(SYNTHETIC_CLASS_NAMES)))
def test_every_class_draws_something_that_stands_out_in_greyscale(class_index: int) -> None:
    for seed in range(3):
        image, mask = draw_sample(class_index, np.random.default_rng(seed))
        grey = np.asarray(image.convert("L"), dtype=np.float64)
        drawn = np.asarray(mask) > 127
        assert 0.01 < drawn.mean() < 0.99, "the drawing must cover part of the image"
        assert abs(grey[drawn].mean() - grey[~drawn].mean()) > 30


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path, dataset: Path) -> None:
    again = make_synthetic(tmp_path / "again", TRAIN, VALID, seed=7)
    assert snapshot(again) == snapshot(dataset)
    other = make_synthetic(tmp_path / "other", TRAIN, VALID, seed=8)
    assert snapshot(other) != snapshot(dataset)


def test_second_run_does_nothing_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = make_synthetic(tmp_path, 1, 1, seed=0)
    before = {p: p.stat().st_mtime_ns for p in target.rglob("*")}
    capsys.readouterr()
    assert make_synthetic(tmp_path, 1, 1, seed=0) == target
    assert "already complete" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*")} == before


def test_other_parameters_rebuild_the_folder(tmp_path: Path) -> None:
    target = make_synthetic(tmp_path, 1, 1, seed=0)
    make_synthetic(tmp_path, 2, 1, seed=0)
    assert len(list((target / "train" / "1").iterdir())) == 2
    assert json.loads((target / ".complete").read_text())["train_per_class"] == 2


def test_folder_not_made_by_the_command_needs_force(tmp_path: Path) -> None:
    foreign = tmp_path / "synthetic" / "train" / "1"
    foreign.mkdir(parents=True)
    with pytest.raises(DataScriptError, match="--force"):
        make_synthetic(tmp_path, 1, 1)
    assert foreign.is_dir()
    make_synthetic(tmp_path, 1, 1, force=True)
    assert check_layout(tmp_path / "synthetic", dataset_spec("synthetic")).ok


def _fail_after(calls: int, monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = synthetic.save_sample
    made = []

    def failing_save(*args, **kwargs):
        if len(made) == calls:
            raise KeyboardInterrupt  # like a learner pressing Ctrl-C mid-way
        made.append(1)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(synthetic, "save_sample", failing_save)


def test_interrupted_generation_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_after(5, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic(tmp_path, 2, 1)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_rebuild_keeps_the_old_complete_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = make_synthetic(tmp_path, 1, 1, seed=0)
    before = snapshot(target)
    _fail_after(5, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic(tmp_path, 1, 1, seed=1, force=True)
    assert snapshot(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["synthetic"]


@pytest.mark.parametrize(("train", "valid", "seed"), [(0, 1, 0), (1, 0, 0), (1, 1, -1)])
def test_bad_parameters_are_refused(tmp_path: Path, train: int, valid: int, seed: int) -> None:
    with pytest.raises(DataScriptError):
        make_synthetic(tmp_path, train, valid, seed)
    assert not (tmp_path / "synthetic").exists()


def test_default_root_is_the_course_data_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COURSE_DATA_ROOT", str(tmp_path / "course data"))
    assert make_synthetic(None, 1, 1) == tmp_path / "course data" / "synthetic"
