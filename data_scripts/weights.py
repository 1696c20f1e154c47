"""The ``weights`` command: pre-fetch pretrained weights, install them from a folder, list them.

Where the files live, how one is downloaded and how it is checked is ``coursekit.models``'
job (``checkpoint_dir``, ``download_weights_file``, ``weights_hash_mismatch``); this module
adds the command line's side: names to URLs, ``--from FOLDER``, ``--list`` and messages:

    >>> fetch_weights(["resnet18"])  # doctest: +SKIP
    [PosixPath('/root/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth')]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from coursekit.models import (
    checkpoint_dir,
    download_weights_file,
    weights_file_name,
    weights_hash_mismatch,
)
from data_scripts.download import NETWORK_ERRORS
from data_scripts.errors import ChecksumError, DataScriptError, DownloadError
from data_scripts.files import copy_file_atomically

DEFAULT_MODELS: tuple[str, ...] = ("resnet18",)


@dataclass(frozen=True)
class CachedWeights:
    """One file in the checkpoint cache."""

    path: Path
    size_bytes: int


def weights_url(name: str) -> str:
    """The download URL of ``name``'s default weights, or of an exact weights entry.

    ``name`` is a model builder ("resnet50") or a weights entry ("ResNet50_Weights.IMAGENET1K_V2").

    >>> weights_url("resnet18")
    'https://download.pytorch.org/models/resnet18-f37072fd.pth'
    """
    from torchvision import models

    try:
        weights = models.get_weight(name) if "." in name else models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        raise DataScriptError(
            f"Unknown model or weights {name!r}. Fix: use a torchvision model name such as "
            "resnet18, resnet50, vgg16, mobilenet_v3_small or efficientnet_b0 "
            "(all: python -c 'import torchvision; print(torchvision.models.list_models())'), "
            "or a weights entry such as ResNet50_Weights.IMAGENET1K_V2."
        ) from None
    return weights.url


def fetch_weights(
    names: list[str] | tuple[str, ...] = DEFAULT_MODELS, *, progress: bool = True
) -> list[Path]:
    """Download the weights of ``names`` into the cache (hash-checked); cached files are kept.

    >>> [p.name for p in fetch_weights(["resnet18"])]  # doctest: +SKIP
    ['resnet18-f37072fd.pth']
    """
    return [download_weights(weights_url(name), name, progress=progress) for name in names]


def download_weights(url: str, name: str, *, progress: bool = True) -> Path:
    """Download one weights file of model ``name`` into the cache, checking its hash prefix.

    A file already in the cache is kept if its hash matches its name, else fetched again.

    >>> download_weights(weights_url("resnet18"), "resnet18")  # doctest: +SKIP
    PosixPath('/root/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth')
    """
    destination = checkpoint_dir() / weights_file_name(url)
    if destination.is_file():
        wrong_hash = weights_hash_mismatch(destination)
        if wrong_hash is None:
            print(f"{destination.name} is already cached in {destination.parent}.")
            return destination
        print(f"{destination} is damaged: {wrong_hash}. Downloading it again.")
        destination.unlink()
    try:
        download_weights_file(url, destination, progress=progress)
    except NETWORK_ERRORS as error:
        raise DownloadError(
            f"Could not download {url}: {getattr(error, 'reason', error)}. This computer seems to be "
            "offline, or the server cannot be reached from here. Fix: download that file on a "
            "computer with internet, put it in a folder and run "
            f"`python -m data_scripts weights {name} --from FOLDER`. Meanwhile smoke runs use "
            "random weights; full runs of the transfer-learning lessons need the file."
        ) from error
    except RuntimeError as error:  # torch.hub's "invalid hash value"
        raise ChecksumError(
            f"{destination.name} downloaded from {url} is damaged ({error}); it was not kept. "
            "Fix: run the command again."
        ) from error
    print(f"Cached {destination.name} in {destination.parent}.")
    return destination


def install_weights_from(
    folder: Path, names: list[str] | tuple[str, ...] = DEFAULT_MODELS
) -> list[Path]:
    """Copy the weights of ``names`` from ``folder`` into the cache, after checking their hash.

    The file must carry the name torchvision downloads it under (resnet18-f37072fd.pth);
    its SHA-256 must start with the hash in that name.

    >>> install_weights_from(Path("/mnt/usb/weights"), ["resnet18"])  # doctest: +SKIP
    [PosixPath('/root/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth')]
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataScriptError(
            f"--from {folder}: no such folder. Fix: give the folder that holds the .pth files."
        )
    return [_install_one(folder, weights_url(name)) for name in names]


def _install_one(folder: Path, url: str) -> Path:
    file_name = weights_file_name(url)
    source = folder / file_name
    if not source.is_file():
        present = ", ".join(sorted(p.name for p in folder.glob("*.pth"))) or "no .pth files"
        raise DataScriptError(
            f"{folder} has no {file_name} (it has: {present}). Fix: put that exact file, "
            f"keeping its name, into {folder} (download it from {url} on a computer with "
            "internet), then run this command again: it checks the file's hash before "
            "installing it. Never copy weights into the torch cache by hand: the lessons "
            "load what is there."
        )
    wrong_hash = weights_hash_mismatch(source)
    if wrong_hash is not None:
        raise ChecksumError(
            f"{source} is damaged or not the real file: {wrong_hash}. Nothing was installed. "
            "Fix: copy the file again from a good source."
        )
    destination = checkpoint_dir() / file_name
    copy_file_atomically(source, destination)
    print(f"Installed {file_name} into {destination.parent}.")
    return destination


def cached_weights() -> list[CachedWeights]:
    """The weights files in the torch cache, by name.

    >>> [w.path.name for w in cached_weights()]  # doctest: +SKIP
    ['resnet18-f37072fd.pth']
    """
    folder = checkpoint_dir()
    if not folder.is_dir():
        return []
    return [
        CachedWeights(path, path.stat().st_size)
        for path in sorted(folder.iterdir())
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith(".partial")
    ]


def describe_cache() -> str:
    """The ``weights --list`` text: the cache folder and each file with its size.

    >>> print(describe_cache())  # doctest: +SKIP
    Weights cache: /root/.cache/torch/hub/checkpoints
      resnet18-f37072fd.pth  44.7 MB
    """
    cached = cached_weights()
    lines = [f"Weights cache: {checkpoint_dir()}"]
    if not cached:
        lines.append("  (empty) Fetch some with: python -m data_scripts weights resnet18")
    lines += [f"  {w.path.name}  {w.size_bytes / 1e6:.1f} MB" for w in cached]
    return "\n".join(lines)
