"""data_scripts.get: installing hymenoptera and flowers102 from downloads and local copies.

The official files are replaced by tiny fakes: the spec of a dataset is swapped for one
whose URLs point at a server on 127.0.0.1 and whose checksums are the fakes' own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from data_scripts_helpers import (
    UNREACHABLE_URL,
    FileServer,
    hymenoptera_layout,
    make_image_tree,
    snapshot,
    tar_folder,
    tar_member,
    tar_with_members,
    write_image,
    zip_folder,
)

import data_scripts.get as get_module
from coursekit.folders import check_dataset
from data_scripts.download import Checksum
from data_scripts.errors import (
    ChecksumError,
    DataScriptError,
    DownloadError,
    LayoutError,
    UnsafeArchiveError,
)
from data_scripts.files import scratch_dir
from data_scripts.get import get_dataset
from data_scripts.layout import check_layout
from data_scripts.registry import (
    FLOWERS102_CLASS_NAMES,
    FLOWERS102_MD5,
    FLOWERS102_URL_PREFIX,
    RemoteFile,
    dataset_spec,
)


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries back off with time.sleep; the tests need not wait."""
    monkeypatch.setattr("data_scripts.download.time.sleep", lambda seconds: None)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data root"  # a space, as in many learners' paths


def fake_hymenoptera_zip(folder: Path, name: str = "ants_and_bees.zip", per_class: int = 2) -> Path:
    tree = make_image_tree(folder / "tree", hymenoptera_layout(per_class))
    return zip_folder(tree, folder / name, top="hymenoptera_data")


def use_fake_official_files(
    monkeypatch: pytest.MonkeyPatch, name: str, files: dict[str, Path], base_url: str
) -> None:
    """Make ``dataset_spec(name)`` list ``files`` (served at ``base_url``) as its official files."""
    fakes = tuple(
        RemoteFile(
            file_name,
            base_url + file_name,
            Checksum("sha256", hashlib.sha256(path.read_bytes()).hexdigest()),
        )
        for file_name, path in files.items()
    )
    spec = dataclasses.replace(dataset_spec(name), files=fakes)
    monkeypatch.setattr(get_module, "dataset_spec", lambda requested: spec)


def visible(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


# ---- hymenoptera from local copies ------------------------------------------------------


def test_from_a_local_zip_archive(root: Path, tmp_path: Path) -> None:
    target = get_dataset("hymenoptera", root, str(fake_hymenoptera_zip(tmp_path)))
    assert target == root / "hymenoptera"
    assert check_dataset(target).counts == hymenoptera_layout()
    assert check_layout(target, dataset_spec("hymenoptera")).ok
    assert sorted(p.name for p in root.iterdir()) == ["hymenoptera"]  # no scratch left


def test_from_a_local_tgz_archive(root: Path, tmp_path: Path) -> None:
    tree = make_image_tree(tmp_path / "tree", hymenoptera_layout(3))
    archive = tar_folder(tree, tmp_path / "hymenoptera.tgz", top="wrapper")
    get_dataset("hymenoptera", root, str(archive))
    assert check_dataset(root / "hymenoptera").counts == hymenoptera_layout(3)


def test_from_an_extracted_folder_leaves_hidden_files_behind(root: Path, tmp_path: Path) -> None:
    tree = make_image_tree(tmp_path / "hymenoptera_data", hymenoptera_layout())
    write_image(tree / "train" / "ants" / ".ipynb_checkpoints" / "a.jpg")
    (tree / "train" / ".DS_Store").write_bytes(b"\0")
    get_dataset("hymenoptera", root, str(tree))
    target = root / "hymenoptera"
    assert snapshot(target) == {k: v for k, v in snapshot(tree).items() if "/." not in "/" + k}
    assert not (target / "train" / ".DS_Store").exists()


def test_wrong_layout_names_what_is_missing_and_changes_nothing(root: Path, tmp_path: Path) -> None:
    get_dataset("hymenoptera", root, str(fake_hymenoptera_zip(tmp_path)))
    before = snapshot(root / "hymenoptera")
    layout = hymenoptera_layout()
    del layout["val"]["bees"]
    wrong = zip_folder(make_image_tree(tmp_path / "wrong", layout), tmp_path / "wrong.zip")
    with pytest.raises(LayoutError, match=r"val/ lacks class folder\(s\) bees") as caught:
        get_dataset("hymenoptera", root, str(wrong), force=True)
    assert "Nothing was changed" in str(caught.value)
    assert snapshot(root / "hymenoptera") == before
    assert visible(root) == ["hymenoptera"]


def test_wrong_folder_layout_without_a_target_creates_nothing(root: Path, tmp_path: Path) -> None:
    flowers_like = make_image_tree(tmp_path / "flowers", {"train": {"1": 1}, "valid": {"1": 1}})
    with pytest.raises(LayoutError, match="split folder val/ is missing"):
        get_dataset("hymenoptera", root, str(flowers_like))
    assert not (root / "hymenoptera").exists()


def test_empty_class_folder_is_a_layout_problem(root: Path, tmp_path: Path) -> None:
    tree = make_image_tree(tmp_path / "tree", hymenoptera_layout())
    for image in (tree / "train" / "bees").iterdir():
        image.unlink()
    with pytest.raises(LayoutError, match=r"train/bees: empty class folder"):
        get_dataset("hymenoptera", root, str(tree))


def test_official_file_name_with_other_content_fails_the_checksum(
    root: Path, tmp_path: Path
) -> None:
    get_dataset("hymenoptera", root, str(fake_hymenoptera_zip(tmp_path)))
    before = snapshot(root / "hymenoptera")
    impostor = fake_hymenoptera_zip(tmp_path / "other", name="hymenoptera_data.zip", per_class=1)
    with pytest.raises(ChecksumError, match="hymenoptera_data.zip.*sha384"):
        get_dataset("hymenoptera", root, str(impostor), force=True)
    assert snapshot(root / "hymenoptera") == before


def test_official_file_name_with_the_pinned_checksum_installs(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = fake_hymenoptera_zip(tmp_path, name="hymenoptera_data.zip")
    use_fake_official_files(monkeypatch, "hymenoptera", {archive.name: archive}, UNREACHABLE_URL)
    get_dataset("hymenoptera", root, str(tmp_path))  # the folder that holds the official file
    assert check_dataset(root / "hymenoptera").counts == hymenoptera_layout()


def test_existing_dataset_is_kept_unless_forced(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    get_dataset("hymenoptera", root, str(fake_hymenoptera_zip(tmp_path)))
    capsys.readouterr()
    bigger = fake_hymenoptera_zip(tmp_path / "bigger", per_class=3)
    get_dataset("hymenoptera", root, str(bigger))
    assert "already" in capsys.readouterr().out
    assert check_dataset(root / "hymenoptera").counts == hymenoptera_layout(2)
    get_dataset("hymenoptera", root, str(bigger), force=True)
    assert check_dataset(root / "hymenoptera").counts == hymenoptera_layout(3)


def test_incomplete_existing_folder_asks_for_force(root: Path, tmp_path: Path) -> None:
    (root / "hymenoptera" / "train" / "ants").mkdir(parents=True)
    with pytest.raises(LayoutError, match="--force"):
        get_dataset("hymenoptera", root, str(fake_hymenoptera_zip(tmp_path)))


def test_missing_source_path_is_a_clear_error(root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataScriptError, match="no such file or folder"):
        get_dataset("hymenoptera", root, str(tmp_path / "nowhere.zip"))


def test_synthetic_is_not_downloaded(root: Path) -> None:
    with pytest.raises(DataScriptError, match="data_scripts synthetic"):
        get_dataset("synthetic", root)


# ---- archives that try to escape --------------------------------------------------------


def test_zip_with_a_member_escaping_the_target_is_refused(root: Path, tmp_path: Path) -> None:
    archive = fake_hymenoptera_zip(tmp_path)
    with zipfile.ZipFile(archive, "a") as bundle:
        bundle.writestr("../evil.txt", "gotcha")
    with pytest.raises(UnsafeArchiveError, match="evil") as caught:
        get_dataset("hymenoptera", root, str(archive))
    # The message names the data folder, not a scratch folder that no longer exists.
    assert f"outside the folder being built in the data folder {root}." in str(caught.value)
    assert ".tmp-" not in str(caught.value)
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (root / "hymenoptera").exists()


@pytest.mark.parametrize(
    "member",
    [
        tar_member("/tmp/evil.txt"),
        tar_member("hymenoptera_data/train/ants/x.jpg", tarfile.SYMTYPE, "/etc/passwd"),
    ],
    ids=["absolute-path", "symlink"],
)
def test_tar_with_absolute_path_or_symlink_is_refused(
    root: Path, tmp_path: Path, member: tarfile.TarInfo
) -> None:
    archive = tar_with_members(
        tmp_path / "evil.tgz", [tar_member("hymenoptera_data/train/ants/a.jpg"), member]
    )
    with pytest.raises(UnsafeArchiveError):
        get_dataset("hymenoptera", root, str(archive))
    assert not (root / "hymenoptera").exists()


# ---- downloads --------------------------------------------------------------------------


def test_official_download_from_a_local_server(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = fake_hymenoptera_zip(tmp_path, name="hymenoptera_data.zip")
    with FileServer({archive.name: archive.read_bytes()}) as server:
        use_fake_official_files(monkeypatch, "hymenoptera", {archive.name: archive}, server.url())
        get_dataset("hymenoptera", root, progress=False)
    assert check_dataset(root / "hymenoptera").counts == hymenoptera_layout()
    # The archive is kept: --force re-installs without the network (the server is gone).
    assert (root / ".downloads" / archive.name).read_bytes() == archive.read_bytes()
    get_dataset("hymenoptera", root, force=True, progress=False)
    assert check_dataset(root / "hymenoptera").counts == hymenoptera_layout()


def test_download_with_the_wrong_checksum_installs_nothing(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = fake_hymenoptera_zip(tmp_path, name="hymenoptera_data.zip")
    with FileServer({archive.name: b"a corrupted download"}) as server:
        use_fake_official_files(monkeypatch, "hymenoptera", {archive.name: archive}, server.url())
        with pytest.raises(ChecksumError):
            get_dataset("hymenoptera", root, progress=False)
    assert not (root / "hymenoptera").exists()
    # No .part, no archive: only the (empty) lock file that guarded the download.
    assert [p.name for p in (root / ".downloads").iterdir()] == [f"{archive.name}.lock"]


def test_mirror_url_of_an_archive(root: Path, tmp_path: Path) -> None:
    archive = fake_hymenoptera_zip(tmp_path, name="ants-bees-mirror.zip")
    with FileServer({archive.name: archive.read_bytes()}) as server:
        get_dataset("hymenoptera", root, server.url(archive.name), progress=False)
    assert check_dataset(root / "hymenoptera").counts == hymenoptera_layout()


def test_mirror_url_without_a_checksum_is_fetched_again_with_force(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = fake_hymenoptera_zip(tmp_path, name="ants-bees-mirror.zip").read_bytes()
    bigger = fake_hymenoptera_zip(tmp_path / "v2", name="ants-bees-mirror.zip", per_class=3)
    with FileServer({"ants-bees-mirror.zip": small}) as server:
        get_dataset("hymenoptera", root, server.url("ants-bees-mirror.zip"), progress=False)
        server.files["ants-bees-mirror.zip"] = bigger.read_bytes()  # the mirror was fixed
        capsys.readouterr()
        get_dataset(
            "hymenoptera", root, server.url("ants-bees-mirror.zip"), force=True, progress=False
        )
    assert check_dataset(root / "hymenoptera").counts == hymenoptera_layout(3)
    assert len(server.requests) == 2
    assert "not verified" not in capsys.readouterr().out


def test_offline_message_says_what_failed_and_how_to_fix_it(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = fake_hymenoptera_zip(tmp_path, name="hymenoptera_data.zip")
    use_fake_official_files(monkeypatch, "hymenoptera", {archive.name: archive}, UNREACHABLE_URL)
    with pytest.raises(DownloadError) as caught:
        get_dataset("hymenoptera", root, progress=False)
    message = str(caught.value)
    assert UNREACHABLE_URL + "hymenoptera_data.zip" in message
    assert "offline" in message
    assert "get hymenoptera --from PATH" in message and "mirror" in message
    assert not (root / "hymenoptera").exists()


# ---- flowers102 -------------------------------------------------------------------------


def write_fake_flowers_files(folder: Path, classes: int = 102) -> dict[str, Path]:
    """102flowers.tgz, imagelabels.mat and setid.mat with one image per class and split.

    Labels are shuffled against image ids (7 is coprime with 102), as in the real set.
    """
    from scipy.io import savemat

    labels, setid = [], {"trnid": [], "valid": [], "tstid": []}
    for image_id in range(1, 3 * classes + 1):
        labels.append((image_id - 1) * 7 % classes + 1)
        setid[("trnid", "valid", "tstid")[(image_id - 1) // classes]].append(image_id)
        write_image(
            folder / "raw" / "jpg" / f"image_{image_id:05d}.jpg", (image_id % 256, 0, 0), size=4
        )
    folder.mkdir(parents=True, exist_ok=True)
    savemat(folder / "imagelabels.mat", {"labels": labels})
    savemat(folder / "setid.mat", setid)
    with tarfile.open(folder / "102flowers.tgz", "w:gz") as bundle:
        bundle.add(folder / "raw" / "jpg", arcname="jpg")
    return {name: folder / name for name in ("102flowers.tgz", "imagelabels.mat", "setid.mat")}


@pytest.fixture(scope="module")
def flowers_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_fake_flowers_files(tmp_path_factory.mktemp("flowers"))


def test_flowers102_from_the_official_files_matches_torchvision(
    root: Path, flowers_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from torchvision.datasets import Flowers102

    use_fake_official_files(monkeypatch, "flowers102", flowers_files, UNREACHABLE_URL)
    folder = flowers_files["setid.mat"].parent
    target = get_dataset("flowers102", root, str(folder))
    assert check_layout(target, dataset_spec("flowers102")).ok

    # torchvision reads the same files; its md5 check would reject the fakes.
    monkeypatch.setattr(Flowers102, "_check_integrity", lambda self: True)
    torchvision_root = tmp_path / "tv"
    (torchvision_root / "flowers-102").mkdir(parents=True)
    for path in (flowers_files["imagelabels.mat"], flowers_files["setid.mat"]):
        (torchvision_root / "flowers-102" / path.name).write_bytes(path.read_bytes())
    (torchvision_root / "flowers-102" / "jpg").symlink_to(folder / "raw" / "jpg")

    def ours(split: str) -> set[tuple[str, int]]:
        return {(p.name, int(p.parent.name) - 1) for p in (target / split).rglob("*.jpg")}

    def theirs(*splits: str) -> set[tuple[str, int]]:
        pairs = set()
        for split in splits:
            dataset = Flowers102(str(torchvision_root), split=split)
            pairs |= {
                (f.name, label)
                for f, label in zip(dataset._image_files, dataset._labels, strict=True)
            }
        return pairs

    assert ours("valid") == theirs("val")
    assert ours("train") == theirs("train", "test")
    label_map = json.loads((target / "cat_to_name.json").read_text())
    assert label_map == {str(i + 1): name for i, name in enumerate(FLOWERS102_CLASS_NAMES)}
    assert label_map["1"] == "pink primrose"


def test_flowers102_names_and_files_equal_torchvisions() -> None:
    from torchvision.datasets import Flowers102

    if hasattr(Flowers102, "classes"):  # only recent torchvision versions list the names
        assert FLOWERS102_CLASS_NAMES == tuple(Flowers102.classes)
    assert len(FLOWERS102_CLASS_NAMES) == len(set(FLOWERS102_CLASS_NAMES)) == 102
    assert FLOWERS102_URL_PREFIX == Flowers102._download_url_prefix
    assert FLOWERS102_MD5 == dict(Flowers102._file_dict.values())
    files = dataset_spec("flowers102").files
    assert [file.url for file in files] == [FLOWERS102_URL_PREFIX + name for name in FLOWERS102_MD5]


def test_flowers102_announces_its_long_steps(
    root: Path,
    flowers_files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_fake_official_files(monkeypatch, "flowers102", flowers_files, UNREACHABLE_URL)
    get_dataset("flowers102", root, str(flowers_files["setid.mat"].parent))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Extracting {flowers_files['102flowers.tgz']} ..."
    assert lines[1].startswith("Converting the images")
    assert lines[2].startswith("flowers102 is ready")


def test_flowers102_folder_with_some_official_files_names_the_missing_one(
    root: Path, flowers_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_fake_official_files(monkeypatch, "flowers102", flowers_files, UNREACHABLE_URL)
    usb = tmp_path / "usb"
    usb.mkdir()
    for name in ("102flowers.tgz", "imagelabels.mat"):
        (usb / name).write_bytes(flowers_files[name].read_bytes())
    with pytest.raises(DataScriptError) as caught:
        get_dataset("flowers102", root, str(usb))
    message = str(caught.value)
    assert "holds 102flowers.tgz, imagelabels.mat but not setid.mat" in message
    assert UNREACHABLE_URL + "setid.mat" in message
    assert "split folder" not in message
    assert not (root / "flowers102").exists()


def test_flowers102_single_file_url_is_refused_before_downloading(
    root: Path, flowers_files: dict[str, Path]
) -> None:
    with FileServer({"102flowers.tgz": flowers_files["102flowers.tgz"].read_bytes()}) as server:
        with pytest.raises(DataScriptError, match="102flowers.tgz alone is not enough.*end"):
            get_dataset("flowers102", root, server.url("102flowers.tgz"), progress=False)
    assert server.requests == []
    assert not (root / ".downloads").exists()


def test_a_second_get_leaves_the_running_ones_scratch_alone(root: Path, tmp_path: Path) -> None:
    with scratch_dir(root, "hymenoptera") as running:
        (running / "extracted").mkdir()
        get_dataset("hymenoptera", root, str(fake_hymenoptera_zip(tmp_path)))
        assert (running / "extracted").is_dir()
    assert check_dataset(root / "hymenoptera").counts == hymenoptera_layout()


def test_flowers102_official_files_are_checksummed(
    root: Path, flowers_files: dict[str, Path], tmp_path: Path
) -> None:
    # With the real md5s pinned in the registry, the fakes must be refused.
    with pytest.raises(ChecksumError, match="md5"):
        get_dataset("flowers102", root, str(flowers_files["setid.mat"].parent))
    assert not (root / "flowers102").exists()


def test_flowers102_from_a_mirror_folder_url(
    root: Path, flowers_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    served = {f"mirror/{name}": path.read_bytes() for name, path in flowers_files.items()}
    with FileServer(served) as server:
        use_fake_official_files(monkeypatch, "flowers102", flowers_files, UNREACHABLE_URL)
        get_dataset("flowers102", root, server.url("mirror/"), progress=False)
    assert {path for path, _ in server.requests} == {f"/{name}" for name in served}
    assert sum(sum(c.values()) for c in check_dataset(root / "flowers102").counts.values()) == 306


def test_flowers102_image_archive_alone_explains_what_else_is_needed(
    root: Path, flowers_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fake_official_files(monkeypatch, "flowers102", flowers_files, UNREACHABLE_URL)
    with pytest.raises(DataScriptError, match="imagelabels.mat, setid.mat"):
        get_dataset("flowers102", root, str(flowers_files["102flowers.tgz"]))


def test_flowers102_without_scipy_says_how_to_install_it(
    root: Path, flowers_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fake_official_files(monkeypatch, "flowers102", flowers_files, UNREACHABLE_URL)
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(DataScriptError, match="pip install scipy"):
        get_dataset("flowers102", root, str(flowers_files["setid.mat"].parent))
    assert not (root / "flowers102").exists()
