"""data_scripts.files and .locks: scratch folders and publishing, with runs killed or concurrent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from data_scripts_helpers import make_image_tree, snapshot

from data_scripts.files import copy_file_atomically, publish, scratch_dir
from data_scripts.locks import is_held_elsewhere, try_lock
from data_scripts.synthetic import make_synthetic


def test_a_lock_is_released_when_its_process_dies(tmp_path: Path) -> None:
    lock = tmp_path / ".demo.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from data_scripts.locks import try_lock; "
            "held = try_lock(Path(sys.argv[1])); assert held is not None; print('held', flush=True); "
            "time.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert is_held_elsewhere(lock)
        assert try_lock(lock) is None
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert not is_held_elsewhere(lock)  # killed: nothing is left holding it


def test_concurrent_runs_keep_their_own_scratch_folders(tmp_path: Path) -> None:
    with scratch_dir(tmp_path, "flowers102") as first:
        (first / "half-extracted.jpg").write_bytes(b"x")
        with scratch_dir(tmp_path, "flowers102") as second:
            assert second != first
            assert (first / "half-extracted.jpg").read_bytes() == b"x"  # not cleaned away
        assert not second.exists()
        assert first.is_dir()
    assert list(tmp_path.iterdir()) == []  # folders and their lock files are gone


def test_scratch_left_by_a_killed_run_is_removed_by_the_next_run(tmp_path: Path) -> None:
    # A run killed before this version locked its scratch, and one killed after (its lock
    # file stays behind, held by nobody).
    unlocked = tmp_path / ".synthetic.tmp-old1"
    killed = tmp_path / ".synthetic.tmp-old2"
    for folder in (unlocked, killed):
        (folder / "train").mkdir(parents=True)
    (tmp_path / ".synthetic.tmp-old2.lock").touch()
    with scratch_dir(tmp_path, "synthetic") as scratch:
        assert sorted(p.name for p in tmp_path.iterdir()) == [scratch.name, scratch.name + ".lock"]


def test_publish_replaces_the_target_and_removes_old_copies_left_by_killed_runs(
    tmp_path: Path,
) -> None:
    target = make_image_tree(tmp_path / "mini", {"train": {"a": 1}})
    left_by_a_killed_run = make_image_tree(tmp_path / ".mini.old-1a2b3c4d", {"train": {"b": 1}})
    built = make_image_tree(tmp_path / "built", {"train": {"c": 2}})
    expected = snapshot(built)
    publish(built, target)
    assert snapshot(target) == expected
    assert not left_by_a_killed_run.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini"]


def test_a_second_synthetic_run_leaves_the_running_ones_scratch_alone(tmp_path: Path) -> None:
    with scratch_dir(tmp_path, "synthetic") as running:
        (running / "train").mkdir()
        make_synthetic(tmp_path, train_per_class=1, valid_per_class=1, seed=0)
        assert (running / "train").is_dir()
    assert (tmp_path / "synthetic" / "train").is_dir()


def test_an_atomic_copy_is_fsynced_before_it_is_renamed(tmp_path: Path, monkeypatch) -> None:
    # Without fsync a power cut can leave the renamed weights file empty.
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    source = tmp_path / "resnet18-f37072fd.pth"
    source.write_bytes(b"weights" * 1000)
    copy = tmp_path / "cache" / source.name
    copy_file_atomically(source, copy)
    assert copy.read_bytes() == source.read_bytes()
    assert synced, "the copy was renamed into place without an fsync"
    assert [p.name for p in copy.parent.iterdir()] == [source.name]  # no temporary left
