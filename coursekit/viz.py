"""Pictures from tensors, histories and models. Every plot function returns its Figure.

    >>> fig = show_batch(images, labels, class_names=train_ds.classes)  # doctest: +SKIP
    >>> fig.savefig("batch.png")                                          # doctest: +SKIP

The figures are ordinary pyplot figures: a notebook shows them by itself at the end of the
cell and a script shows them with ``plt.show()``. When a call is the LAST line of a notebook
cell, Jupyter also echoes the returned Figure, so it appears twice: write
``fig = show_batch(...)`` or end the line with ``;``. Close figures you make in a loop
with ``plt.close(fig)``.

Images come in as tensors the way the data pipeline produces them (CHW or NCHW, normalised
with ``mean``/``std``); ``im_convert`` undoes that so matplotlib can draw them.

This module imports only ``coursekit.config``.
"""

from __future__ import annotations

import io
import math
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from torch import nn

from coursekit._model_state import eval_mode, model_device
from coursekit.config import IMAGENET_MEAN, IMAGENET_STD

#: Per-channel statistics of ``transforms.Normalize``; None means "not normalised".
Stats = Sequence[float] | None

#: Title colours of prediction galleries.
CORRECT_COLOR = "green"
WRONG_COLOR = "red"
#: Side of one image panel, in inches.
PANEL_INCHES = 2.5
#: Above this many classes the confusion matrix cells are too small for numbers.
MAX_ANNOTATED_CLASSES = 20
#: Above this many classes plot_confusion_matrix draws only the most confused ones: at
#: notebook width, more rows than this would need labels smaller than 10 pt.
MAX_MATRIX_CLASSES = 20
#: The width a notebook shows a figure at, in inches.
NOTEBOOK_INCHES = 9.0
#: Above this many classes the class-count bars turn horizontal, so names stay readable.
MAX_VERTICAL_BARS = 10
#: Width of one character of a tick label (10 pt), generously: it tells when names collide.
LABEL_CHAR_INCHES = 0.09
#: The per-epoch lists a History (or its ``to_dict()``) provides.
HISTORY_KEYS = ("train_loss", "train_acc", "valid_loss", "valid_acc", "lr")


# ----------------------------------------------------------------------------- tensors


def im_convert(
    tensor: torch.Tensor, mean: Stats = IMAGENET_MEAN, std: Stats = IMAGENET_STD
) -> np.ndarray:
    """A displayable array from an image tensor: Normalize undone, channels last, in [0, 1].

    CHW becomes HWC and NCHW becomes NHWC; one channel becomes a 2D gray image (use
    ``cmap="gray"``). Pass ``mean=None, std=None`` for a tensor that was not normalised.

    >>> im_convert(torch.zeros(3, 8, 8), mean=None, std=None).shape
    (8, 8, 3)
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(
            f"im_convert expects a torch.Tensor, got {type(tensor).__name__}. "
            "For a PIL image use np.asarray(image) instead."
        )
    if tensor.ndim not in (3, 4) or tensor.shape[-3] not in (1, 3):
        raise ValueError(
            f"im_convert expects an image tensor shaped CHW or NCHW with 1 or 3 channels, "
            f"got shape {tuple(tensor.shape)}. If the channels come last (HWC), call "
            "tensor.permute(2, 0, 1) first."
        )
    if not tensor.is_floating_point():
        raise TypeError(
            f"im_convert expects a float tensor (the output of ToTensor/Normalize), got "
            f"{tensor.dtype}. For a uint8 image use im_convert(t.float() / 255, None, None)."
        )
    image = tensor.detach().to("cpu", torch.float32)
    channels = image.shape[-3]
    # Normalize computed (x - mean) / std, so the inverse is x * std + mean.
    if std is not None:
        image = image * _per_channel(std, channels, "std")
    if mean is not None:
        image = image + _per_channel(mean, channels, "mean")
    image = image.clamp(0.0, 1.0).movedim(-3, -1)
    if channels == 1:
        image = image.squeeze(-1)
    return image.numpy()


def _per_channel(values: Sequence[float], channels: int, name: str) -> torch.Tensor:
    """``values`` shaped (C, 1, 1) so that they broadcast over a CHW or NCHW image."""
    stats = torch.as_tensor(values, dtype=torch.float32).reshape(-1, 1, 1)
    if len(stats) not in (1, channels):
        raise ValueError(
            f"{name} has {len(stats)} values but the image has {channels} channel(s). "
            f"Pass {channels} value(s), or {name}=None if the image was not normalized."
        )
    return stats


def _as_int_list(values: torch.Tensor | Sequence[int], count: int, what: str) -> list[int]:
    """Labels or predictions as plain ints, checked against the number of images."""
    numbers = values.tolist() if isinstance(values, torch.Tensor) else list(values)
    if len(numbers) != count:
        raise ValueError(f"Got {len(numbers)} {what} for {count} images: pass one per image.")
    return [int(n) for n in numbers]


def _class_name(index: int, class_names: Sequence[str] | None) -> str:
    if class_names is None:
        return str(index)
    if not 0 <= index < len(class_names):
        raise ValueError(
            f"Class index {index} has no name: class_names has {len(class_names)} entries. "
            "Pass the dataset's .classes (or the label names) for class_names."
        )
    return str(class_names[index])


def _check_batch(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(
            f"Expected a non-empty batch of images shaped N x C x H x W, got {shape}. "
            "For one image use image.unsqueeze(0)."
        )


# ----------------------------------------------------------------------------- layout


def _grid_shape(panels: int, ncols: int) -> tuple[int, int]:
    """(rows, columns) for ``panels`` images, at most ``ncols`` wide, rows filled evenly.

    The fewest rows that fit, then the fewest columns for those rows, so that no row is
    left mostly empty: 5 panels at most 4 wide are 3 + 2, not 4 + 1.

    >>> _grid_shape(5, 4), _grid_shape(9, 4), _grid_shape(8, 4)
    ((2, 3), (3, 3), (2, 4))
    """
    nrows = math.ceil(panels / max(1, min(ncols, panels)))
    return nrows, math.ceil(panels / nrows)


def _image_grid(panels: int, ncols: int, title: str | None = None) -> tuple[Figure, list[Axes]]:
    """A figure with exactly ``panels`` axes, at most ``ncols`` per row (see _grid_shape)."""
    nrows, ncols = _grid_shape(panels, ncols)
    size = (PANEL_INCHES * ncols, PANEL_INCHES * nrows + (0.4 if title else 0.0))
    fig = plt.figure(figsize=size, layout="constrained")
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(panels)]
    if title:
        fig.suptitle(title)
    return fig, axes


def _draw_image(ax: Axes, image: np.ndarray, title: str, color: str | None = None) -> None:
    if image.ndim == 2:  # gray: fix the range so a dark image is not stretched to white
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(image)
    ax.set_title(title, fontsize=9, **({"color": color} if color else {}))
    ax.axis("off")


def _message_figure(message: str) -> Figure:
    """A small figure that says why there is nothing to draw."""
    fig, ax = plt.subplots(figsize=(5, 1.5), layout="constrained")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    ax.axis("off")
    return fig


# ----------------------------------------------------------------------------- images


def show_batch(
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    class_names: Sequence[str] | None = None,
    mean: Stats = IMAGENET_MEAN,
    std: Stats = IMAGENET_STD,
    ncols: int = 4,
    title: str | None = None,
) -> Figure:
    """A grid of a batch of images, each titled with its class name (or index).

    >>> images, labels = next(iter(loaders["train"]))                 # doctest: +SKIP
    >>> fig = show_batch(images[:8], labels[:8], train_ds.classes)     # doctest: +SKIP
    """
    _check_batch(images)
    arrays = im_convert(images, mean, std)
    label_list = _as_int_list(labels, len(arrays), "labels")
    fig, axes = _image_grid(len(arrays), ncols, title)
    for ax, array, label in zip(axes, arrays, label_list, strict=True):
        _draw_image(ax, array, _class_name(label, class_names))
    return fig


def show_augmentations(
    image: Image.Image,
    transform: Callable[[Image.Image], torch.Tensor],
    n: int = 8,
    ncols: int = 4,
    mean: Stats = IMAGENET_MEAN,
    std: Stats = IMAGENET_STD,
    seed: int = 0,
) -> Figure:
    """The original image, then ``n`` random versions of it made by ``transform``.

    ``seed`` makes the preview repeatable (torch's, Python's and NumPy's random numbers are
    seeded, as transforms may use any of them) without touching the learner's random state.

    >>> fig = show_augmentations(load_image("cat.jpg"), train_transforms(224))  # doctest: +SKIP
    """
    if n < 1:
        raise ValueError(f"n={n}: ask for at least one augmented version.")
    with _seeded(seed):
        versions = [transform(image) for _ in range(n)]
    if not all(isinstance(v, torch.Tensor) for v in versions):
        raise TypeError(
            "The transform must return a tensor: end it with transforms.ToTensor() "
            "(and Normalize, if you pass mean and std)."
        )
    fig, axes = _image_grid(n + 1, ncols)
    original = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    _draw_image(axes[0], original, "original")
    for number, (ax, version) in enumerate(zip(axes[1:], versions, strict=True), start=1):
        _draw_image(ax, im_convert(version, mean, std), f"augmented {number}")
    return fig


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch, Python and NumPy inside the block; their previous states come back after."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def show_predictions(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    class_names: Sequence[str],
    device: torch.device | str | None = None,
    mean: Stats = IMAGENET_MEAN,
    std: Stats = IMAGENET_STD,
    ncols: int = 4,
    title: str | None = "pred (true): green = right, red = wrong",
) -> Figure:
    """Images titled ``pred (true)``: green when right, red when wrong.

    The model predicts in eval mode without gradients (dropout off, BatchNorm using its
    running statistics); every submodule's training flag is restored afterwards.
    ``device`` is where the model is (default: where its parameters are); ``title`` is the
    figure's title (None for none).

    >>> images, labels = next(iter(loaders["valid"]))                      # doctest: +SKIP
    >>> fig = show_predictions(model, images, labels, train_ds.classes)     # doctest: +SKIP
    """
    _check_batch(images)
    arrays = im_convert(images, mean, std)  # before the model runs: bad input fails fast
    target = torch.device(device) if device is not None else model_device(model)
    with eval_mode(model), torch.no_grad():
        preds = model(images.to(target)).argmax(dim=1).cpu()
    return _prediction_gallery(arrays, labels, preds, class_names, ncols, title)


def show_misclassified(
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    preds: torch.Tensor | Sequence[int],
    class_names: Sequence[str],
    mean: Stats = IMAGENET_MEAN,
    std: Stats = IMAGENET_STD,
    ncols: int = 4,
    max_images: int = 16,
    title: str | None = None,
) -> Figure:
    """A gallery of the wrong predictions only, titled ``pred (true)`` in red.

    Shows at most ``max_images``; when nothing is wrong the figure says so. The figure's
    title defaults to "Misclassified: <wrong> of <images> (showing <shown>)"; pass ``title``
    when the images are already a selection, e.g. "8 most confident of 23 mistakes".

    >>> fig = show_misclassified(images, labels, preds, train_ds.classes)  # doctest: +SKIP
    """
    _check_batch(images)
    label_list = _as_int_list(labels, len(images), "labels")
    pred_list = _as_int_list(preds, len(images), "predictions")
    wrong = [i for i, (y, p) in enumerate(zip(label_list, pred_list, strict=True)) if y != p]
    if not wrong:
        return _message_figure(f"No misclassified images: all {len(images)} predictions are right.")
    shown = wrong[:max_images]
    return _prediction_gallery(
        im_convert(images[shown], mean, std),  # convert only the images that are drawn
        [label_list[i] for i in shown],
        [pred_list[i] for i in shown],
        class_names,
        ncols,
        title=title or f"Misclassified: {len(wrong)} of {len(images)} (showing {len(shown)})",
    )


def _prediction_gallery(
    arrays: np.ndarray,
    labels: torch.Tensor | Sequence[int],
    preds: torch.Tensor | Sequence[int],
    class_names: Sequence[str],
    ncols: int,
    title: str | None = None,
) -> Figure:
    """Converted images titled ``pred (true)``, green when right and red when wrong."""
    label_list = _as_int_list(labels, len(arrays), "labels")
    pred_list = _as_int_list(preds, len(arrays), "predictions")
    fig, axes = _image_grid(len(arrays), ncols, title)
    for ax, array, label, pred in zip(axes, arrays, label_list, pred_list, strict=True):
        caption = f"{_class_name(pred, class_names)} ({_class_name(label, class_names)})"
        _draw_image(ax, array, caption, CORRECT_COLOR if pred == label else WRONG_COLOR)
    return fig


# ----------------------------------------------------------------------------- numbers


def plot_history(history: Any) -> Figure:
    """Loss and accuracy per epoch (train vs valid), the LR when it changes, best epoch marked.

    ``history`` is the History that ``fit`` returns, or a dict with the same lists.

    >>> fig = plot_history({"train_loss": [1.0, 0.5], "train_acc": [0.5, 0.8]})
    >>> len(fig.axes)
    2
    """
    curves = {key: _history_series(history, key) for key in HISTORY_KEYS}
    if not curves["train_loss"]:
        raise ValueError(
            "The history has no epochs: pass the History returned by fit(...) "
            f"(or a dict with the lists {', '.join(HISTORY_KEYS)}) after training."
        )
    lr_varies = len(set(curves["lr"])) > 1
    fig, axes = plt.subplots(
        1,
        3 if lr_varies else 2,
        figsize=(11 if lr_varies else 9, 3.5),
        width_ratios=[2, 2, 1] if lr_varies else [1, 1],
        layout="constrained",
    )
    _plot_train_valid(axes[0], curves["train_loss"], curves["valid_loss"], "Loss")
    _plot_train_valid(axes[1], curves["train_acc"], curves["valid_acc"], "Accuracy")
    if lr_varies:
        _plot_epochs(axes[2], curves["lr"], label="lr", title="Learning rate")
        axes[2].set_yscale("log")  # step schedules divide the LR, which is a straight line here
    best = _best_epoch(curves["valid_acc"])
    if best is not None:
        for ax in axes:
            ax.axvline(best, color="gray", linestyle="--", label=f"best epoch {best}")
    for ax in axes[:2]:
        ax.legend()
    return fig


class LivePlot:
    """A ``fit`` callback that redraws :func:`plot_history` under the running notebook cell.

    The first epoch shows the curves, later epochs replace them in place. Outside a
    Jupyter kernel (a script, ``torchrun``, a terminal) it does nothing.

    >>> history = fit(model, loaders, criterion, optimizer, epochs=5,
    ...               callbacks=[LivePlot()])  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._enabled = _in_notebook()
        self._handle: Any = None

    def __call__(self, history: Any) -> None:
        if not self._enabled:
            return
        from IPython.display import Image as PNG
        from IPython.display import display

        image = PNG(data=_figure_png(plot_history(history)))
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    # Only kernel-backed shells (Jupyter, Colab) can show and update images in place.
    return getattr(get_ipython(), "kernel", None) is not None


def _figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed, so the notebook does not show it again."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


class TensorBoardLogger:
    """A ``fit`` callback that writes each epoch's loss, accuracy and learning rate for
    TensorBoard (``pip install tensorboard``; view with ``tensorboard --logdir LOG_DIR``).

    Scalars are named ``loss/train``, ``loss/valid``, ``accuracy/train``,
    ``accuracy/valid`` and ``lr/group0``... ``writer`` is anything with TensorBoard's
    ``add_scalar(tag, value, step)`` and ``flush()``; by default a ``SummaryWriter``.

    >>> logger = TensorBoardLogger("runs/tensorboard/head")  # doctest: +SKIP
    >>> history = fit(model, loaders, criterion, optimizer, epochs=5,
    ...               callbacks=[logger])  # doctest: +SKIP
    """

    def __init__(self, log_dir: str | os.PathLike[str], writer: Any | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.writer = writer if writer is not None else _summary_writer(self.log_dir)

    def __call__(self, history: Any) -> None:
        epoch = len(history.valid_acc)
        last = {key: _history_series(history, key)[-1] for key in HISTORY_KEYS if key != "lr"}
        for split in ("train", "valid"):
            self.writer.add_scalar(f"loss/{split}", last[f"{split}_loss"], epoch)
            self.writer.add_scalar(f"accuracy/{split}", last[f"{split}_acc"], epoch)
        for group, lr in enumerate(history.lrs[-1]):
            self.writer.add_scalar(f"lr/group{group}", lr, epoch)
        # Written at every epoch end, so TensorBoard shows a run while it trains.
        self.writer.flush()


def _summary_writer(log_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError(
            f"TensorBoardLogger({str(log_dir)!r}) needs the tensorboard package, which is "
            "not installed. Install it with: pip install tensorboard "
            "(or pip install -e '.[tensorboard]' in the course folder)."
        ) from None
    return SummaryWriter(log_dir=str(log_dir))


def _history_series(history: Any, key: str) -> list[float]:
    values = history.get(key, ()) if isinstance(history, Mapping) else getattr(history, key, ())
    return [float(v) for v in values]


def _best_epoch(valid_acc: Sequence[float]) -> int | None:
    """The 1-based epoch with the highest validation accuracy (the first one on ties)."""
    return int(np.argmax(valid_acc)) + 1 if valid_acc else None


def _plot_epochs(ax: Axes, values: Sequence[float], label: str, title: str) -> None:
    ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    # Whole epochs only, with room around them: one epoch would otherwise get ticks 0.95..1.05.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(0.5, len(values) + 0.5)


def _plot_train_valid(ax: Axes, train: Sequence[float], valid: Sequence[float], title: str) -> None:
    _plot_epochs(ax, train, label="train", title=title)
    if valid:
        _plot_epochs(ax, valid, label="valid", title=title)


def plot_confusion_matrix(
    cm: torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    normalize: bool = False,
    max_classes: int | None = MAX_MATRIX_CLASSES,
) -> Figure:
    """A K x K confusion matrix (rows = true class, columns = predicted), cells annotated.

    ``normalize=True`` divides each row by its total, so a cell is "the fraction of class
    i predicted as j".

    With more than ``max_classes`` classes the whole matrix cannot be read at notebook
    width, so only its most confused part is drawn: the classes of the largest off-diagonal
    cells (at most ``max_classes`` of them, the worst pair first and each class next to the
    one it is confused with), with their names, and a number on every mistake among them.
    ``max_classes=None`` draws every class (above 20 without numbers in the cells).

    >>> fig = plot_confusion_matrix(torch.tensor([[5, 1], [0, 4]]), ["ant", "bee"])
    >>> [t.get_text() for t in fig.axes[0].texts]
    ['5', '1', '0', '4']
    """
    matrix = np.asarray(cm.detach().cpu() if isinstance(cm, torch.Tensor) else cm, dtype=float)
    classes = len(class_names)
    if matrix.shape != (classes, classes):
        raise ValueError(
            f"The confusion matrix has shape {matrix.shape} but there are {classes} class "
            f"names: pass a {classes} x {classes} matrix (rows = true, columns = predicted)."
        )
    if max_classes is not None and max_classes < 2:
        raise ValueError(
            f"max_classes={max_classes}: a confusion matrix needs at least 2 classes "
            "(None draws all of them)."
        )
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    if max_classes is not None and classes > max_classes:
        return _plot_most_confused(matrix, class_names, max_classes, normalize)
    side = max(4.0, 0.45 * classes + 2.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side), layout="constrained")
    _draw_matrix(fig, ax, matrix, list(class_names), normalize)
    ax.set_title("Confusion matrix" + (" (each row sums to 1)" if normalize else ""))
    if classes <= MAX_ANNOTATED_CLASSES:
        _annotate_cells(ax, matrix, "{:.2f}" if normalize else "{:.0f}")
    return fig


def _most_confused_classes(matrix: np.ndarray, max_classes: int) -> list[int]:
    """Up to ``max_classes`` class indices taken from the largest off-diagonal cells first.

    A class enters the list the first time one of its mistakes does, so the worst pair
    comes first and a class sits next to the one it is most confused with. Without any
    mistake, the first classes.
    """
    mistakes = matrix.copy()
    np.fill_diagonal(mistakes, 0)
    flat_order = np.argsort(-mistakes, axis=None, kind="stable")  # largest first, ties by index
    chosen: list[int] = []
    for true, predicted in zip(*np.unravel_index(flat_order, mistakes.shape), strict=True):
        if mistakes[true, predicted] <= 0 or len(chosen) >= max_classes:
            break
        for index in (int(true), int(predicted)):
            if index not in chosen and len(chosen) < max_classes:
                chosen.append(index)
    return chosen or list(range(max_classes))


def _plot_most_confused(
    matrix: np.ndarray,
    class_names: Sequence[str],
    max_classes: int,
    normalize: bool,
) -> Figure:
    chosen = _most_confused_classes(matrix, max_classes)
    part = matrix[np.ix_(chosen, chosen)]
    names = [str(class_names[i]) for i in chosen]
    longest = max(map(len, names)) * LABEL_CHAR_INCHES
    # Notebook width; the height leaves room for the rotated names under the matrix.
    fig, ax = plt.subplots(figsize=(NOTEBOOK_INCHES, NOTEBOOK_INCHES - 1.5 + longest * 0.7),
                           layout="constrained")
    _draw_matrix(fig, ax, part, names, normalize, vmax=matrix.max())
    ax.set_title(
        f"The {len(chosen)} most confused of {len(class_names)} classes"
        + (" (fractions of each true class)" if normalize else "")
        + "\nall classes: plot_confusion_matrix(..., max_classes=None)",
        fontsize=11,
    )
    # Only the mistakes get numbers (the colour shows the diagonal): they are what to read.
    dark = matrix.max() / 2
    for (row, col), value in np.ndenumerate(part):
        if row != col and value > 0:
            text = f"{value:.0%}" if normalize else f"{value:.0f}"
            color = "white" if value > dark else "black"
            ax.text(col, row, text, ha="center", va="center", color=color, fontsize=10)
    return fig


def _draw_matrix(
    fig: Figure,
    ax: Axes,
    matrix: np.ndarray,
    names: list[str],
    normalize: bool,
    vmax: float | None = None,
) -> None:
    picture = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else vmax)
    fig.colorbar(picture, ax=ax, shrink=0.8)
    ax.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")


def _annotate_cells(ax: Axes, matrix: np.ndarray, number_format: str) -> None:
    dark = matrix.max() / 2  # white text on dark cells, black on light ones
    for (row, col), value in np.ndenumerate(matrix):
        color = "white" if value > dark else "black"
        ax.text(col, row, number_format.format(value), ha="center", va="center", color=color)


def plot_class_counts(counts: Mapping[str, int], title: str | None = None) -> Figure:
    """Images per class as bars, counts labelled, on an axis of whole numbers.

    The bars are horizontal when there are many classes or when the names are too long to
    sit side by side under vertical bars ("horizontal stripes", "checkerboard", ...).

    >>> fig = plot_class_counts({"ants": 124, "bees": 121})
    >>> [int(bar.get_height()) for bar in fig.axes[0].patches]
    [124, 121]
    """
    if not counts:
        raise ValueError(
            "counts is empty: pass {class name: number of images}, e.g. class_counts(dataset)."
        )
    names = [str(name) for name in counts]
    values = list(counts.values())
    longest = max(map(len, names)) * LABEL_CHAR_INCHES  # inches
    width = max(4.0, 0.6 * len(names) + 2.0)  # of a vertical bar chart
    if len(names) <= MAX_VERTICAL_BARS and longest <= 0.9 * width / len(names):
        fig, ax = plt.subplots(figsize=(width, 3.5), layout="constrained")
        bars = ax.bar(names, values)
        ax.set_ylabel("images")
        count_axis = ax.yaxis
    else:
        size = (4.5 + longest, 0.3 * len(names) + 1.5)
        fig, ax = plt.subplots(figsize=size, layout="constrained")
        bars = ax.barh(names, values)
        ax.invert_yaxis()  # first class at the top, like a table
        ax.set_xlabel("images")
        count_axis = ax.xaxis
    count_axis.set_major_locator(MaxNLocator(integer=True))  # no "half an image" ticks
    ax.bar_label(bars)
    ax.set_title(title or "Images per class")
    return fig


# ----------------------------------------------------------------------------- models


def _single_image(image: torch.Tensor, caller: str) -> torch.Tensor:
    """A 1 x C x H x W batch from a CHW or 1CHW tensor."""
    if isinstance(image, torch.Tensor) and image.ndim == 3:
        return image.unsqueeze(0)
    if isinstance(image, torch.Tensor) and image.ndim == 4 and len(image) == 1:
        return image
    shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
    raise ValueError(
        f"{caller} takes one image tensor shaped C x H x W (or 1 x C x H x W), got {shape}. "
        "Pick one image from a batch with images[i]."
    )


def grad_cam(
    model: nn.Module,
    image: torch.Tensor,
    target_layer: nn.Module,
    class_idx: int | None = None,
) -> torch.Tensor:
    """Grad-CAM heatmap (H x W, in [0, 1], at the input's resolution): where the model looked.

    Each channel of ``target_layer``'s output is weighted by the mean gradient of the class
    score with respect to it; the ReLU of the weighted sum is upsampled to the image size.
    ``class_idx=None`` explains the predicted class. The model runs in eval mode; frozen
    parameters are fine, and so is a caller inside ``torch.no_grad()`` or
    ``torch.inference_mode()`` (gradients are switched on for this computation only).

    >>> heatmap = grad_cam(model, image, target_layer=model.layer4)  # doctest: +SKIP
    >>> fig = show_grad_cam(image, heatmap)                          # doctest: +SKIP
    """
    batch = _single_image(image, "grad_cam")
    captured: dict[str, torch.Tensor] = {}

    def keep_activation(module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            kind = type(output).__name__
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else kind
            raise ValueError(
                f"grad_cam needs a layer whose output is N x C x H x W, but target_layer "
                f"gives {shape}. Pick a convolutional block, e.g. model.layer4 for a ResNet."
            )
        # A detached leaf that requires grad: gradients reach it even when every parameter
        # is frozen and the input does not require grad.
        captured["activation"] = output.detach().requires_grad_(True)
        # The rest of the network gets a copy, so an in-place op downstream
        # (ReLU(inplace=True)) cannot change the activation we differentiate against.
        return captured["activation"].clone()

    handle = target_layer.register_forward_hook(keep_activation)
    # The caller may be inside torch.no_grad() or torch.inference_mode() (an inference
    # cell): leave both for this computation only.
    try:
        with torch.inference_mode(False), torch.enable_grad(), eval_mode(model):
            # A tensor made under inference_mode cannot join a graph; a copy made here can.
            batch = batch.clone() if batch.is_inference() else batch
            logits = model(batch.to(model_device(model)))
            score = logits[0, _pick_class(logits, class_idx)]
            if "activation" not in captured:
                raise ValueError(
                    "target_layer was never called during the forward pass: pass a layer of "
                    "this model, e.g. model.layer4 (ResNet) or model.features[-1] (VGG)."
                )
            activation = captured["activation"]
            (gradients,) = torch.autograd.grad(score, activation)
    finally:
        handle.remove()
    weights = gradients.mean(dim=(2, 3), keepdim=True)  # how much the score cares per channel
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=batch.shape[-2:], mode="bilinear", align_corners=False)
    return _rescale_to_unit(cam[0, 0]).detach().cpu()


def _pick_class(logits: torch.Tensor, class_idx: int | None) -> int:
    classes = logits.shape[1]
    if class_idx is None:
        return int(logits[0].argmax())
    if not 0 <= class_idx < classes:
        raise ValueError(
            f"class_idx={class_idx} is out of range: the model has {classes} classes "
            f"(0..{classes - 1}). Use None for the predicted class."
        )
    return class_idx


def _rescale_to_unit(values: torch.Tensor) -> torch.Tensor:
    low, high = values.min(), values.max()
    if high - low <= 1e-12:  # a flat map has nothing to highlight
        return torch.zeros_like(values)
    return (values - low) / (high - low)


def show_grad_cam(
    image: torch.Tensor,
    heatmap: torch.Tensor | np.ndarray,
    mean: Stats = IMAGENET_MEAN,
    std: Stats = IMAGENET_STD,
    title: str | None = None,
    alpha: float = 0.4,
) -> Figure:
    """The image, and the image with the Grad-CAM heatmap laid over it.

    >>> fig = show_grad_cam(image, grad_cam(model, image, model.layer4))  # doctest: +SKIP
    """
    picture = im_convert(_single_image(image, "show_grad_cam")[0], mean, std)
    heat = np.asarray(heatmap.detach().cpu() if isinstance(heatmap, torch.Tensor) else heatmap)
    if heat.shape != picture.shape[:2]:
        raise ValueError(
            f"The heatmap is {heat.shape} but the image is {picture.shape[:2]}: pass the "
            "heatmap grad_cam returned for this same image."
        )
    size = (2 * PANEL_INCHES + 1.0, PANEL_INCHES + 0.5)
    fig, (left, right) = plt.subplots(1, 2, figsize=size, layout="constrained")
    _draw_image(left, picture, "image")
    _draw_image(right, picture, "Grad-CAM")
    right.imshow(heat, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
    if title:
        fig.suptitle(title)
    return fig
