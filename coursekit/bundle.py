"""Portable bundles: one ``.pt`` file with a model's weights and everything needed to use them.

A bundle (``export_bundle`` / ``load_bundle``) holds the weights, the class names, the
architecture name and the preprocessing, made of plain values and tensors only so that
``torch.load(path, weights_only=True)`` can read it safely. A bundle of googlenet or
inception_v3 also holds ``arch_options`` (``aux_logits``, ``transform_input``): pass them to
``torchvision.models.get_model`` to rebuild the model.

    >>> bundle = load_bundle("runs/flowers.pt")  # doctest: +SKIP
    >>> bundle.predict("rose.jpg").label  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import os
import pickle
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from PIL import Image
from torch import nn

from coursekit._model_state import DeviceLike
from coursekit._safe_io import atomic_write, first_unsafe_value
from coursekit.config import pick_device
from coursekit.data import eval_transforms
from coursekit.infer import ImageInput, Prediction, predict_folder, predict_image
from coursekit.models import architecture_options, random_init_model, resnet18, resnet34, resnet50

BUNDLE_FORMAT = "coursekit-bundle"
BUNDLE_VERSION = 1
_BUNDLE_KEYS = (
    "format", "version", "state_dict", "class_names", "arch", "num_classes",
    "image_size", "resize_size", "mean", "std", "extra",
)  # fmt: skip

#: How to make a bundle, quoted by every error about a file that is not one.
_EXPORT_CALL = (
    "ck.export_bundle(path, model, class_names=..., arch=..., image_size=..., "
    "resize_size=..., mean=..., std=...)"
)

#: Architecture names that build coursekit's from-scratch networks. Their state_dict keys
#: equal torchvision's, so a bundle exported under either name loads into either model.
COURSEKIT_ARCHS: dict[str, Callable[..., nn.Module]] = {
    "coursekit.resnet18": resnet18,
    "coursekit.resnet34": resnet34,
    "coursekit.resnet50": resnet50,
}


class BundleError(ValueError):
    """A file is not a usable coursekit bundle, or a model cannot be exported as one."""


@dataclass(repr=False)
class Bundle:
    """A model loaded from a bundle, ready to predict with its own preprocessing.

    >>> bundle = load_bundle("runs/flowers.pt")  # doctest: +SKIP
    >>> bundle.predict("rose.jpg").label  # doctest: +SKIP
    """

    model: nn.Module
    class_names: list[str]
    transform: Callable[[Image.Image], torch.Tensor]
    arch: str
    #: Everything stored in the file except the weights (image_size, mean, std, extra, ...).
    metadata: dict[str, Any]

    def __repr__(self) -> str:
        # The default repr would print every layer of the model in a notebook.
        return (
            f"Bundle(arch={self.arch!r}, classes={len(self.class_names)}, "
            f"image_size={self.metadata.get('image_size')})"
        )

    def predict(self, image: ImageInput, top_k: int = 5) -> Prediction:
        """Top-k prediction for one image path or PIL image.

        >>> bundle.predict("rose.jpg", top_k=3).top_classes  # doctest: +SKIP
        """
        return predict_image(self.model, image, self.transform, self.class_names, top_k=top_k)

    def predict_folder(
        self,
        folder: str | os.PathLike,
        top_k: int = 5,
        batch_size: int | None = None,
        progress: bool = False,
        num_workers: int = 0,
        channels_last: bool | None = None,
    ) -> list[Prediction]:
        """Predictions for every image under ``folder`` (see ``predict_folder``).

        >>> print(predictions_table(bundle.predict_folder("photos")))  # doctest: +SKIP
        """
        return predict_folder(
            self.model,
            folder,
            self.transform,
            self.class_names,
            batch_size=batch_size,
            top_k=top_k,
            progress=progress,
            num_workers=num_workers,
            channels_last=channels_last,
        )


def export_bundle(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    class_names: Sequence[str],
    arch: str,
    image_size: int,
    resize_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    extra: Any = None,
) -> Path:
    """Save the model and everything needed to use it as ONE ``.pt`` file (written atomically).

    ``arch`` names the architecture: a torchvision classifier ("resnet18", "efficientnet_b0",
    ...) or "coursekit.resnet18" / "coursekit.resnet50". The weights are checked against it
    now, so a wrong arch or class count fails here rather than when someone loads the file.
    For googlenet and inception_v3 the model's ``aux_logits`` and ``transform_input`` are
    stored too (as ``arch_options``), so the loaded model computes the same outputs.

    >>> export_bundle("runs/flowers.pt", model, class_names=names, arch="resnet18",  # doctest: +SKIP
    ...               image_size=224, resize_size=256, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    """
    path = Path(path)
    where = f"Cannot export {path}"
    names = list(class_names)
    if not names or not all(isinstance(name, str) for name in names):
        raise BundleError(
            f"{where}: class_names must be a non-empty list of strings, got {names!r}."
        )
    state_dict = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    options = {} if arch in COURSEKIT_ARCHS else architecture_options(model, arch)
    # Build the reference on the meta device: shapes only, no memory and no random init.
    with torch.device("meta"):
        reference = _build_model(arch, len(names), where, options)
    _check_weights_fit(reference.state_dict(), state_dict, where, arch, len(names))
    extra = {} if extra is None else extra
    _check_plain(extra, "extra", where)
    bundle = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "state_dict": state_dict,
        "class_names": names,
        "arch": arch,
        "num_classes": len(names),
        "image_size": int(image_size),
        "resize_size": int(resize_size),
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "extra": extra,
    }
    if options:
        bundle["arch_options"] = options
    with atomic_write(path, "wb") as handle:
        torch.save(bundle, handle)
    return path


def load_bundle(path: str | os.PathLike, device: DeviceLike = "cpu") -> Bundle:
    """Load a bundle written by ``export_bundle``: model in eval mode on ``device``, ready to predict.

    No training code is needed: the model is rebuilt from its architecture name, and the file
    is read with ``torch.load(weights_only=True)``, which cannot run code hidden in a file.

    >>> bundle = load_bundle("runs/flowers.pt", device="cpu")  # doctest: +SKIP
    >>> bundle.predict("rose.jpg").label  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No bundle file at {path}. Check the path (bundles are written by ck.export_bundle)."
        )
    target = pick_device(str(device))
    contents = _read_bundle(path, target)
    where = str(path)
    options = contents.get("arch_options", {})
    _check_class_names(path, contents)
    try:
        # Shapes first, on the meta device: a forged num_classes costs no memory there.
        with torch.device("meta"):
            reference = _build_model(contents["arch"], contents["num_classes"], where, options)
        _check_weights_fit(
            reference.state_dict(),
            contents["state_dict"],
            where,
            contents["arch"],
            contents["num_classes"],
        )
        model = _build_model(contents["arch"], contents["num_classes"], where, options)
    except TypeError as error:  # arch_options edited by hand, or for another architecture
        raise BundleError(
            f"{path} is a damaged bundle: its arch_options {options!r} do not fit "
            f"{contents['arch']} ({error}). Export the model again with {_EXPORT_CALL}."
        ) from error
    model.load_state_dict(contents["state_dict"])
    model.to(target).eval()
    transform = eval_transforms(
        contents["image_size"],
        contents["resize_size"],
        tuple(contents["mean"]),
        tuple(contents["std"]),
    )
    return Bundle(
        model=model,
        class_names=list(contents["class_names"]),
        transform=transform,
        arch=contents["arch"],
        metadata={key: value for key, value in contents.items() if key != "state_dict"},
    )


def _read_bundle(path: Path, device: torch.device) -> dict[str, Any]:
    """The bundle dictionary in ``path``, or a BundleError saying what the file is instead."""
    try:
        # map_location: a bundle saved from a GPU still loads on a CPU-only machine.
        contents = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError) as err:
        raise BundleError(
            f"{path} is not a coursekit bundle: {_why_unloadable(path, err)}"
        ) from err
    if not isinstance(contents, dict) or contents.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path} is not a coursekit bundle: {_describe(contents)}")
    missing = [key for key in _BUNDLE_KEYS if key not in contents]
    if missing:
        raise BundleError(
            f"{path} is a damaged bundle: it lacks {', '.join(missing)}. "
            f"Export the model again with {_EXPORT_CALL}."
        )
    if contents["version"] != BUNDLE_VERSION:
        raise BundleError(
            f"{path} is a bundle of format version {contents['version']!r}, but this coursekit "
            f"reads version {BUNDLE_VERSION}. Update coursekit (pip install -U -e .)."
        )
    return contents


def _check_class_names(path: Path, contents: dict[str, Any]) -> None:
    """A bundle's class count must be a positive whole number that its class names match."""
    names, count = contents["class_names"], contents["num_classes"]
    if type(count) is not int or count < 1:
        raise BundleError(
            f"{path} is a damaged bundle: num_classes is {count!r}, not a whole number of "
            f"classes. Export the model again with {_EXPORT_CALL}."
        )
    if not isinstance(names, list) or len(names) != count:
        listed = f"{len(names)} class names" if isinstance(names, list) else repr(names)
        raise BundleError(
            f"{path} is a damaged bundle: it holds {listed} but num_classes is {count}, so "
            f"predictions could not be named. Export the model again with {_EXPORT_CALL}."
        )


def _why_unloadable(path: Path, error: Exception) -> str:
    # torch.save writes a zip archive: anything else is another kind of file or a cut-off copy.
    if zipfile.is_zipfile(path) and isinstance(error, pickle.UnpicklingError):
        return (
            "it holds Python objects that safe loading (torch.load(weights_only=True)) refuses, "
            f"such as a whole model saved with torch.save(model). Export the model with {_EXPORT_CALL}."
        )
    return (
        "it is not a file written by torch.save, or it is truncated (an interrupted download "
        f"or copy). Copy it again, or export the model with {_EXPORT_CALL}."
    )


def _describe(contents: Any) -> str:
    """What a non-bundle .pt file most likely is, and how to get a bundle from it."""
    if not isinstance(contents, dict):
        return f"it holds a {type(contents).__name__}. Export your model with {_EXPORT_CALL}."
    keys = [str(key) for key in contents]
    if contents and all(isinstance(value, torch.Tensor) for value in contents.values()):
        return (
            "it is a bare state_dict (model.state_dict()): weights without class names, "
            "architecture or preprocessing. Load it into your model with "
            f"model.load_state_dict(...), then export a bundle with {_EXPORT_CALL}."
        )
    if any("optimizer" in key or key == "epoch" for key in keys):
        return (
            "this is a training checkpoint (weights plus optimizer state, for resuming "
            "training). Load it into your model with ck.load_checkpoint(path, model), then "
            f"export a bundle with {_EXPORT_CALL}."
        )
    return (
        f"it is a dictionary with keys {keys[:8]} and no format='{BUNDLE_FORMAT}'. "
        f"Export your model with {_EXPORT_CALL}."
    )


def _build_model(
    arch: str, num_classes: int, where: str, options: dict[str, Any] | None = None
) -> nn.Module:
    """A randomly initialised model of architecture ``arch`` with ``num_classes`` outputs.

    torchvision models are built as ``coursekit.models.pretrained`` builds them, adjusted by
    ``options`` (the ``arch_options`` of a googlenet or inception_v3 bundle).
    """
    if arch in COURSEKIT_ARCHS:
        return COURSEKIT_ARCHS[arch](num_classes=num_classes)
    torchvision_archs = torchvision.models.list_models(module=torchvision.models)
    if arch in torchvision_archs:
        return random_init_model(arch, num_classes, **(options or {}))
    close = difflib.get_close_matches(
        str(arch).lower(), [*torchvision_archs, *COURSEKIT_ARCHS], n=3
    )
    suggestion = f" Did you mean {' or '.join(close)}?" if close else ""
    raise BundleError(
        f"{where}: unknown arch {arch!r}.{suggestion} Use a torchvision classifier name "
        "(resnet18, resnet50, vgg16, efficientnet_b0, ...; all of them: "
        "torchvision.models.list_models(module=torchvision.models)) or one of "
        f"{', '.join(COURSEKIT_ARCHS)}."
    )


def _check_weights_fit(
    expected: dict[str, torch.Tensor],
    weights: dict[str, torch.Tensor],
    where: str,
    arch: str,
    num_classes: int,
) -> None:
    """Raise a BundleError naming the first key whose presence or shape does not match."""
    model_desc = f"{arch} with {num_classes} classes"
    fix = (
        "Use the arch the model was built with and the class names it was trained on "
        f"({num_classes} given)."
    )
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    if missing or unexpected:
        first = f"it lacks {missing[0]!r}" if missing else f"it has an extra {unexpected[0]!r}"
        raise BundleError(f"{where}: the weights do not fit {model_desc}: {first}. {fix}")
    for key, reference in expected.items():
        if weights[key].shape != reference.shape:
            raise BundleError(
                f"{where}: {key!r} has shape {tuple(weights[key].shape)} in the weights but "
                f"{model_desc} expects {tuple(reference.shape)}. {fix}"
            )


def _check_plain(value: Any, name: str, where: str) -> None:
    """Refuse values that ``torch.load(weights_only=True)`` would refuse to read back."""
    if unsafe := first_unsafe_value(value, name):
        raise BundleError(
            f"{where}: {unsafe[0]} is a {unsafe[1]}. A bundle holds only plain values "
            "(str, int, float, bool, None, lists, dicts, tensors) so that it loads with "
            "torch.load(weights_only=True); convert it first, e.g. str(path) or float(x)."
        )
