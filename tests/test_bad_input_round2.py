"""Issue 11, bad input round two: what an adversarial learner broke, each reproduced first.

The same two halves of the promise as tests/test_bad_input.py (whose helpers this file
uses): what the learner reads names the file or setting and the fix, and nothing is lost.
Everything runs offline; disk-full and read-only disks are simulated by making the
write raise the operating system's error.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest
import torch
import torchvision
from data_scripts_helpers import make_image_tree, snapshot
from PIL import Image
from test_bad_input import (
    PETS,
    assert_same_state,
    export_tiny_bundle,
    lesson_on,
    make_dataset,
    save_image,
    state_of,
    tiny_net,
    zero_bytes,
)
from torch import nn
from torchvision import transforms

import coursekit as ck
import data_scripts.files
import data_scripts.synthetic
from coursekit.__main__ import main as coursekit_main
from data_scripts.__main__ import main as data_scripts_main

# --------------------------------------------------------------------------- 1. weights cache


class Payload:
    """What a malicious pickle does when it is loaded: here, only create a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # follow TORCH_HOME, restored after
    monkeypatch.setattr(torch.hub, "download_url_to_file", pytest.fail)  # never the network
    return Path(torch.hub.get_dir())


@pytest.mark.parametrize("mode", ["smoke", "full"])
def test_a_malicious_file_in_the_weights_cache_runs_nothing(torch_home, tmp_path, capsys, mode):
    marker = tmp_path / "payload ran"
    path = ck.weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save({"conv1.weight": Payload(marker)}, path)

    if mode == "full":
        with pytest.raises(ck.WeightsUnavailableError) as caught:
            ck.pretrained("resnet18", settings=ck.get_settings("full"), num_classes=2)
        message = str(caught.value)
        assert str(path) in message and "not the file its name promises" in message
        assert "tampered with or damaged" in message and "Delete it" in message
        assert "python -m data_scripts weights resnet18" in message
        assert "weights_only" not in message and caught.value.__suppress_context__
    else:
        model = ck.pretrained("resnet18", settings=ck.get_settings("smoke"), num_classes=2)
        assert model.fc.out_features == 2 and "random initialization" in capsys.readouterr().out
    assert not marker.exists()  # the payload never ran
    assert path.is_file()  # the evidence is left for the learner to delete


def test_a_real_cached_file_still_loads(torch_home):
    # A file whose name carries the real start of its SHA-256, as torchvision's names do.
    torch.manual_seed(0)
    official = torchvision.models.resnet18(weights=None)
    path = ck.weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(official.state_dict(), path)
    assert ck.weights_hash_mismatch(path).endswith("its name says f37072fd")
    model = ck.pretrained("resnet18", settings=ck.get_settings("full"))
    assert_same_state(model, state_of(official))  # weights_only loading reads it unchanged


def test_the_weights_from_message_never_says_to_copy_into_the_cache(torch_home, tmp_path, capsys):
    assert data_scripts_main(["weights", "resnet18", "--from", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"into {tmp_path}" in err and "run this command again" in err
    assert "Never copy weights into the torch cache by hand" in err
    assert not any(torch_home.rglob("*.pth"))


# --------------------------------------------------------------------------- 2. symlink loops


def pets_with_links(tmp_path: Path) -> Path:
    root = make_dataset(tmp_path / "pets")
    (root / "train" / "cat" / "loop").symlink_to("..")  # -> train/: the dog images too
    (root / "train" / "cat" / "self").symlink_to(".")  # -> itself, over and over
    return root


def test_a_symlink_loop_in_a_class_folder_mislabels_nothing(tmp_path, capsys):
    root = pets_with_links(tmp_path)
    lesson = lesson_on(root)
    out = capsys.readouterr().out
    assert ck.class_counts(lesson.train_ds) == {"cat": 3, "dog": 3}
    for link in ("loop", "self"):
        line = next(line for line in out.splitlines() if str(root / "train/cat" / link) in line)
        assert "leads back into" in line and "delete the link" in line

    report = ck.check_dataset(root)
    assert report.counts["train"] == {"cat": 3, "dog": 3}
    loops = [p for p in report.problems if "leads back into" in p.problem]
    assert {p.path.name for p in loops} == {"loop", "self"}
    assert not any("extension" in p.problem for p in report.problems)


def test_check_data_and_verify_walk_the_same_files(tmp_path, capsys):
    root = pets_with_links(tmp_path)
    save_image(root / "train" / "cat" / "more" / "3.png")  # a real sub-folder counts in both
    external = make_image_tree(tmp_path / "elsewhere", {"x": {"y": 2}}) / "x" / "y"
    (root / "train" / "dog" / "linked").symlink_to(external)  # outside the tree: followed

    coursekit_main(["check-data", str(root)])
    checked = capsys.readouterr().out
    assert data_scripts_main(["verify", str(root)]) == 1  # the loops are problems
    verified = capsys.readouterr().out
    counts = ck.check_dataset(root).counts["train"]
    assert counts == {"cat": 4, "dog": 5}
    for class_name, count in counts.items():
        assert any(line.split() == [class_name, str(count), "2"] for line in checked.splitlines())
        assert any(line.split() == [class_name, str(count), "2"] for line in verified.splitlines())
    assert "leads back into" in verified and str(root / "train/cat/loop") in verified


def test_get_from_a_folder_with_a_loop_says_so_and_installs_nothing(tmp_path, capsys):
    source = make_image_tree(
        tmp_path / "download", {s: {"ants": 2, "bees": 2} for s in ("train", "val")}
    )
    (source / "train" / "ants" / "loop").symlink_to("..")
    data = tmp_path / "data"
    code = data_scripts_main(["get", "hymenoptera", "--root", str(data), "--from", str(source)])
    err = capsys.readouterr().err
    assert code == 1 and str(source / "train/ants/loop") in err
    assert "leads back into" in err and "delete the link" in err and ".." not in err[-4:]
    assert not (data / "hymenoptera").exists()


# --------------------------------------------------------------------------- 3. resume


def checkpoint_of(tmp_path: Path, optimizer_class=torch.optim.SGD, **settings) -> Path:
    lesson = lesson_on(make_dataset(tmp_path / "pets"))
    lesson.optimizer = optimizer_class(lesson.model.parameters(), lr=0.1, **settings)
    lesson.scheduler = torch.optim.lr_scheduler.StepLR(lesson.optimizer, 1)
    lesson.fit(checkpoint_path=tmp_path / "runs" / "best.pt")
    return ck.last_checkpoint_path(tmp_path / "runs" / "best.pt")


RESUMES = {  # trained with -> resumed with, and what the message must name on both sides
    "sgd-to-adam": (
        (torch.optim.SGD, {"momentum": 0.9}), (torch.optim.Adam, {}), ["SGD(", "Adam("]
    ),
    "adam-to-sgd": ((torch.optim.Adam, {}), (torch.optim.SGD, {}), ["Adam(", "SGD("]),
    "adam-to-adamw": (
        (torch.optim.Adam, {"weight_decay": 0.5}), (torch.optim.AdamW, {"weight_decay": 0}),
        ["Adam(", "weight_decay=0.5", "AdamW("],
    ),
    "sgd-other-momentum": (
        (torch.optim.SGD, {"momentum": 0.9}), (torch.optim.SGD, {"momentum": 0.5}),
        ["momentum 0.9 there, 0.5 here"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", RESUMES)
def test_resuming_with_another_optimizer_is_refused_before_anything_is_loaded(tmp_path, case):
    (trained, trained_settings), (resumed, resumed_settings), named = RESUMES[case]
    last = checkpoint_of(tmp_path, trained, **trained_settings)
    saved = last.read_bytes()
    lesson = lesson_on(tmp_path / "pets", seed=9)
    lesson.optimizer = resumed(lesson.model.parameters(), lr=0.1, **resumed_settings)
    lesson.scheduler = torch.optim.lr_scheduler.StepLR(lesson.optimizer, 1)
    before, optimizer_before = state_of(lesson.model), lesson.optimizer.state_dict()

    with pytest.raises(ck.CheckpointMismatchError) as caught:
        lesson.fit(2, resume_from=last)

    message = str(caught.value)
    assert str(last) in message and all(word in message for word in named), message
    assert "Nothing was loaded" in message and "create the optimizer" in message
    assert_same_state(lesson.model, before)
    assert lesson.optimizer.state_dict() == optimizer_before
    assert last.read_bytes() == saved


def test_resuming_on_other_classes_of_the_same_count_is_refused(tmp_path):
    last = checkpoint_of(tmp_path)
    lesson = lesson_on(make_dataset(tmp_path / "cats and foxes", train=("cat", "fox")), seed=9)
    before = state_of(lesson.model)
    with pytest.raises(ck.CheckpointMismatchError) as caught:
        lesson.fit(2, resume_from=last)
    message = str(caught.value)
    assert "['cat', 'dog']" in message and "['cat', 'fox']" in message and str(last) in message
    assert "train a new model for these classes" in message
    assert_same_state(lesson.model, before)
    assert ck.load_checkpoint(last)["metadata"]["class_names"] == ["cat", "dog"]


# --------------------------------------------------------------------------- 4. one run per path


LOCKING_RUN = """
import sys, time, torch
from torch import nn
import coursekit as ck
data = torch.utils.data.TensorDataset(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
loaders = ck.feature_loaders(data, data, batch_size=2)

class Slow(nn.Linear):
    def forward(self, x):
        print("training", flush=True)
        time.sleep(60)
        return super().forward(x)

model = Slow(2, 2)
ck.fit(model, loaders, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1),
       epochs=1, checkpoint_path=sys.argv[1], progress=False)
"""


def test_a_second_run_on_the_same_checkpoint_path_is_refused_naming_the_first(tmp_path):
    checkpoint = tmp_path / "runs" / "best.pt"
    first = subprocess.Popen(
        [sys.executable, "-c", LOCKING_RUN, str(checkpoint)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout.readline().strip() == "training"  # it holds the path now
        lesson = lesson_on(make_dataset(tmp_path / "pets"))
        with pytest.raises(ck.CheckpointInUseError) as caught:
            lesson.fit(checkpoint_path=checkpoint)
        message = str(caught.value)
        assert str(checkpoint) in message and f"process {first.pid} on " in message
        assert "another checkpoint_path" in message
        assert not checkpoint.exists()  # the second run wrote nothing
    finally:
        first.kill()
        first.wait()
    assert lesson.fit(checkpoint_path=checkpoint).epochs_done == 1  # free again once it ended
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["best.last.pt", "best.pt"]


# --------------------------------------------------------------------------- 5. full disks


def fail_writes(monkeypatch, error_number: int) -> None:
    """Every binary file write fails with ``error_number``, as on a full or read-only disk."""
    real_fdopen = os.fdopen

    class Failing(io.BufferedWriter):
        def write(self, data):
            raise OSError(error_number, os.strerror(error_number))

    def fdopen(fd, mode="r", *args, **kwargs):
        handle = real_fdopen(fd, mode, *args, **kwargs)
        return Failing(handle.detach()) if mode == "wb" else handle

    monkeypatch.setattr(os, "fdopen", fdopen)


def test_a_full_disk_stops_fit_cleanly_keeping_the_history_and_the_last_good_checkpoint(
    tmp_path, monkeypatch, capsys
):
    lesson = lesson_on(make_dataset(tmp_path / "pets"))
    checkpoint = tmp_path / "runs" / "best.pt"
    lesson.fit(checkpoint_path=checkpoint)
    good = ck.load_checkpoint(checkpoint)["epoch"]
    capsys.readouterr()

    fail_writes(monkeypatch, errno.ENOSPC)
    history = lesson.fit(3, checkpoint_path=checkpoint, resume_from=ck.last_checkpoint_path(checkpoint))

    (line,) = capsys.readouterr().out.splitlines()
    assert "the disk holding" in line and "is full" in line and "free some space" in line
    assert str(checkpoint) in line and "The history of 2 finished epoch(s) is returned" in line
    assert history.interrupted and history.epochs_done == 2
    assert ck.load_checkpoint(checkpoint)["epoch"] == good  # the last good one, intact
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["best.last.pt", "best.pt"]


@pytest.mark.parametrize(
    ("error_number", "words"),
    [(errno.ENOSPC, "is full"), (errno.EROFS, "read-only"), (errno.EACCES, "permission denied")],
)
def test_bundles_and_csvs_on_a_full_or_read_only_disk_say_so_in_one_line(
    tmp_path, monkeypatch, error_number, words
):
    bundle, table = tmp_path / "exports" / "pets.pt", tmp_path / "exports" / "preds.csv"
    export_tiny_bundle(bundle, list(PETS))
    ck.save_predictions_csv([ck.Prediction("a.png", ["cat"], [0.9], [0], 0.1)], table)
    before = snapshot(tmp_path / "exports")

    def refused(fd):  # the data only reaches the disk here: the disk says no
        raise OSError(error_number, os.strerror(error_number))

    monkeypatch.setattr(os, "fsync", refused)
    with pytest.raises(OSError) as exported:
        export_tiny_bundle(bundle, list(PETS))
    with pytest.raises(OSError) as written:
        ck.save_predictions_csv([ck.Prediction("b.png", ["dog"], [0.8], [1], 0.1)], table)
    for caught, path in ((exported, bundle), (written, table)):
        message = str(caught.value)
        assert "\n" not in message and str(path) in message and words in message
        assert "another disk" in message and caught.value.errno == error_number
    assert snapshot(tmp_path / "exports") == before  # the earlier files are intact, no leftovers


@pytest.mark.parametrize("error_number", [errno.ENOSPC, errno.EROFS])
@pytest.mark.parametrize("command", ["synthetic", "subset", "get"])
def test_data_commands_on_a_full_or_read_only_disk_say_so_in_one_line(
    tmp_path, monkeypatch, capsys, command, error_number
):
    data = tmp_path / "data"
    source = make_image_tree(tmp_path / "src", {s: {"ants": 2, "bees": 2} for s in ("train", "val")})
    argv = {
        "synthetic": ["synthetic", "--root", str(data), "--train-per-class", "1", "--valid-per-class", "1"],
        "subset": ["subset", str(source), str(data / "mini"), "--per-class", "1"],
        "get": ["get", "hymenoptera", "--root", str(data), "--from", str(source)],
    }[command]  # fmt: skip
    target = {"synthetic": data / "synthetic", "subset": data / "mini", "get": data / "hymenoptera"}
    before = snapshot(source)

    def refused(*args, **kwargs):
        raise OSError(error_number, os.strerror(error_number))

    monkeypatch.setattr(shutil, "copyfile", refused)
    monkeypatch.setattr(Image.Image, "save", refused)

    assert data_scripts_main(argv) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: Could not write") and str(data) in line
    assert ("is full" if error_number == errno.ENOSPC else "read-only") in line and "Fix:" in line
    assert snapshot(source) == before
    assert not target[command].exists()
    assert not [p for p in data.iterdir() if ".tmp-" in p.name]  # no scratch left behind
