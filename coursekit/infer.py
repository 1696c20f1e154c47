"""Using a trained model: predictions for images and folders, as tables and CSV files.

Everything here runs the model the way inference must: ``model.eval()`` (dropout off,
BatchNorm uses its running statistics) inside ``torch.inference_mode()`` (no autograd
bookkeeping), with the same preprocessing as validation. Each module's own train/eval flag
is restored afterwards, so calling these helpers in the middle of training changes nothing.

    >>> pred = predict_image(model, "rose.jpg", transform, class_names)  # doctest: +SKIP
    >>> pred.label, round(pred.prob, 2)                                   # doctest: +SKIP
    ('rose', 0.93)

How fast the model runs is ``coursekit.timing``'s job, how good its answers are
``coursekit.metrics``'s, and a model saved with its preprocessing ``coursekit.bundle``'s.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from coursekit._model_state import DeviceLike, evaluating, resolve_device, synchronize
from coursekit._safe_io import atomic_write
from coursekit.folders import (
    UnreadableImageError,
    format_table,
    image_files,
    load_image,
    printable_path,
    to_rgb,
)
from coursekit.metrics import clip_top_k
from coursekit.timing import check_batch_size, choose_setup, in_layout

#: An image given by its path or already opened with PIL.
ImageInput: TypeAlias = str | os.PathLike | Image.Image


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
    device = resolve_device(model, device)
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
    check_batch_size(batch_size)
    device = resolve_device(model, device)
    to_predict = _ImagesToPredict(list(images), transform)
    if batch_size is None or channels_last is None:
        shape = to_predict.first_shape()
        if shape is None:  # nothing readable: every item is reported below, nothing to tune
            batch_size, channels_last = batch_size or 1, bool(channels_last)
        else:
            batch_size, channels_last = choose_setup(
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
    batch = in_layout(_stack(tensors).to(device), channels_last)
    if warm_up:
        model(batch[:1])  # the first call pays one-off costs (memory, weight packing): untimed
    synchronize(device)
    start = time.perf_counter()
    logits = model(batch)
    synchronize(device)
    seconds_each = (time.perf_counter() - start) / len(tensors)
    _check_logits(logits, class_names)
    k = clip_top_k(top_k, len(class_names))
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
        k = clip_top_k(top_k, max(len(p.top_classes) for p in predictions))
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


def collect_predictions(
    model: nn.Module,
    loader: Iterable[Sequence[torch.Tensor]],
    device: DeviceLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (N, K) and true labels (N,) for every sample of ``loader``, on the CPU.

    >>> probs, labels = collect_predictions(model, loaders["valid"])  # doctest: +SKIP
    >>> cm = confusion_matrix(labels, probs.argmax(dim=1), num_classes=probs.shape[1])  # doctest: +SKIP
    """
    device = resolve_device(model, device)
    probs, labels = [], []
    with evaluating(model):
        for inputs, targets in loader:
            probs.append(torch.softmax(model(inputs.to(device)).float(), dim=1).cpu())
            labels.append(torch.as_tensor(targets).cpu())
    if not probs:
        raise ValueError("The loader yielded no batches: is its dataset empty?")
    # Concatenating outside inference mode returns ordinary tensors that learners may edit.
    return torch.cat(probs), torch.cat(labels).long()
