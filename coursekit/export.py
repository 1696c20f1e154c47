"""Shipping a model: export to ONNX with its preprocessing, check parity, run it with ONNX Runtime.

A bundle (``export_bundle``) can only be used by torch. ``export_onnx`` writes the same model
as an ONNX graph that ONNX Runtime, a browser or a phone can run, and stores the class names
and the preprocessing (image size, resize size, mean, std, arch) inside the file as ONNX
``metadata_props``. It then runs the PyTorch model and the ONNX file on one batch and reports
the largest logit difference and whether the top-1 classes agree.

    >>> report = export_onnx("runs/flowers.pt", "runs/flowers.onnx")  # doctest: +SKIP
    >>> report.max_abs_diff < 1e-4 and report.top1_agree              # doctest: +SKIP
    True

``load_onnx`` gives back an ``OnnxModel``: an ``nn.Module`` whose forward runs the ONNX
Runtime session, so the helpers of ``coursekit.infer`` and ``coursekit.timing``
(``predict_folder``, ``time_inference``, ...) work on it with the same preprocessing as the
PyTorch model.
ONNX and ONNX Runtime are the optional extra ``deploy`` (``pip install -e ".[deploy]"``).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from coursekit.bundle import Bundle, load_bundle
from coursekit.config import IMAGENET_MEAN, IMAGENET_STD
from coursekit.data import eval_transforms
from coursekit.infer import ImageInput, Prediction, predict_folder, predict_image

#: The ONNX operator set written when none is asked for: one that ONNX Runtime 1.17+ runs
#: and torch's exporter supports natively.
DEFAULT_OPSET = 18
#: ``metadata_props`` key that marks a file written by ``export_onnx``.
ONNX_FORMAT = "coursekit-onnx"
_METADATA_KEYS = ("class_names", "arch", "image_size", "resize_size", "mean", "std")
_INSTALL_HINT = (
    'Install the deploy extra: pip install -e ".[deploy]" (onnx, onnxruntime, onnxscript).'
)


class OnnxExportError(ValueError):
    """A model cannot be exported, or a file is not an ONNX file written by ``export_onnx``."""


@dataclass(frozen=True)
class ParityReport:
    """How closely the ONNX file reproduces the PyTorch model on one batch.

    >>> r = ParityReport(max_abs_diff=2e-6, top1_agree=True, batch_size=4, max_abs_logit=3.1)
    >>> r.ok(), str(r).split(";")[0]
    (True, 'largest logit difference 2.0e-06 (logits up to 3.1)')
    """

    max_abs_diff: float
    top1_agree: bool
    batch_size: int
    #: The largest |logit| of the PyTorch model: the scale the difference is measured against.
    max_abs_logit: float

    def ok(self, tolerance: float = 1e-4) -> bool:
        """True when every logit is within ``tolerance`` and every top-1 class agrees."""
        return self.max_abs_diff <= tolerance and self.top1_agree

    def __str__(self) -> str:
        agree = "all agree" if self.top1_agree else "SOME DIFFER"
        return (
            f"largest logit difference {self.max_abs_diff:.1e} (logits up to "
            f"{self.max_abs_logit:.2g}); top-1 classes of "
            f"{self.batch_size} images: {agree}"
        )


@dataclass(frozen=True)
class ExportReport:
    """What ``export_onnx`` wrote and how well the file matches the model."""

    path: Path
    opset: int
    metadata: dict[str, Any]
    parity: ParityReport | None

    def __str__(self) -> str:
        lines = [
            f"Wrote {self.path} (ONNX opset {self.opset}, dynamic batch size, "
            f"{len(self.metadata['class_names'])} classes, {self.metadata['arch']}, "
            f"{self.metadata['image_size']} px)"
        ]
        if self.parity is not None:
            lines.append(f"Parity with PyTorch: {self.parity}")
        return "\n".join(lines)


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as error:
        raise ImportError(f"{module} is not installed. {_INSTALL_HINT}") from error


def _bundle_from(bundle_or_model: Bundle | nn.Module | str | os.PathLike, **given: Any) -> Bundle:
    """A Bundle from a bundle, a bundle path, or a model plus its metadata."""
    if isinstance(bundle_or_model, Bundle):
        return bundle_or_model
    if isinstance(bundle_or_model, str | os.PathLike):
        return load_bundle(bundle_or_model)
    if not isinstance(bundle_or_model, nn.Module):
        raise TypeError(
            f"export_onnx takes a Bundle, a bundle path or an nn.Module, not "
            f"{type(bundle_or_model).__name__}."
        )
    if not given.get("class_names"):
        raise OnnxExportError(
            "Exporting a bare model needs its class names: export_onnx(model, path, "
            "class_names=train_ds.classes, arch=..., image_size=..., resize_size=...)."
        )
    mean, std = tuple(given["mean"]), tuple(given["std"])
    metadata = {
        "arch": given["arch"],
        "image_size": int(given["image_size"]),
        "resize_size": int(given["resize_size"]),
        "mean": list(mean),
        "std": list(std),
    }
    return Bundle(
        model=bundle_or_model,
        class_names=list(given["class_names"]),
        transform=eval_transforms(metadata["image_size"], metadata["resize_size"], mean, std),
        arch=str(given["arch"]),
        metadata=metadata,
    )


def export_onnx(
    bundle_or_model: Bundle | nn.Module | str | os.PathLike,
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    arch: str = "unknown",
    image_size: int = 224,
    resize_size: int = 256,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    opset: int = DEFAULT_OPSET,
    parity_batch: int = 4,
) -> ExportReport:
    """Write ``bundle_or_model`` as an ONNX file with its preprocessing, then check parity.

    ``bundle_or_model`` is a ``Bundle``, the path of a bundle file, or a model (then give
    ``class_names``, ``arch``, sizes, ``mean``, ``std``). The batch dimension stays dynamic.
    ``parity_batch`` random images are run through both; 0 skips the check.

    >>> report = export_onnx(bundle, "model.onnx")  # doctest: +SKIP
    >>> print(report)                               # doctest: +SKIP
    """
    onnx = _require("onnx")
    bundle = _bundle_from(
        bundle_or_model, class_names=class_names, arch=arch, image_size=image_size,
        resize_size=resize_size, mean=mean, std=std,
    )  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = int(bundle.metadata["image_size"])
    model = bundle.model.cpu().eval()
    example = torch.randn(2, 3, size, size)
    _export_graph(model, example, path, opset)
    metadata = {key: bundle.metadata[key] for key in _METADATA_KEYS if key != "class_names"}
    metadata["class_names"] = list(bundle.class_names)
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(
        proto, {"format": ONNX_FORMAT, **{key: json.dumps(metadata[key]) for key in _METADATA_KEYS}}
    )
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    parity = None
    if parity_batch > 0:
        generator = torch.Generator().manual_seed(0)
        batch = torch.randn(parity_batch, 3, size, size, generator=generator)
        parity = check_parity(model, load_onnx(path), batch)
    return ExportReport(path=path, opset=opset, metadata=metadata, parity=parity)


def _export_graph(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    """torch's ONNX exporter (torch.export based; needs onnxscript), batch dimension dynamic."""
    _require("onnxscript")
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings():
        # The exporter reports its progress and passes as warnings and prints: not the learner's business.
        warnings.simplefilter("ignore", UserWarning)
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
    if program is None:
        raise OnnxExportError(f"torch.onnx.export returned no program for {path}.")
    program.save(str(path), external_data=False)


def check_parity(
    torch_model: nn.Module, onnx_model: nn.Module, batch: torch.Tensor
) -> ParityReport:
    """Run both models on ``batch``: the largest absolute logit difference and top-1 agreement.

    >>> check_parity(model, load_onnx("model.onnx"), torch.randn(4, 3, 224, 224))  # doctest: +SKIP
    """
    with torch.inference_mode():
        expected = torch_model.eval()(batch).float()
        actual = onnx_model.eval()(batch).float()
    return ParityReport(
        max_abs_diff=float((expected - actual).abs().max()),
        top1_agree=bool((expected.argmax(1) == actual.argmax(1)).all()),
        batch_size=len(batch),
        max_abs_logit=float(expected.abs().max()),
    )


class OnnxModel(nn.Module):
    """An ONNX file run by ONNX Runtime on the CPU, usable wherever coursekit takes a model.

    ``forward`` takes and returns torch tensors, so ``predict_folder``, ``time_inference``
    and ``check_parity`` work unchanged. ``class_names``, ``transform`` and ``metadata``
    come from the file.

    >>> onnx_model = load_onnx("model.onnx")       # doctest: +SKIP
    >>> onnx_model.predict("rose.jpg").label       # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        super().__init__()
        ort = _require("onnxruntime")
        self.path = Path(path)
        options = ort.SessionOptions()
        # By default idle worker threads keep spinning for a while after each call, taking a
        # core away from everything else (PyTorch, the web server) on a small machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own classes for every bad file
            raise OnnxExportError(
                f"{self.path} is not a usable ONNX file ({str(error).splitlines()[0]}). "
                "Export it again with ck.export_onnx(bundle, path)."
            ) from error
        self.input_name = self.session.get_inputs()[0].name
        self.metadata = _read_metadata(self.path, self.session.get_modelmeta().custom_metadata_map)
        self.class_names: list[str] = list(self.metadata["class_names"])
        self.arch: str = self.metadata["arch"]
        self.transform = eval_transforms(
            self.metadata["image_size"],
            self.metadata["resize_size"],
            tuple(self.metadata["mean"]),
            tuple(self.metadata["std"]),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # ONNX Runtime reads plain NCHW float32 memory; a channels-last batch is copied.
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        (logits,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(logits)

    def predict(self, image: ImageInput, top_k: int = 5) -> Prediction:
        """Top-k prediction for one image path or PIL image (see ``predict_image``)."""
        return predict_image(self, image, self.transform, self.class_names, top_k=top_k)

    def predict_folder(
        self, folder: str | os.PathLike, top_k: int = 5, batch_size: int = 32
    ) -> list[Prediction]:
        """Predictions for every image under ``folder``, preprocessed as ``predict_folder`` does.

        >>> preds = load_onnx("model.onnx").predict_folder("photos")  # doctest: +SKIP
        """
        return predict_folder(
            self, folder, self.transform, self.class_names, batch_size=batch_size, top_k=top_k
        )

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, arch={self.arch!r}, classes={len(self.class_names)})"


def _read_metadata(path: Path, props: dict[str, str]) -> dict[str, Any]:
    if props.get("format") != ONNX_FORMAT:
        raise OnnxExportError(
            f"{path} has no coursekit metadata (class names, preprocessing): it was not written "
            "by ck.export_onnx. Export it with ck.export_onnx(bundle, path)."
        )
    missing = [key for key in _METADATA_KEYS if key not in props]
    if missing:
        raise OnnxExportError(
            f"{path} lacks the metadata {', '.join(missing)}. Export it again with "
            "ck.export_onnx(bundle, path)."
        )
    return {key: json.loads(props[key]) for key in _METADATA_KEYS}


def load_onnx(path: str | os.PathLike, threads: int | None = None) -> OnnxModel:
    """Open an ONNX file written by ``export_onnx`` with ONNX Runtime (CPU).

    ``threads`` None lets ONNX Runtime use every core.

    >>> load_onnx("runs/flowers.onnx").predict("rose.jpg").label  # doctest: +SKIP
    """
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"No ONNX file at {path}. Write one with ck.export_onnx(bundle, path) or "
            "python -m coursekit export BUNDLE --onnx OUT.onnx."
        )
    return OnnxModel(path, threads=threads)


def quantize_onnx(
    path: str | os.PathLike, out: str | os.PathLike, op_types: Sequence[str] | None = None
) -> Path:
    """Dynamic int8 quantization of an exported file (weights stored as int8), metadata kept.

    Dynamic quantization converts the weights once and the activations on the fly, so no
    calibration images are needed. ``op_types`` None quantizes every supported operator;
    ``["MatMul", "Gemm"]`` only the fully connected layers (convolutions stay float32).
    Check the accuracy change before shipping it: for some networks it is large.

    >>> quantize_onnx("model.onnx", "model.int8.onnx")  # doctest: +SKIP
    """
    _require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = Path(out)
    # Its advice to pre-process the model first goes to the root logger on every call.
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(
            str(path),
            str(out),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(op_types) if op_types else None,
        )
    finally:
        logging.disable(logging.NOTSET)
    return out
