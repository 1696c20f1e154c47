"""data_scripts.subset: seeded, class-balanced copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_scripts_helpers import make_image_tree, snapshot, write_image

import data_scripts.subset as subset
from data_scripts.errors import DataScriptError
from data_scripts.subset import make_subset

LAYOUT = {
    "train": {"1": 12, "2": 12, "10": 2},
    "valid": {"1": 5, "2": 5, "10": 1},
}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = make_image_tree(tmp_path / "source", LAYOUT)
    (root / "cat_to_name.json").write_text(json.dumps({"1": "a", "2": "b", "10": "c"}))
    # Clutter that must not travel: notebook checkpoints, macOS files, non-images.
    write_image(root / "train" / ".ipynb_checkpoints" / "img_0-checkpoint.jpg")
    write_image(root / "train" / "1" / ".ipynb_checkpoints" / "x.jpg")
    (root / "train" / "1" / ".DS_Store").write_bytes(b"\0")
    (root / "train" / "2" / "notes.txt").write_text("not an image")
    return root


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_copies_n_per_class_per_split_and_reports_shortfalls(source: Path, tmp_path: Path) -> None:
    report = make_subset(source, tmp_path / "mini", per_class=3, seed=0)
    assert report.copied == {"train": {"1": 3, "10": 2, "2": 3}, "valid": {"1": 3, "10": 1, "2": 3}}
    shortfalls = {(s.split, s.class_name, s.available) for s in report.shortfalls}
    assert shortfalls == {("train", "10", 2), ("valid", "10", 1)}
    assert "train/10: only 2 image(s)" in report.summary()
    for split, classes in report.copied.items():
        for class_name, count in classes.items():
            assert len(list((tmp_path / "mini" / split / class_name).iterdir())) == count


def test_copies_are_identical_files_from_the_source(source: Path, tmp_path: Path) -> None:
    make_subset(source, tmp_path / "mini", per_class=3, seed=0)
    for copy in (tmp_path / "mini").rglob("*.jpg"):
        original = source / copy.relative_to(tmp_path / "mini")
        assert copy.read_bytes() == original.read_bytes()


def test_hidden_and_non_image_files_stay_behind_label_map_comes_along(
    source: Path, tmp_path: Path
) -> None:
    make_subset(source, tmp_path / "mini", per_class=50, seed=0)
    mini = tmp_path / "mini"
    assert names(mini) == ["cat_to_name.json", "train", "valid"]
    assert names(mini / "train") == ["1", "10", "2"]
    assert len(names(mini / "train" / "1")) == 12
    assert "notes.txt" not in names(mini / "train" / "2")
    assert (mini / "cat_to_name.json").read_text() == (source / "cat_to_name.json").read_text()


def test_same_seed_same_choice_other_seed_other_choice(source: Path, tmp_path: Path) -> None:
    make_subset(source, tmp_path / "a", per_class=3, seed=1)
    make_subset(source, tmp_path / "b", per_class=3, seed=1)
    make_subset(source, tmp_path / "c", per_class=3, seed=2)
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    assert names(tmp_path / "a" / "train" / "1") != names(tmp_path / "c" / "train" / "1")


def test_flat_folder_of_classes(tmp_path: Path) -> None:
    flat = make_image_tree(tmp_path / "photos", {".": {"cats": 4, "dogs": 1}})
    report = make_subset(flat, tmp_path / "mini", per_class=2)
    assert names(tmp_path / "mini") == ["cats", "dogs"]
    assert report.copied == {"all": {"cats": 2, "dogs": 1}}


def test_existing_destination_needs_force(source: Path, tmp_path: Path) -> None:
    make_subset(source, tmp_path / "mini", per_class=1)
    with pytest.raises(DataScriptError, match="--force"):
        make_subset(source, tmp_path / "mini", per_class=2)
    make_subset(source, tmp_path / "mini", per_class=2, force=True)
    assert len(names(tmp_path / "mini" / "train" / "1")) == 2


@pytest.mark.parametrize(
    ("destination", "per_class", "message"),
    [("source/inside", 2, "inside"), ("mini", 0, "at least 1")],
)
def test_bad_arguments_are_refused(
    source: Path, tmp_path: Path, destination: str, per_class: int, message: str
) -> None:
    with pytest.raises(DataScriptError, match=message):
        make_subset(source, tmp_path / destination, per_class=per_class)


@pytest.mark.parametrize("destination", [".", "source"], ids=["holds-the-source", "is-the-source"])
def test_force_never_replaces_the_source_or_a_folder_holding_it(
    source: Path, tmp_path: Path, destination: str
) -> None:
    (tmp_path / "other dataset").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(DataScriptError, match="the source folder") as caught:
        make_subset(source, tmp_path / destination, per_class=1, force=True)
    assert "Fix: choose a new folder" in str(caught.value)
    assert snapshot(tmp_path) == before
    assert (tmp_path / "other dataset").is_dir()


def test_source_without_classes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataScriptError, match="no class folders"):
        make_subset(tmp_path / "empty", tmp_path / "mini", per_class=1)


def test_failure_mid_copy_leaves_no_destination(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copied = []
    real_copy = subset.shutil.copy2

    def failing_copy(src, dst, *args, **kwargs):
        if len(copied) == 4:
            raise OSError("disk full")
        copied.append(src)
        return real_copy(src, dst, *args, **kwargs)

    monkeypatch.setattr(subset.shutil, "copy2", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        make_subset(source, tmp_path / "mini", per_class=3)
    assert not (tmp_path / "mini").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mini")]
