"""``python -m coursekit train``: the course recipe on a train/valid tree and on one folder."""

from __future__ import annotations

import json

import pytest
import torch
from data_scripts_helpers import hymenoptera_layout, make_image_tree

import coursekit as ck
from coursekit import distributed, recipe
from coursekit.__main__ import main

#: Small and fast: the recipe is the same at any size.
FAST = ["--arch", "resnet18", "--image-size", "32", "--resize-size", "36", "--batch-size", "4"]


@pytest.fixture(autouse=True)
def quick_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_MODE", "smoke")  # random weights when none are cached
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a busy 2-core machine wait for each other
    yield
    torch.set_num_threads(threads)


def test_a_train_valid_tree_gives_a_checkpoint_a_history_and_a_bundle(tmp_path, capsys):
    data = make_image_tree(tmp_path / "ants", hymenoptera_layout(per_class=3))
    out = tmp_path / "out"
    args = ["train", str(data), "--out", str(out), "--epochs", "2", "--fine-tune-epochs", "1"]
    assert main([*args, *FAST]) == 0

    # valid_per_class=2 of the quick settings keeps 2 of the 3 valid images per class.
    assert "2 classes, train 6, valid 4 images" in capsys.readouterr().out
    histories = json.loads((out / recipe.HISTORY_JSON).read_text())
    assert len(histories["head"]["valid_acc"]) == 2
    assert len(histories["fine_tune"]["valid_acc"]) == 1
    assert len(histories["fine_tune"]["lrs"][0]) == 2  # backbone and head learning rates
    assert (out / recipe.HISTORY_PNG).read_bytes().startswith(b"\x89PNG")
    state = ck.load_checkpoint(out / recipe.CHECKPOINT, expected={"arch": "resnet18"})
    assert state["metadata"]["class_names"] == ["ants", "bees"]
    bundle = ck.load_bundle(out / recipe.BUNDLE)
    assert bundle.class_names == ["ants", "bees"] and bundle.metadata["image_size"] == 32
    # The bundle holds the best fine-tuned weights, those of the checkpoint.
    torch.testing.assert_close(bundle.model.state_dict(), state["model_state"])


def test_one_folder_of_classes_is_split_with_the_seed(tmp_path, capsys):
    data = make_image_tree(tmp_path / "birds", {"": {"crow": 5, "wren": 5}})
    out = tmp_path / "out"
    split = ["--validation-split", "0.4", "--split-seed", "3"]
    args = ["train", str(data), "--out", str(out), "--epochs", "1", "--fine-tune-epochs", "1"]
    assert main([*args, *split, *FAST]) == 0
    assert "2 classes, train 6, valid 4 images" in capsys.readouterr().out
    assert ck.load_bundle(out / recipe.BUNDLE).class_names == ["crow", "wren"]


def test_help_shows_examples_with_torchrun(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert "torchrun --nproc_per_node=4 -m coursekit train" in shown
    assert "--fine-tune-epochs" in shown and "--rdzv-endpoint" in shown


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epochs", "0"], "epochs"),
        (["--lr", "fast"], "--lr"),
        (["--arch", "resnet19"], "resnet19"),
    ],
)
def test_bad_settings_get_a_message_naming_them(tmp_path, capsys, extra, message):
    data = make_image_tree(tmp_path / "ants", hymenoptera_layout(per_class=2))
    try:
        code = main(["train", str(data), "--out", str(tmp_path / "out"), *FAST, *extra])
    except SystemExit as exit_info:  # argparse refuses a value of the wrong type itself
        code = exit_info.code
    assert code == 2
    error = capsys.readouterr().err
    assert "error: " in error and message in error
    assert not (tmp_path / "out").exists()


def test_a_missing_data_folder_is_named(tmp_path, capsys):
    missing = tmp_path / "no_such_folder"
    assert main(["train", str(missing), "--out", str(tmp_path / "out"), *FAST]) == 2
    assert str(missing) in capsys.readouterr().err


def test_the_global_batch_must_split_evenly_between_processes(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert recipe._per_process_batch(8) == 4
    with pytest.raises(ValueError, match=r"batch_size=5 .* multiple of 2"):
        recipe._per_process_batch(5)
