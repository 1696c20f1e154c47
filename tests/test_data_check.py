"""Tests for check_dataset and the ``python -m coursekit`` commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import PIL.Image
import pytest
from PIL import Image

from coursekit.__main__ import main
from coursekit.config import describe_overrides
from coursekit.folders import check_dataset


def save(path: Path, size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (30, 60, 90)).save(path)
    return path


@pytest.fixture
def clean_dataset(tmp_path) -> Path:
    for folder in ["train/1", "train/2", "valid/1", "valid/2"]:
        save(tmp_path / folder / "a.png")
        save(tmp_path / folder / "b.png")
    (tmp_path / "cat_to_name.json").write_text("{}")  # files next to the splits are fine
    return tmp_path


@pytest.fixture
def messy_dataset(clean_dataset, monkeypatch) -> tuple[Path, dict[str, Path]]:
    """The root, and one file or folder of every problem kind keyed by the report's words."""
    root = clean_dataset
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 3000)  # 8x8 images stay fine
    problems = {
        "empty (0 bytes)": root / "train" / "1" / "zero.jpg",
        "truncated or corrupt": root / "train" / "1" / "cut.png",
        "not an image Pillow can read": root / "train" / "2" / "page.jpg",
        "not an image extension": root / "train" / "2" / "notes.txt",
        "too large": save(root / "valid" / "1" / "huge.png", size=(100, 100)),
        "empty class folder": root / "valid" / "3",
        "in valid/ but not in train/": root / "train" / "3",
        "in train/ but not in valid/": root / "valid" / "4",
        "outside any class folder": save(root / "train" / "stray.png"),
    }
    problems["empty (0 bytes)"].write_bytes(b"")
    cut = save(problems["truncated or corrupt"], size=(40, 40))
    cut.write_bytes(cut.read_bytes()[:60])
    problems["not an image Pillow can read"].write_text("<html>")
    problems["not an image extension"].write_text("notes")
    problems["empty class folder"].mkdir()
    save(root / "train" / "4" / "a.png")
    # Hidden clutter must be ignored, not reported.
    save(root / "train" / ".ipynb_checkpoints" / "x.png")
    (root / "train" / "1" / ".DS_Store").write_bytes(b"\0")
    (root / "valid" / "__MACOSX").mkdir()
    return root, problems


def test_a_clean_dataset_is_ok(clean_dataset):
    report = check_dataset(clean_dataset)
    assert report.ok and report.problems == []
    assert report.splits == ["train", "valid"]
    assert report.counts == {"train": {"1": 2, "2": 2}, "valid": {"1": 2, "2": 2}}
    assert "No problems found." in str(report)


def test_every_problem_kind_is_found_in_one_pass(messy_dataset):
    root, expected = messy_dataset
    report = check_dataset(root)
    assert not report.ok
    found = {(p.path, words) for p in report.problems for words in expected if words in p.problem}
    assert found == {(path, words) for words, path in expected.items()}
    assert len(report.problems) == len(expected)
    assert all(p.fix for p in report.problems)
    assert report.classes == ["1", "2", "3", "4"]
    assert report.counts["train"] == {"1": 2, "2": 2, "3": 0, "4": 1}
    assert report.counts["valid"] == {"1": 2, "2": 2, "3": 0, "4": 0}


def test_report_renders_counts_and_problems(messy_dataset):
    root, expected = messy_dataset
    text = str(check_dataset(root))
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line[:1] in "1234t"}
    assert rows["1"] == ["2", "2"] and rows["total"] == ["5", "4"]
    assert f"{len(expected)} problem(s):" in text
    assert all(str(path) in text for path in expected.values())


def test_a_single_folder_of_classes_is_one_split(tmp_path):
    save(tmp_path / "cats" / "a.png")
    save(tmp_path / "dogs" / "a.png")
    report = check_dataset(tmp_path)
    assert report.ok and report.counts == {"all": {"cats": 1, "dogs": 1}}


@pytest.mark.parametrize(
    ("layout", "words"),
    [
        ([], "no class folders"),
        (["valid/1"], "no train/ folder"),
        (["train/1", "valid/1", "val/1"], "second validation folder"),
    ],
)
def test_layout_problems(tmp_path, layout, words):
    for folder in layout:
        save(tmp_path / folder / "a.png")
    assert any(words in p.problem for p in check_dataset(tmp_path).problems)


def test_a_missing_folder_is_a_problem_not_a_crash(tmp_path):
    report = check_dataset(tmp_path / "nope")
    assert not report.ok and "does not exist" in report.problems[0].problem


def test_cli_check_data_exit_codes(clean_dataset, tmp_path, capsys):
    assert main(["check-data", str(clean_dataset)]) == 0
    assert "No problems found." in capsys.readouterr().out
    (clean_dataset / "train" / "1" / "zero.png").write_bytes(b"")
    assert main(["check-data", str(clean_dataset)]) == 1
    assert "zero.png" in capsys.readouterr().out
    assert main(["check-data", str(tmp_path / "nope")]) == 1


def test_cli_settings_prints_settings_and_overrides(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "smoke")
    monkeypatch.delenv("COURSE_IMAGE_SIZE", raising=False)
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "mode = smoke" in out and "image_size = 64" in out
    assert describe_overrides() in out and "COURSE_MODE=full|smoke" in out


def test_cli_reports_a_bad_setting_with_exit_code_2(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_EPOCHS", "many")
    assert main(["settings"]) == 2
    assert "COURSE_EPOCHS" in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path):
    save(tmp_path / "train" / "a" / "1.png")
    (tmp_path / "train" / "a" / "2.jpg").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "coursekit", "check-data", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "COURSE_MODE": "smoke"},
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "2.jpg" in result.stdout and "empty (0 bytes)" in result.stdout


def test_a_file_is_reported_as_a_file_not_a_missing_folder(tmp_path, capsys):
    archive = tmp_path / "flowers102.zip"
    archive.write_bytes(b"PK\x03\x04")
    (problem,) = check_dataset(archive).problems
    assert problem.problem == "it is a file, not a folder" and "extract it first" in problem.fix
    assert main(["check-data", str(archive)]) == 1
    out = capsys.readouterr().out
    assert f"- {archive}: it is a file, not a folder" in out and "does not exist" not in out


def test_an_empty_valid_folder_is_one_problem_whose_fix_is_to_remove_it(tmp_path):
    save(tmp_path / "train" / "cats" / "a.png")
    save(tmp_path / "train" / "dogs" / "a.png")
    (tmp_path / "valid").mkdir()
    (problem,) = check_dataset(tmp_path).problems
    assert problem.path == tmp_path / "valid" and "nothing is validated" in problem.problem
    assert f"delete the empty {tmp_path / 'valid'} so that build_datasets splits train/" in (
        problem.fix
    )
