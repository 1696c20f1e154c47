"""How fast a model runs: timed forward passes, and the fastest batch size and memory layout.

``time_inference`` and ``compare_one_by_one_vs_batched`` time with warm-up, device sync and
the median; ``measure_batch_speeds`` finds the batch size and layout (NCHW or channels-last)
that ``infer.predict_folder`` uses, measured once per model, device and image size.

    >>> speeds = measure_batch_speeds(torch.nn.Conv2d(3, 2, 3), 8, batch_sizes=[1, 4])
    >>> sorted(speeds.images_per_second["NCHW"])
    [1, 4]
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from coursekit._model_state import DeviceLike, evaluating, resolve_device, synchronize

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
    device = resolve_device(model, device)
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
    check_batch_size(batch_size)
    device = resolve_device(model, device)
    batch = _as_batch(images, "images").to(device)
    batch_size, channels_last = choose_setup(
        model, tuple(batch.shape[1:]), device, len(batch), batch_size, channels_last
    )
    chunks = [in_layout(part, channels_last) for part in batch.split(batch_size)]

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
        synchronize(device)
        seconds = []
        for _ in range(runs):
            start = time.perf_counter()
            run_once()
            synchronize(device)
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
    device = resolve_device(model, device)
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
        (layout, size): in_layout(images[:size], layout == LAYOUTS[1]) for layout, size in pairs
    }
    best: dict[tuple[str, int], float] = {}
    with evaluating(model):
        for batch in batches.values():
            model(batch)
        for round_number in range(_TIMED_ROUNDS):
            for pair in pairs if round_number % 2 == 0 else reversed(pairs):
                passes = math.ceil(_IMAGES_PER_TIMING / pair[1])
                synchronize(device)
                start = time.perf_counter()
                for _ in range(passes):
                    model(batches[pair])
                synchronize(device)
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


def choose_setup(
    model: nn.Module,
    shape: tuple[int, ...],
    device: torch.device,
    image_count: int,
    batch_size: int | None,
    channels_last: bool | None,
) -> tuple[int, bool]:
    """The batch size and layout asked for, the unspecified ones the fastest measured.

    >>> choose_setup(torch.nn.Conv2d(3, 2, 3), (3, 8, 8), torch.device("cpu"), 10, 4, False)
    (4, False)
    """
    if batch_size is not None and channels_last is not None:
        return batch_size, channels_last
    # A batch cannot hold more than all the images: larger sizes are not worth measuring.
    sizes = [batch_size] if batch_size is not None else useful_batch_sizes(image_count)
    return measure_batch_speeds(model, shape, device, sizes).fastest(channels_last)


def useful_batch_sizes(image_count: int) -> list[int]:
    """BATCH_SIZES below ``image_count``, plus all the images in one batch (at most 64).

    >>> useful_batch_sizes(10), useful_batch_sizes(1000)
    ([1, 4, 8, 10], [1, 4, 8, 16, 32, 64])
    """
    whole = min(max(image_count, 1), BATCH_SIZES[-1])
    return sorted({size for size in BATCH_SIZES if size < whole} | {whole})


def in_layout(batch: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``batch`` stored channels-last (NHWC) or channels first, contiguous: the same numbers.

    >>> in_layout(torch.zeros(1, 3, 2, 2), channels_last=True).stride()
    (12, 1, 6, 3)
    """
    # oneDNN's CPU convolutions are often faster on channels-last.
    if channels_last and batch.dim() == 4:
        return batch.contiguous(memory_format=torch.channels_last)
    return batch.contiguous()


def check_batch_size(batch_size: int | None) -> None:
    """Refuse a batch size below 1 (None, the measured fastest, is fine).

    >>> check_batch_size(None), check_batch_size(8)
    (None, None)
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(
            f"batch_size={batch_size} must be at least 1 (or None: the fastest, measured)."
        )
