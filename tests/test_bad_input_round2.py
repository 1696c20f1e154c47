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
from torchvision import transforms

import coursekit as ck
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
        out = capsys.readouterr().out
        assert model.fc.out_features == 2 and "random initialization" in out
        assert f"{path} for resnet18 is not the file its name promises" in out  # says why
    assert not marker.exists()  # the payload never ran
    assert path.is_file()  # the evidence is left for the learner to delete


def test_a_real_cached_file_still_loads(torch_home):
    # A file whose name carries the real start of its SHA-256, as torchvision's names do.
    torch.manual_seed(0)
    official = torchvision.models.resnet18(weights=None)
    path = ck.weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(official.state_dict(), path)
    assert ck.models.weights_hash_mismatch(path).endswith("its name says f37072fd")
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
    history = lesson.fit(
        3, checkpoint_path=checkpoint, resume_from=ck.last_checkpoint_path(checkpoint)
    )

    (line,) = capsys.readouterr().out.splitlines()
    assert "the disk holding" in line and "is full" in line and "free some space" in line
    assert str(checkpoint) in line and "The history of 2 finished epoch(s) is returned" in line
    assert history.interrupted and history.epochs_done == 2
    assert ck.load_checkpoint(checkpoint)["epoch"] == good  # the last good one, intact
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["best.last.pt", "best.pt"]


@pytest.mark.parametrize(
    ("error_number", "words"),
    [(errno.ENOSPC, "is full"), (errno.EROFS, "read-only"), (errno.EACCES, "may not write into")],
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
    source = make_image_tree(
        tmp_path / "src", {s: {"ants": 2, "bees": 2} for s in ("train", "val")}
    )
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


# --------------------------------------------------------------------------- 6. file names


LATIN1_NAME = os.fsdecode(b"caf\xe9.png")  # a Latin-1 name from an old disk, not UTF-8


def test_non_utf8_file_names_are_printed_and_written_safely(tmp_path, capsys):
    root = make_dataset(tmp_path / "pets")
    broken = zero_bytes(root / "train" / "cat" / LATIN1_NAME)
    save_image(root / "valid" / "dog" / LATIN1_NAME)

    lesson_on(root)  # capsys's stdout is strict UTF-8, like a terminal's
    out = capsys.readouterr().out
    assert "caf\\xe9.png" in out and "empty (0 bytes)" in out
    assert broken.exists()

    result = subprocess.run(
        [sys.executable, "-m", "coursekit", "check-data", str(root)],
        capture_output=True, env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"},
        timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    assert b"caf\\xe9.png: the file is empty" in result.stdout

    bundle = tmp_path / "pets.pt"
    export_tiny_bundle(bundle, list(PETS))
    predictions = ck.load_bundle(bundle).predict_folder(root / "valid")
    table = ck.save_predictions_csv(predictions, tmp_path / "predictions.csv")
    rows = table.read_text(encoding="utf-8").splitlines()  # valid UTF-8
    assert len(rows) == 1 + len(predictions) == 6
    assert any(row.startswith(f"{root / 'valid' / 'dog'}/caf\\xe9.png,") for row in rows)


# --------------------------------------------------------------------------- 7. settings


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("COURSE_IMAGE_SIZE", "7", "image_size=7 is too small"),
        ("COURSE_SEED", str(2**70), "seed=1180591620717411303424 must be a whole number from 0"),
        ("COURSE_SPLIT_SEED", "-1", "split_seed=-1 must be a whole number from 0"),
    ],
)
def test_settings_that_would_crash_later_are_refused_up_front(monkeypatch, variable, value, words):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ck.SettingsError) as caught:
        ck.start_lesson("smoke")
    assert words in str(caught.value) and f"(check {variable})" in str(caught.value)


# --------------------------------------------------------------------------- 8. kill -9 leftovers


def test_temporary_files_of_killed_runs_are_removed_by_the_next_fit(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    long_ago = time.time() - 3600
    stale = [runs / ".best.pt.k2j4h1x9.tmp", runs / ".best.last.pt.a8f3k2m1.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1_000_000)  # what kill -9 mid-save leaves
        os.utime(path, (long_ago, long_ago))
    writing_now = runs / ".best.pt.zz99zz99.tmp"  # newer than this process: not ours to judge
    writing_now.write_bytes(b"\0")
    other = runs / ".other.pt.q1w2e3r4.tmp"
    other.write_bytes(b"\0")
    os.utime(other, (long_ago, long_ago))

    lesson = lesson_on(make_dataset(tmp_path / "pets"))
    capsys.readouterr()
    lesson.fit(checkpoint_path=runs / "best.pt")

    out = capsys.readouterr().out
    assert "Removed 2 temporary file(s) (2.0 MB)" in out and "best.pt" in out
    assert not any(path.exists() for path in stale)
    assert writing_now.exists() and other.exists()  # another file's, or maybe still written


# --------------------------------------------------------------------------- 9. smaller ones


def test_checkpoints_bundles_and_csvs_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        lesson = lesson_on(make_dataset(tmp_path / "pets"))
        lesson.fit(checkpoint_path=tmp_path / "runs" / "best.pt")
        export_tiny_bundle(tmp_path / "runs" / "pets.pt", list(PETS))
        ck.save_predictions_csv([], tmp_path / "runs" / "predictions.csv")
        torch.save({}, tmp_path / "runs" / "plain torch.save.pt")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "runs").iterdir()}
    assert modes == dict.fromkeys(
        ["best.pt", "best.last.pt", "pets.pt", "predictions.csv", "plain torch.save.pt"], 0o644
    )


def forged_bundle(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "pets.pt"
    export_tiny_bundle(path, list(PETS))
    contents = torch.load(path, weights_only=True)
    contents.update(changes)
    torch.save(contents, path)
    return path


@pytest.mark.parametrize("claimed", [2_000_000_000, 2e9])
def test_a_bundle_claiming_two_billion_classes_is_refused_before_any_allocation(tmp_path, claimed):
    path = forged_bundle(tmp_path, num_classes=claimed, class_names=["x"] * 2)
    with pytest.raises(ck.BundleError) as caught:
        ck.load_bundle(path)  # before the fix: a 2e9 x 1024 head, about 8 TB, was allocated
    assert "damaged bundle" in str(caught.value) and "num_classes is 2000000000" in str(
        caught.value
    )


def test_a_bundle_whose_class_names_do_not_match_its_class_count_is_refused_at_load(tmp_path):
    path = forged_bundle(tmp_path, class_names=["cat", "dog", "fox"])
    with pytest.raises(ck.BundleError) as caught:
        ck.load_bundle(path)
    message = str(caught.value)
    assert str(path) in message and "3 class names but num_classes is 2" in message
    assert "export_bundle" in message and "train_ds.classes" not in message


def test_look_alike_class_folders_are_named(tmp_path, capsys):
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    root = make_dataset(tmp_path / "drinks", train=(nfc, nfd, "tea", "tea "))
    lesson_on(root)
    warnings = [
        line for line in capsys.readouterr().out.splitlines() if "look like one name" in line
    ]
    assert len(warnings) == 2 and all("rename or merge them" in line for line in warnings)
    problems = [p for p in ck.check_dataset(root).problems if "look like one name" in p.problem]
    assert len(problems) == 2


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        ({"cat": None, "dog": "Dog"}, "gives 'cat' the name null, which is not text"),
        ({"cat": 3, "dog": "Dog"}, "gives 'cat' the name 3, which is not text"),
    ],
)
def test_a_label_map_with_a_value_that_is_no_name_is_refused(tmp_path, mapping, expected):
    label_map = tmp_path / "cat_to_name.json"
    label_map.write_text(json.dumps(mapping), encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        ck.load_label_names(label_map, ["cat", "dog"])
    assert expected in str(caught.value) and str(label_map) in str(caught.value)


def test_a_label_map_is_read_whatever_the_unicode_form_and_duplicates_are_named(tmp_path, capsys):
    label_map = tmp_path / "cat_to_name.json"
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    label_map.write_text(json.dumps({nfc: "coffee", "tea": "drink", "mate": "drink"}), "utf-8")
    names = ck.load_label_names(label_map, [nfd, "mate", "tea"])
    out = capsys.readouterr().out
    assert names == ["coffee", "drink", "drink"]
    assert "has no name" not in out  # the NFD folder found its NFC key
    assert "names the class folders mate, tea all 'drink'" in out and "Fix the file" in out


def test_heic_photos_are_named_with_how_to_convert_them(tmp_path, capsys):
    root = make_dataset(tmp_path / "pets")
    photo = root / "train" / "cat" / "IMG_0001.HEIC"
    photo.write_bytes(b"\0\0\0\x18ftypheic")
    lesson = lesson_on(root)
    line = next(line for line in capsys.readouterr().out.splitlines() if str(photo) in line)
    assert "HEIF" in line and "convert it to JPEG" in line and "pillow-heif" in line
    assert len(lesson.train_ds) == 6
    (problem,) = [p for p in ck.check_dataset(root).problems if p.path == photo]
    assert "convert it to JPEG" in problem.fix


def test_a_malicious_checkpoint_is_refused_without_pointing_at_the_unsafe_load(tmp_path):
    path = tmp_path / "runs" / "best.pt"
    path.parent.mkdir()
    marker = tmp_path / "payload ran"
    torch.save({"format_version": 1, "model_state": Payload(marker)}, path)
    with pytest.raises(ck.CheckpointError) as caught:
        ck.load_checkpoint(path, tiny_net(2))
    message = str(caught.value)
    assert str(path) in message and "could run code" in message and "tampered" in message
    assert "weights_only" not in message and "truncated" not in message
    assert caught.value.__suppress_context__  # torch's advice is not shown below it
    assert not marker.exists()


def old_train_transforms(image_size: int, resize_size: int) -> transforms.Compose:
    """The pipeline before the fix: Resize blew the long side up before the rotation."""
    return transforms.Compose(
        [transforms.Resize(resize_size), transforms.RandomRotation(45), transforms.CenterCrop(image_size)]
    )  # fmt: skip


def seconds_and_largest_picture(
    pipeline: transforms.Compose, image: Image.Image
) -> tuple[float, int]:
    """The time of the geometric steps (those on PIL images) and the largest picture they made."""
    started, largest = time.perf_counter(), 0
    for step in pipeline.transforms:
        if isinstance(step, transforms.ToTensor):
            break
        image = step(image)
        largest = max(largest, image.width * image.height)
    return time.perf_counter() - started, largest


def test_a_1x5000_image_costs_no_more_than_a_photo(tmp_path):
    banner = Image.new("RGB", (1, 5000), (200, 30, 30))
    # Before and after at the quick run's sizes (the full run's 224/256 needed ~1.2 GB before).
    # The machine may be busy: the fastest of three runs is the cost.
    before_s, before_px = seconds_and_largest_picture(old_train_transforms(64, 72), banner)
    runs = [seconds_and_largest_picture(ck.train_transforms(64, 72), banner) for _ in range(3)]
    after_s, after_px = min(runs)
    assert before_px == 72 * 360_000 and after_px <= 72 * 576  # 625 times fewer pixels
    assert after_s * 5 < before_s, (before_s, after_s)
    assert seconds_and_largest_picture(ck.train_transforms(224, 256), banner)[1] <= 256 * 2048
    photo = Image.effect_noise((900, 150), 60).convert("RGB")  # 6:1, within 8:1: as before
    torch.manual_seed(0)
    ours = ck.eval_transforms(64, 72)(photo)
    reference = transforms.Compose(
        [transforms.Resize(72), transforms.CenterCrop(64), transforms.ToTensor(),
         transforms.Normalize(ck.IMAGENET_MEAN, ck.IMAGENET_STD)]
    )(photo)  # fmt: skip
    assert torch.equal(ours, reference)


def test_a_dataset_replaced_during_training_says_to_rebuild_the_datasets(tmp_path):
    root = make_dataset(tmp_path / "pets")
    lesson = lesson_on(root)
    shutil.rmtree(root / "train")  # what `synthetic --force` does to the folder meanwhile
    make_dataset(tmp_path / "new")
    shutil.move(tmp_path / "new" / "train", root / "train")
    (root / "train" / "cat" / "0.png").rename(root / "train" / "cat" / "renamed.png")
    with pytest.raises(FileNotFoundError) as caught:
        lesson.fit()
    message = str(caught.value)
    assert str(root / "train" / "cat" / "0.png") in message and "gone now" in message
    assert "run the cell that builds the datasets again" in message
    assert "check the path" not in message


def flower_data(folder: Path, label_map_inside: bool) -> Path:
    """The layout most copies of flowers102 on the web have: flower_data/{train,valid,test}."""
    classes = {str(number): 1 for number in range(1, 103)}
    tree = make_image_tree(
        folder / "flower_data", dict.fromkeys(("train", "valid", "test"), classes)
    )
    names = {str(number): f"flower {number}" for number in range(1, 103)}
    where = tree if label_map_inside else folder
    (where / "cat_to_name.json").write_text(json.dumps(names), encoding="utf-8")
    return folder


@pytest.mark.parametrize("label_map_inside", [False, True], ids=["beside", "inside"])
def test_get_flowers102_from_the_flower_data_layout_of_the_web(tmp_path, capsys, label_map_inside):
    source = flower_data(tmp_path / "Downloads", label_map_inside)
    before = snapshot(source)
    data = tmp_path / "data"
    code = data_scripts_main(["get", "flowers102", "--root", str(data), "--from", str(source)])
    assert code == 0, capsys.readouterr().err
    assert json.loads((data / "flowers102" / "cat_to_name.json").read_text())["1"] == "flower 1"
    assert data_scripts_main(["verify", "flowers102", "--root", str(data)]) == 0
    assert snapshot(source) == before


def test_get_flowers102_without_a_label_map_says_where_it_looked(tmp_path, capsys):
    source = flower_data(tmp_path / "Downloads", label_map_inside=False)
    (source / "cat_to_name.json").unlink()
    data = tmp_path / "data"
    assert data_scripts_main(["get", "flowers102", "--root", str(data), "--from", str(source)]) == 1
    err = capsys.readouterr().err
    assert "cat_to_name.json is missing (looked for" in err and "next to the train/ folder" in err
    assert not (data / "flowers102").exists()
