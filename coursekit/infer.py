"""Using a trained model: predictions, timing, evaluation metrics and portable bundles.

Everything here runs the model the way inference must: ``model.eval()`` (dropout off,
BatchNorm uses its running statistics) inside ``torch.inference_mode()`` (no autograd
bookkeeping), with the same preprocessing as validation. Each module's own train/eval flag
is restored afterwards, so calling these helpers in the middle of training changes nothing.

    >>> pred = predict_image(model, "rose.jpg", transform, class_names)  # doctest: +SKIP
    >>> pred.label, round(pred.prob, 2)                                   # doctest: +SKIP
    ('rose', 0.93)

A *bundle* (``export_bundle`` / ``load_bundle``) is one ``.pt`` file with the weights and
everything needed to use them (class names, architecture name, preprocessing), made of plain
values and tensors only so that ``torch.load(path, weights_only=True)`` can read it safely.
A bundle of googlenet or inception_v3 also holds ``arch_options`` (``aux_logits``,
``transform_input``): pass them to ``torchvision.models.get_model`` to rebuild the model.
"""

from __future__ import annotations

import csv
import difflib
import math
import os
import pickle
import statistics
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from coursekit._model_state import eval_mode, model_device
from coursekit._safe_io import atomic_write, first_unsafe_value
from coursekit.config import pick_device
from coursekit.data import eval_transforms
from coursekit.folders import (
    UnreadableImageError,
    format_table,
    image_files,
    load_image,
    printable_path,
    to_rgb,
)
from coursekit.models import architecture_options, random_init_model, resnet18, resnet34, resnet50

#: An image given by its path or already opened with PIL.
ImageInput: TypeAlias = str | os.PathLike | Image.Image
#: Anything ``torch.device`` accepts, or "auto" (see ``config.pick_device``).
DeviceLike: TypeAlias = str | torch.device

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


# --------------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class Prediction:
    """The top-k classes the model gives one image, best first.

    >>> p = Prediction("a.jpg", ["rose", "tulip"], [0.9, 0.1], [3, 7], seconds=0.002)
    >>> p.label, p.prob, p.index
    ('rose', 0.9, 3)
    """

    #: The image's path, or "<image>" for an image passed in memory.
    source: str
    top_classes: list[str]
    top_probs: list[float]
    top_indices: list[int]
    #: This image's share of its batch's forward-pass time (preprocessing excluded). The
    #: first batch of each call runs once untimed first, so one-off set-up costs stay out.
    seconds: float

    @property
    def label(self) -> str:
        """Name of the most likely class."""
        return self.top_classes[0]

    @property
    def prob(self) -> float:
        """Probability of the most likely class."""
        return self.top_probs[0]

    @property
    def index(self) -> int:
        """Class index of the most likely class."""
        return self.top_indices[0]

    def as_row(self) -> dict[str, str | float]:
        """One flat row (file, label, prob, top1_label, top1_prob, ..., seconds) for CSVs.

        >>> Prediction("a.jpg", ["rose"], [0.9], [3], 0.002).as_row()["top1_label"]
        'rose'
        """
        row: dict[str, str | float] = {"file": self.source, "label": self.label, "prob": self.prob}
        for rank, (name, prob) in enumerate(
            zip(self.top_classes, self.top_probs, strict=True), start=1
        ):
            row[f"top{rank}_label"] = name
            row[f"top{rank}_prob"] = prob
        row["seconds"] = self.seconds
        return row


def predict_image(
    model: nn.Module,
    image: ImageInput,
    transform: Callable[[Image.Image], torch.Tensor],
    class_names: Sequence[str],
    device: DeviceLike | None = None,
    top_k: int = 5,
) -> Prediction:
    """Top-k prediction for one image (a path, opened as RGB with EXIF orientation, or a PIL image).

    ``transform`` must be the evaluation pipeline the model was validated with. ``device``
    None runs where the model already is; otherwise the model is moved to ``device``.

    >>> pred = predict_image(model, "photo.jpg", eval_transforms(224, 256, mean, std), names)  # doctest: +SKIP
    >>> print(pred.label, pred.top_probs)  # doctest: +SKIP
    """
    device = _resolve_device(model, device)
    tensor = transform(_open_rgb(image))
    source = _source_name(image)
    with evaluating(model):
        return _predict_batch(
            model, [tensor], [source], class_names, device, top_k, device.type == "cpu", True
        )[0]


def predict_images(
    model: nn.Module,
    images: Iterable[ImageInput],
    transform: Callable[[Image.Image], torch.Tensor],
    class_names: Sequence[str],
    device: DeviceLike | None = None,
    batch_size: int | None = None,
    top_k: int = 5,
    progress: bool = False,
    num_workers: int = 0,
    channels_last: bool | None = None,
) -> list[Prediction]:
    """Predictions for many images, ``batch_size`` at a time (one forward pass per batch).

    ``images`` is a list of paths or PIL images (for a folder, use ``predict_folder``). A
    file that is missing or cannot be read is skipped with one printed line naming it, so
    one bad file does not stop a folder of thousands. Results keep the input order.
    ``batch_size`` and ``channels_last`` (how each batch is stored in memory) default to
    the fastest ones for this model on this device, measured once by
    ``measure_batch_speeds``; pass a value to choose it yourself.
    ``num_workers`` > 0 decodes and transforms the next batches in that many DataLoader
    worker processes while the model runs (``settings.num_workers`` is the safe choice).

    >>> preds = predict_images(model, ["a.jpg", "b.png"], transform, names)  # doctest: +SKIP
    >>> [p.label for p in preds]  # doctest: +SKIP
    """
    if isinstance(images, str | os.PathLike | Image.Image):
        # A string is iterable too: without this, every character would be a "file".
        what = "one PIL image" if isinstance(images, Image.Image) else repr(os.fspath(images))
        raise TypeError(
            f"predict_images takes a list of images, but got {what}. For every image in a "
            "folder use predict_folder(model, folder, ...); for one image use "
            "predict_image(model, image, ...)."
        )
    if num_workers < 0:
        raise ValueError(f"num_workers={num_workers} must be 0 (no workers) or more.")
    _check_batch_size(batch_size)
    device = _resolve_device(model, device)
    to_predict = _ImagesToPredict(list(images), transform)
    if batch_size is None or channels_last is None:
        shape = to_predict.first_shape()
        if shape is None:  # nothing readable: every item is reported below, nothing to tune
            batch_size, channels_last = batch_size or 1, bool(channels_last)
        else:
            batch_size, channels_last = _choose_setup(
                model, shape, device, len(to_predict), batch_size, channels_last
            )
    loaded = DataLoader(
        to_predict,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=list,  # a batch stays a list: unreadable items hold no tensor to stack
    )
    predictions: list[Prediction] = []
    # Eval mode is set once for the whole folder: switching every module of a deep model in
    # and out of it costs close to a millisecond, too much to pay for every batch.
    with evaluating(model):
        for batch in tqdm(loaded, disable=not progress, desc="predict", unit="batch"):
            tensors, sources = _readable(batch)
            if tensors:
                predictions += _predict_batch(
                    model,
                    tensors,
                    sources,
                    class_names,
                    device,
                    top_k,
                    channels_last,
                    warm_up=not predictions,
                )
    return predictions


def predict_folder(
    model: nn.Module,
    folder: str | os.PathLike,
    transform: Callable[[Image.Image], torch.Tensor],
    class_names: Sequence[str],
    device: DeviceLike | None = None,
    batch_size: int | None = None,
    top_k: int = 5,
    progress: bool = False,
    num_workers: int = 0,
    channels_last: bool | None = None,
) -> list[Prediction]:
    """Predictions for every image file under ``folder`` (recursively, sorted, hidden ignored).

    ``batch_size``, ``channels_last`` and ``num_workers`` as in ``predict_images``.

    >>> preds = predict_folder(model, "my_photos", transform, names)  # doctest: +SKIP
    >>> print(predictions_table(preds))  # doctest: +SKIP
    """
    files = image_files(folder)
    return predict_images(
        model,
        files,
        transform,
        class_names,
        device,
        batch_size,
        top_k,
        progress,
        num_workers,
        channels_last,
    )


def _predict_batch(
    model: nn.Module,
    tensors: list[torch.Tensor],
    sources: list[str],
    class_names: Sequence[str],
    device: torch.device,
    top_k: int,
    channels_last: bool,
    warm_up: bool = False,
) -> list[Prediction]:
    """Top-k predictions for one batch; the caller puts the model in ``evaluating`` mode."""
    batch = _in_layout(_stack(tensors).to(device), channels_last)
    if warm_up:
        model(batch[:1])  # the first call pays one-off costs (memory, weight packing): untimed
    _synchronize(device)
    start = time.perf_counter()
    logits = model(batch)
    _synchronize(device)
    seconds_each = (time.perf_counter() - start) / len(tensors)
    _check_logits(logits, class_names)
    k = _clip_top_k(top_k, len(class_names))
    top_probs, top_indices = torch.softmax(logits.float(), dim=1).topk(k, dim=1)
    return [
        Prediction(
            source=source,
            top_classes=[class_names[i] for i in indices],
            top_probs=probs,
            top_indices=indices,
            seconds=seconds_each,
        )
        for source, probs, indices in zip(
            sources, top_probs.tolist(), top_indices.tolist(), strict=True
        )
    ]


class _ImagesToPredict(Dataset):
    """Each item opened as RGB and transformed, or the one-line reason it cannot be read.

    Errors travel back as text because a worker process's prints never reach the notebook.
    """

    def __init__(
        self, items: list[ImageInput], transform: Callable[[Image.Image], torch.Tensor]
    ) -> None:
        self.items = items
        self.transform = transform
        #: Items already opened by ``first_shape``, handed out once instead of decoded again.
        self._opened: dict[int, tuple[torch.Tensor | None, str, str | None]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str, str | None]:
        if index in self._opened:
            return self._opened.pop(index)
        item = self.items[index]
        try:
            image = _open_rgb(item)
        except (UnreadableImageError, FileNotFoundError) as err:
            return None, _source_name(item), " ".join(str(err).split())  # one line, however long
        return self.transform(image), _source_name(item), None

    def first_shape(self) -> tuple[int, ...] | None:
        """The shape of the first readable item's tensor (None if no item can be read)."""
        for index in range(len(self)):
            self._opened[index] = self[index]
            tensor = self._opened[index][0]
            if tensor is not None:
                return tuple(tensor.shape)
        return None


def _readable(
    batch: list[tuple[torch.Tensor | None, str, str | None]],
) -> tuple[list[torch.Tensor], list[str]]:
    """The tensors and names of a batch's readable items; the others are reported."""
    tensors, sources = [], []
    for tensor, source, problem in batch:
        if tensor is None:
            print(f"Skipped: {printable_path(problem)}")
            continue
        tensors.append(tensor)
        sources.append(source)
    return tensors, sources


def _open_rgb(image: ImageInput) -> Image.Image:
    # The network was trained on 3-channel RGB; grey, RGBA or palette images must match that.
    return to_rgb(image) if isinstance(image, Image.Image) else load_image(image)


def _source_name(image: ImageInput) -> str:
    return "<image>" if isinstance(image, Image.Image) else os.fspath(image)


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(
            f"The transform produced images of different sizes {sorted(shapes)}, which cannot "
            "be batched. Use an evaluation transform that ends in a fixed-size crop, such as "
            "eval_transforms(image_size, resize_size, mean, std)."
        )
    return torch.stack(tensors)


def _check_logits(logits: Any, class_names: Sequence[str]) -> None:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise TypeError(
            "The model should return one row of class scores per image (a tensor of shape "
            f"[batch, classes]) but returned {type(logits).__name__}. Pass a classifier."
        )
    if logits.shape[1] != len(class_names):
        raise ValueError(
            f"The model gives {logits.shape[1]} class scores but {len(class_names)} class names "
            "were given. Pass the class names the model was trained with (e.g. train_ds.classes)."
        )


def _clip_top_k(top_k: int, num_classes: int) -> int:
    if top_k < 1:
        raise ValueError(f"top_k={top_k} must be at least 1.")
    return min(top_k, num_classes)


# --------------------------------------------------------------------------- eval mode & device


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block with ``model`` in eval mode and ``torch.inference_mode()``, then restore it.

    Every sub-module gets its own flag back, so a frozen BatchNorm that was in eval mode
    inside a training model stays that way.

    >>> with evaluating(model):  # doctest: +SKIP
    ...     logits = model(images)
    """
    with eval_mode(model), torch.inference_mode():
        yield model


def _resolve_device(model: nn.Module, device: DeviceLike | None) -> torch.device:
    """None: where the model already is. Otherwise the model is moved to ``device``."""
    if device is None:
        return model_device(model)
    chosen = pick_device(str(device))
    model.to(chosen)
    return chosen


def _synchronize(device: torch.device) -> None:
    # GPU kernels run asynchronously: without waiting, the clock stops before the work is done.
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class TimingResult:
    """How long one timed run took (a forward pass of the batch, or a loop over it).

    >>> r = TimingResult(4.0, 4.2, 3.9, 0.5, 2000.0, runs=10, device="cpu", batch_size=8)
    >>> str(r).startswith("4.00 ms per run")
    True
    """

    median_ms: float
    mean_ms: float
    min_ms: float
    per_image_ms: float
    images_per_second: float
    runs: int
    device: str
    #: Images processed by each timed run.
    batch_size: int

    def __str__(self) -> str:
        return (
            f"{self.median_ms:.2f} ms per run of {self.batch_size} image(s) "
            f"(median of {self.runs} on {self.device}): {self.per_image_ms:.2f} ms per image, "
            f"{self.images_per_second:.1f} images/s"
        )


def time_inference(
    model: nn.Module,
    example_batch: torch.Tensor,
    device: DeviceLike | None = None,
    warmup: int = 3,
    runs: int = 10,
) -> TimingResult:
    """Time forward passes of ``example_batch`` (N, C, H, W): ``warmup`` untimed, then ``runs`` timed.

    Warm-up runs absorb one-off costs (memory allocation, kernel selection); on a GPU the
    device is synchronised so that the clock measures finished work.

    >>> result = time_inference(model, torch.randn(8, 3, 224, 224), warmup=3, runs=10)  # doctest: +SKIP
    >>> print(result)  # doctest: +SKIP
    """
    device = _resolve_device(model, device)
    batch = _as_batch(example_batch, "example_batch").to(device)
    return _timed(lambda: model(batch), model, device, warmup, runs, images_per_run=len(batch))


def compare_one_by_one_vs_batched(
    model: nn.Module,
    images: torch.Tensor,
    device: DeviceLike | None = None,
    warmup: int = 3,
    runs: int = 10,
    batch_size: int | None = None,
    channels_last: bool | None = None,
) -> dict[str, Any]:
    """Time the same N images one at a time (the plain loop) and in batches.

    The batches use ``batch_size`` images stored ``channels_last`` or not; by default the
    fastest of both for this model and device (``measure_batch_speeds``), as
    ``predict_folder`` does. Returns ``{"one_by_one": TimingResult, "batched": TimingResult,
    "speedup": float, "batch_size": int, "channels_last": bool}``, where speedup is how many
    times more images per second the batched way processes.

    >>> result = compare_one_by_one_vs_batched(model, torch.randn(16, 3, 224, 224))  # doctest: +SKIP
    >>> print(f"batching is {result['speedup']:.1f}x faster")  # doctest: +SKIP
    """
    _check_batch_size(batch_size)
    device = _resolve_device(model, device)
    batch = _as_batch(images, "images").to(device)
    batch_size, channels_last = _choose_setup(
        model, tuple(batch.shape[1:]), device, len(batch), batch_size, channels_last
    )
    chunks = [_in_layout(part, channels_last) for part in batch.split(batch_size)]

    def one_at_a_time() -> None:
        for image in batch:
            model(image.unsqueeze(0))

    def in_batches() -> None:
        for chunk in chunks:
            model(chunk)

    one_by_one = _timed(one_at_a_time, model, device, warmup, runs, images_per_run=len(batch))
    batched = _timed(in_batches, model, device, warmup, runs, images_per_run=len(batch))
    return {
        "one_by_one": one_by_one,
        "batched": batched,
        "speedup": batched.images_per_second / one_by_one.images_per_second,
        "batch_size": batch_size,
        "channels_last": channels_last,
    }


def _timed(
    run_once: Callable[[], object],
    model: nn.Module,
    device: torch.device,
    warmup: int,
    runs: int,
    images_per_run: int,
) -> TimingResult:
    if warmup < 0 or runs < 1:
        raise ValueError(f"Need warmup >= 0 and runs >= 1 (got warmup={warmup}, runs={runs}).")
    with evaluating(model):
        for _ in range(warmup):
            run_once()
        _synchronize(device)
        seconds = []
        for _ in range(runs):
            start = time.perf_counter()
            run_once()
            _synchronize(device)
            seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return TimingResult(
        median_ms=median * 1000,
        mean_ms=statistics.fmean(seconds) * 1000,
        min_ms=min(seconds) * 1000,
        per_image_ms=median * 1000 / images_per_run,
        images_per_second=images_per_run / median if median > 0 else math.inf,
        runs=runs,
        device=str(device),
        batch_size=images_per_run,
    )


def _as_batch(images: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(
            f"{name} must be a non-empty batch tensor of shape (N, C, H, W), got {shape}. "
            "For a single image tensor add the batch dimension: image.unsqueeze(0)."
        )
    return images


# --------------------------------------------------------------------------- batch size and layout

#: Batch sizes ``measure_batch_speeds`` tries by default.
BATCH_SIZES = (1, 4, 8, 16, 32, 64)
#: How a batch can be stored: channels first (PyTorch's default) or channels last (NHWC).
LAYOUTS = ("NCHW", "channels-last")
#: Small batches run several passes per timing, so that each timing covers this many images.
_IMAGES_PER_TIMING = 8
_TIMED_ROUNDS = 2
#: Measured images per second, per model, device, threads and input shape, for this process
#: (a measurement is a few seconds; predict_folder and the comparison reuse it).
_MEASURED: dict[str, dict[tuple[str, int], float]] = {}


@dataclass(frozen=True)
class BatchSpeeds:
    """Images per second of one model for each memory layout and batch size.

    >>> speeds = BatchSpeeds({"NCHW": {1: 60.0, 8: 50.0}, "channels-last": {1: 90.0, 8: 120.0}})
    >>> speeds.fastest(), speeds.fastest(channels_last=False)
    ((8, True), (1, False))
    """

    #: layout ("NCHW" or "channels-last") -> batch size -> images per second.
    images_per_second: dict[str, dict[int, float]]

    def fastest(self, channels_last: bool | None = None) -> tuple[int, bool]:
        """The (batch size, channels_last) with the most images per second.

        ``channels_last`` True or False keeps to that layout; None chooses either.
        """
        layouts = LAYOUTS if channels_last is None else [LAYOUTS[int(channels_last)]]
        layout, size = max(
            ((layout, size) for layout in layouts for size in self.images_per_second[layout]),
            key=lambda pair: self.images_per_second[pair[0]][pair[1]],
        )
        return size, layout == LAYOUTS[1]

    def __str__(self) -> str:
        size, channels_last = self.fastest()
        best = self.images_per_second[LAYOUTS[int(channels_last)]][size]
        return f"fastest: batch {size}, {LAYOUTS[int(channels_last)]}, {best:.1f} images/s"


def measure_batch_speeds(
    model: nn.Module,
    image_size: int | Sequence[int],
    device: DeviceLike | None = None,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    remeasure: bool = False,
) -> BatchSpeeds:
    """Images per second of ``model`` for each batch size, stored NCHW and channels-last.

    ``image_size`` is the side of a square RGB image, or a (channels, height, width) shape.
    Measured on random batches: each pair (layout, batch size) runs once untimed (one-off
    costs), then is timed in two rounds taken in turn, so that a burst of load from
    elsewhere hits every pair; the faster round counts, since other programs can only slow
    a run down. The result is remembered for this process (per model type and size, device,
    thread count and image shape) and reused by ``predict_folder`` and
    ``compare_one_by_one_vs_batched``; ``remeasure=True`` measures again, and so does asking
    for a size not measured yet (all sizes asked for, so that they are compared in one run).

    >>> speeds = measure_batch_speeds(torch.nn.Conv2d(3, 2, 3), 8, batch_sizes=[1, 4])
    >>> sorted(speeds.images_per_second["channels-last"])
    [1, 4]
    """
    sizes = sorted(set(batch_sizes))
    if not sizes or sizes[0] < 1:
        raise ValueError(f"batch_sizes={list(batch_sizes)} must be one or more sizes >= 1.")
    device = _resolve_device(model, device)
    shape = (3, image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    known = _MEASURED.setdefault(_speed_key(model, device, shape), {})
    pairs = [(layout, size) for layout in LAYOUTS for size in sizes]
    if remeasure or any(pair not in known for pair in pairs):
        known.update(_measure_pairs(model, device, shape, pairs))
    return BatchSpeeds(
        {layout: {size: known[(layout, size)] for size in sizes} for layout in LAYOUTS}
    )


def _measure_pairs(
    model: nn.Module, device: torch.device, shape: tuple[int, ...], pairs: list[tuple[str, int]]
) -> dict[tuple[str, int], float]:
    generator = torch.Generator().manual_seed(0)  # leaves the global random state alone
    images = torch.randn(max(size for _, size in pairs), *shape, generator=generator).to(device)
    batches = {
        (layout, size): _in_layout(images[:size], layout == LAYOUTS[1]) for layout, size in pairs
    }
    best: dict[tuple[str, int], float] = {}
    with evaluating(model):
        for batch in batches.values():
            model(batch)
        for round_number in range(_TIMED_ROUNDS):
            for pair in pairs if round_number % 2 == 0 else reversed(pairs):
                passes = math.ceil(_IMAGES_PER_TIMING / pair[1])
                _synchronize(device)
                start = time.perf_counter()
                for _ in range(passes):
                    model(batches[pair])
                _synchronize(device)
                speed = passes * pair[1] / max(time.perf_counter() - start, 1e-9)
                best[pair] = max(best.get(pair, 0.0), speed)
    return best


def _speed_key(model: nn.Module, device: torch.device, shape: tuple[int, ...]) -> str:
    parameters = list(model.parameters())
    dtype = parameters[0].dtype if parameters else torch.float32
    size = sum(p.numel() for p in parameters)
    return (
        f"{type(model).__qualname__}/{size}/{dtype}|{device}|"
        f"{torch.get_num_threads()} threads|{'x'.join(map(str, shape))}"
    )


def _choose_setup(
    model: nn.Module,
    shape: tuple[int, ...],
    device: torch.device,
    image_count: int,
    batch_size: int | None,
    channels_last: bool | None,
) -> tuple[int, bool]:
    """The batch size and layout asked for, the unspecified ones the fastest measured."""
    if batch_size is not None and channels_last is not None:
        return batch_size, channels_last
    # A batch cannot hold more than all the images: larger sizes are not worth measuring.
    sizes = [batch_size] if batch_size is not None else _useful_batch_sizes(image_count)
    return measure_batch_speeds(model, shape, device, sizes).fastest(channels_last)


def _useful_batch_sizes(image_count: int) -> list[int]:
    """BATCH_SIZES below ``image_count``, plus all the images in one batch (at most 64).

    >>> _useful_batch_sizes(10), _useful_batch_sizes(1000)
    ([1, 4, 8, 10], [1, 4, 8, 16, 32, 64])
    """
    whole = min(max(image_count, 1), BATCH_SIZES[-1])
    return sorted({size for size in BATCH_SIZES if size < whole} | {whole})


def _in_layout(batch: torch.Tensor, channels_last: bool) -> torch.Tensor:
    # Same numbers either way; oneDNN's CPU convolutions are often faster on channels-last.
    if channels_last and batch.dim() == 4:
        return batch.contiguous(memory_format=torch.channels_last)
    return batch.contiguous()


def _check_batch_size(batch_size: int | None) -> None:
    if batch_size is not None and batch_size < 1:
        raise ValueError(
            f"batch_size={batch_size} must be at least 1 (or None: the fastest, measured)."
        )


# --------------------------------------------------------------------------- tables and CSV


def predictions_table(predictions: Sequence[Prediction], top_k: int | None = None) -> str:
    """A fixed-width text table: file, top-1 class, its probability, time per image.

    ``top_k`` adds a column with the k best classes and their probabilities.

    >>> print(predictions_table(predict_folder(model, "photos", transform, names), top_k=3))  # doctest: +SKIP
    """
    if not predictions:
        return "(no predictions)"
    headers = ["file", "top-1", "prob", "ms/image"]
    rows = [
        [_shorten(p.source), p.label, f"{p.prob:.3f}", f"{p.seconds * 1000:.2f}"]
        for p in predictions
    ]
    if top_k is not None:
        k = _clip_top_k(top_k, max(len(p.top_classes) for p in predictions))
        headers.append(f"top-{k}")
        for row, p in zip(rows, predictions, strict=True):
            best = zip(p.top_classes[:k], p.top_probs[:k], strict=True)
            row.append(", ".join(f"{name} {prob:.2f}" for name, prob in best))
    return format_table(headers, rows, numeric_columns={2, 3})


def _shorten(text: str, width: int = 40) -> str:
    # The end of a path (folder/file name) is the part that tells images apart.
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def save_predictions_csv(predictions: Sequence[Prediction], path: str | os.PathLike) -> Path:
    """Write predictions to a CSV (file, label, prob, top1_label, top1_prob, ..., seconds).

    The file is written next to its final name and moved into place, so an interrupted
    run never leaves half a CSV; missing parent folders are created. File and class names
    whose bytes are not UTF-8 (Latin-1 names from an old disk) are written with ``\\xe9``
    escapes (``printable_path``), so the CSV stays valid UTF-8.

    >>> save_predictions_csv(preds, "runs/predictions.csv")  # doctest: +SKIP
    PosixPath('runs/predictions.csv')
    """
    path = Path(path)
    rows = [
        {
            key: printable_path(value) if isinstance(value, str) else value
            for key, value in row.items()
        }
        for row in (p.as_row() for p in predictions)
    ]
    max_k = max((len(p.top_classes) for p in predictions), default=0)
    ranked = [f"top{rank}_{field}" for rank in range(1, max_k + 1) for field in ("label", "prob")]
    with atomic_write(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "label", "prob", *ranked, "seconds"])
        writer.writeheader()
        writer.writerows(rows)
    return path


# --------------------------------------------------------------------------- metrics


def collect_predictions(
    model: nn.Module,
    loader: Iterable[Sequence[torch.Tensor]],
    device: DeviceLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (N, K) and true labels (N,) for every sample of ``loader``, on the CPU.

    >>> probs, labels = collect_predictions(model, loaders["valid"])  # doctest: +SKIP
    >>> cm = confusion_matrix(labels, probs.argmax(dim=1), num_classes=probs.shape[1])  # doctest: +SKIP
    """
    device = _resolve_device(model, device)
    probs, labels = [], []
    with evaluating(model):
        for inputs, targets in loader:
            probs.append(torch.softmax(model(inputs.to(device)).float(), dim=1).cpu())
            labels.append(torch.as_tensor(targets).cpu())
    if not probs:
        raise ValueError("The loader yielded no batches: is its dataset empty?")
    # Concatenating outside inference mode returns ordinary tensors that learners may edit.
    return torch.cat(probs), torch.cat(labels).long()


def confusion_matrix(
    labels: torch.Tensor | Sequence[int],
    preds: torch.Tensor | Sequence[int],
    num_classes: int,
) -> torch.Tensor:
    """K x K int64 counts: row = true class, column = predicted class.

    >>> confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), num_classes=2)
    tensor([[1, 0],
            [1, 1]])
    """
    labels = _class_indices(labels, "labels", num_classes)
    preds = _class_indices(preds, "preds", num_classes)
    if labels.shape != preds.shape:
        raise ValueError(
            f"labels has {len(labels)} entries but preds has {len(preds)}: "
            "they must describe the same samples."
        )
    # Each (true, predicted) pair gets its own bin number true * K + predicted.
    counts = torch.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _class_indices(
    values: torch.Tensor | Sequence[int], name: str, num_classes: int
) -> torch.Tensor:
    tensor = torch.as_tensor(values).cpu()
    if tensor.ndim != 1:
        tip = " Probabilities? Pass probs.argmax(dim=1)." if tensor.ndim == 2 else ""
        raise ValueError(
            f"{name} must be a 1-D tensor of class indices, got shape {tuple(tensor.shape)}.{tip}"
        )
    if tensor.is_floating_point():
        raise ValueError(f"{name} must hold integer class indices, got dtype {tensor.dtype}.")
    outside = tensor[(tensor < 0) | (tensor >= num_classes)]
    if len(outside):
        raise ValueError(
            f"{name} contains class index {outside[0].item()}, outside 0..{num_classes - 1}. "
            "num_classes must be the number of classes (len(class_names))."
        )
    return tensor.long()


def per_class_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Accuracy (recall) of each true class: diagonal / row sums of a confusion matrix.

    A class with no samples has no accuracy: its entry is ``nan`` (not 0, which would claim
    the model got every one of them wrong). Use ``torch.nanmean`` to average.

    >>> per_class_accuracy(torch.tensor([[3, 1], [0, 0]]))
    tensor([0.7500,    nan])
    """
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"Expected a square confusion matrix, got shape {tuple(cm.shape)}.")
    return cm.diagonal().float() / cm.sum(dim=1).float()


def top_k_accuracy(probs: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores.

    >>> top_k_accuracy(torch.tensor([[0.1, 0.6, 0.3]]), torch.tensor([2]), k=2)
    1.0
    """
    if probs.ndim != 2 or len(probs) == 0 or len(probs) != len(labels):
        raise ValueError(
            f"Need probs of shape (N, K) and N labels, got {tuple(probs.shape)} and "
            f"{len(labels)} labels."
        )
    best = probs.topk(_clip_top_k(k, probs.shape[1]), dim=1).indices
    hits = (best == torch.as_tensor(labels, device=best.device).reshape(-1, 1)).any(dim=1)
    return hits.float().mean().item()


# --------------------------------------------------------------------------- bundles


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
