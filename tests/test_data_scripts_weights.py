"""data_scripts.weights: pre-fetching and installing torchvision weights into TORCH_HOME."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
import torch
from data_scripts_helpers import UNREACHABLE_URL, FileServer
from torchvision.models import ResNet18_Weights, ResNet50_Weights, get_model_weights

import data_scripts.weights as weights
from coursekit.models import checkpoint_dir, expected_hash_prefix, weights_file_name
from data_scripts.errors import ChecksumError, DataScriptError, DownloadError


@pytest.fixture(autouse=True)
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def fake_checkpoint() -> tuple[bytes, str]:
    """A real (tiny) state dict file and the 8-hex-digit hash prefix torchvision would name it by."""
    buffer = io.BytesIO()
    torch.save({"weight": torch.arange(4.0)}, buffer)
    payload = buffer.getvalue()
    return payload, hashlib.sha256(payload).hexdigest()[:8]


def test_cache_follows_torch_home(torch_home: Path) -> None:
    assert checkpoint_dir() == torch_home / "hub" / "checkpoints"


@pytest.mark.parametrize(
    "name", ["resnet18", "resnet50", "vgg16", "mobilenet_v3_small", "efficientnet_b0"]
)
def test_url_is_torchvision_default_weights(name: str) -> None:
    assert weights.weights_url(name) == get_model_weights(name).DEFAULT.url


def test_url_of_an_exact_weights_entry() -> None:
    assert (
        weights.weights_url("ResNet50_Weights.IMAGENET1K_V1") == ResNet50_Weights.IMAGENET1K_V1.url
    )


@pytest.mark.parametrize("name", ["resnet19", "ResNet18_Weights.NOPE"])
def test_unknown_name_lists_good_names(name: str) -> None:
    with pytest.raises(DataScriptError, match="resnet18, resnet50"):
        weights.weights_url(name)


def test_hash_prefix_comes_from_the_file_name() -> None:
    assert (
        expected_hash_prefix(weights_file_name(ResNet18_Weights.DEFAULT.url))
        == "f37072fd"
    )
    assert expected_hash_prefix("plain.pth") is None


def test_install_from_folder_checks_hash_and_torch_hub_then_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload, prefix = fake_checkpoint()
    url = f"https://download.pytorch.org/models/resnet18-{prefix}.pth"
    monkeypatch.setattr(weights, "weights_url", lambda name: url)
    usb = tmp_path / "usb stick"
    usb.mkdir()
    (usb / f"resnet18-{prefix}.pth").write_bytes(payload)

    (installed,) = weights.install_weights_from(usb, ["resnet18"])

    assert installed == checkpoint_dir() / f"resnet18-{prefix}.pth"
    assert installed.read_bytes() == payload
    # What the lessons do: torch.hub finds the file in the cache and checks its hash.
    state = torch.hub.load_state_dict_from_url(url, check_hash=True, weights_only=True)
    assert torch.equal(state["weight"], torch.arange(4.0))
    assert [w.path for w in weights.cached_weights()] == [installed]
    assert installed.name in weights.describe_cache()


def test_install_from_folder_refuses_a_file_with_the_wrong_hash(tmp_path: Path) -> None:
    real_name = weights_file_name(ResNet18_Weights.DEFAULT.url)  # resnet18-f37072fd.pth
    (tmp_path / real_name).write_bytes(b"not the real weights")
    with pytest.raises(ChecksumError, match="f37072fd"):
        weights.install_weights_from(tmp_path, ["resnet18"])
    assert weights.cached_weights() == []


def test_install_from_folder_without_the_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "resnet50-0676ba61.pth").write_bytes(b"x")
    with pytest.raises(DataScriptError, match=r"no resnet18-f37072fd\.pth.*resnet50-0676ba61\.pth"):
        weights.install_weights_from(tmp_path, ["resnet18"])


def test_download_into_the_cache_from_a_local_server() -> None:
    payload, prefix = fake_checkpoint()
    name = f"resnet18-{prefix}.pth"
    with FileServer({name: payload}) as server:
        path = weights.download_weights(server.url(name), "resnet18", progress=False)
        again = weights.download_weights(server.url(name), "resnet18", progress=False)
    assert path == again == checkpoint_dir() / name
    assert path.read_bytes() == payload
    assert len(server.requests) == 1  # the second call used the cache


def test_damaged_download_is_not_kept() -> None:
    with FileServer({"resnet18-00000000.pth": b"damaged"}) as server:
        with pytest.raises(ChecksumError, match="damaged"):
            weights.download_weights(
                server.url("resnet18-00000000.pth"), "resnet18", progress=False
            )
    assert list(checkpoint_dir().iterdir()) == []


def test_cached_file_with_the_wrong_hash_is_fetched_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    payload, prefix = fake_checkpoint()
    name = f"resnet18-{prefix}.pth"
    cached = checkpoint_dir() / name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(payload[:100])  # an interrupted copy, under the right name
    with FileServer({name: payload}) as server:
        path = weights.download_weights(server.url(name), "resnet18", progress=False)
    assert path == cached and cached.read_bytes() == payload
    assert len(server.requests) == 1
    out = capsys.readouterr().out
    assert f"{cached} is damaged" in out and f"its name says {prefix}" in out
    assert "already cached" not in out


def test_offline_download_names_the_model_in_the_from_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(weights, "weights_url", lambda name: UNREACHABLE_URL + "vgg16-397923af.pth")
    with pytest.raises(DownloadError, match="offline.*`python -m data_scripts weights vgg16 --from"):
        weights.fetch_weights(["vgg16"], progress=False)
    assert weights.cached_weights() == []
