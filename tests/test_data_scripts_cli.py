"""The data_scripts command line: help texts, exit codes and messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from data_scripts_helpers import hymenoptera_layout, make_image_tree, zip_folder

from data_scripts.__main__ import main

SUBCOMMANDS = ("get", "synthetic", "subset", "weights", "verify")


def test_module_help_runs_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "data_scripts", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for command in SUBCOMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_each_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: python -m data_scripts {command}" in text
    assert len(text.splitlines()) > 5


def test_synthetic_then_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tmp_path)
    assert (
        main(["synthetic", "--root", root, "--train-per-class", "2", "--valid-per-class", "1"]) == 0
    )
    assert main(["verify", "synthetic", "--root", root]) == 0
    out = capsys.readouterr().out
    assert "OK (36 images)" in out
    assert "total" in out


def test_verify_a_path_with_problems_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = make_image_tree(
        tmp_path / "mine", {"train": {"cats": 2, "dogs": 1}, "valid": {"cats": 1}}
    )
    (tree / "train" / "birds").mkdir()
    assert main(["verify", str(tree)]) == 1
    out = capsys.readouterr().out
    # The problems of `python -m coursekit check-data`: verify runs the same check.
    assert "problem: train/birds: empty class folder (no readable images)" in out
    assert "problem: valid/dogs: class 'dogs' is in train/ but not in valid/" in out


def test_verify_a_missing_dataset_names_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "hymenoptera", "--root", str(tmp_path)]) == 1
    assert "python -m data_scripts get hymenoptera" in capsys.readouterr().err


def test_get_from_a_local_zip_and_errors_go_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = make_image_tree(tmp_path / "tree", hymenoptera_layout())
    archive = zip_folder(tree, tmp_path / "ants bees.zip", top="hymenoptera_data")
    root = str(tmp_path / "data")
    assert main(["get", "hymenoptera", "--root", root, "--from", str(archive)]) == 0
    assert "hymenoptera is ready" in capsys.readouterr().out
    assert (
        main(
            ["get", "hymenoptera", "--root", root, "--from", str(tmp_path / "nope.zip"), "--force"]
        )
        == 1
    )
    assert capsys.readouterr().err.startswith("error: --from")


def test_subset_prints_its_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = make_image_tree(tmp_path / "src", {"train": {"a": 3, "b": 1}})
    assert main(["subset", str(tree), str(tmp_path / "dst"), "--per-class", "2"]) == 0
    out = capsys.readouterr().out
    assert "train 3 images" in out and "train/b: only 1 image(s)" in out


def test_weights_list_on_an_empty_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert main(["weights", "--list"]) == 0
    assert "(empty)" in capsys.readouterr().out


def test_every_public_name_resolves() -> None:
    import data_scripts

    for name in data_scripts.__all__:
        assert getattr(data_scripts, name) is not None
    with pytest.raises(AttributeError):
        data_scripts.no_such_name  # noqa: B018


@pytest.mark.parametrize(
    "code",
    [
        "from data_scripts import get, layout, subset, synthetic",
        "from data_scripts.__main__ import main; main(['verify', '--help'])",
        "from data_scripts.__main__ import main; main(['verify', 'synthetic', '--root', '/nowhere'])",
    ],
    ids=["modules", "verify-help", "verify"],
)
def test_the_commands_start_without_torch(code: str) -> None:
    # torch takes seconds to import; get, verify and subset never need it.
    script = f"import sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch was imported'"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_verify_and_check_data_agree_on_the_same_tree(tmp_path: Path) -> None:
    from coursekit.folders import check_dataset
    from data_scripts.layout import check_layout

    tree = make_image_tree(
        tmp_path / "mine", {"train": {"cats": 2, "dogs": 1}, "valid": {"cats": 1}}
    )
    (tree / "train" / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    verified, checked = check_layout(tree), check_dataset(tree)
    # verify used to count the broken file and call the missing valid/dogs a mere warning.
    assert (
        verified.counts
        == checked.counts
        == {
            "train": {"cats": 2, "dogs": 1},
            "valid": {"cats": 1, "dogs": 0},
        }
    )
    assert verified.problems == checked.problems and not verified.ok
