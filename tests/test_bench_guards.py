"""Regression guards for the benchmarks: ratios with generous margins, never absolute times.

The full measurements live in ``bench/`` (``make bench``). These run the same code on tiny
sizes in seconds, so that a change which makes a helper lose its advantage over the plain
loop it replaces (or makes the two stop doing the same work) fails ``make test``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import coursekit as ck
from bench import cached_features, fit_vs_bound
from bench.batched_inference import measure_model
from bench.common import (
    TINY_SIZE,
    interleaved,
    resnet18_classifier,
    synthetic_data,
    write_section,
)
from bench.plain_loops import plain_phase, plain_predict_one_by_one
from bench.valid_peak_memory import autograd_saved_bytes


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Time on one intra-op thread: on a busy machine, a second thread that is not scheduled
    makes every small operation wait for it, which swamps the ratios these tests check."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic ImageFolder set with 2 train and 1 valid image per class (12 classes)."""
    return synthetic_data(tmp_path_factory.mktemp("bench"), train_per_class=2, valid_per_class=1)


def tiny_valid_loader(n: int = 16, size: int = 32) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=generator)
    labels = torch.randint(0, 12, (n,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=8)


# --------------------------------------------------------------------------- 1. fit vs plain


def test_coursekit_valid_phase_keeps_no_activations_for_backward_but_the_plain_loop_does():
    model, criterion, loader = resnet18_classifier(), nn.CrossEntropyLoss(), tiny_valid_loader()
    optimizer = torch.optim.Adam(model.parameters())

    kept_by_coursekit = autograd_saved_bytes(lambda: ck.evaluate(model, loader, criterion, "cpu"))
    kept_by_plain = autograd_saved_bytes(
        lambda: plain_phase(model, loader, criterion, optimizer, "valid")
    )

    assert kept_by_coursekit == 0
    # At least the 64-channel stem activations of a batch of 8 (8 * 64 * 16 * 16 floats).
    assert kept_by_plain > 8 * 64 * 16 * 16 * 4


def test_plain_valid_phase_measures_the_same_loss_and_accuracy_as_coursekit_evaluate():
    # The benchmark compares equal work only if both loops compute the same numbers.
    model, criterion, loader = resnet18_classifier(), nn.CrossEntropyLoss(), tiny_valid_loader()
    optimizer = torch.optim.Adam(model.parameters())

    plain_loss, plain_acc = plain_phase(model, loader, criterion, optimizer, "valid")
    loss, acc = ck.evaluate(model, loader, criterion, "cpu")

    assert plain_loss == pytest.approx(loss, rel=1e-4)
    assert plain_acc == pytest.approx(acc)


# --------------------------------------------------------------------------- 1b. fit vs bound


@pytest.fixture(scope="module")
def small_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of small generated JPEG photos (8 train, 4 valid each)."""
    return fit_vs_bound.generated_photos(
        tmp_path_factory.mktemp("photos"), train=8, valid=4, size=(64, 48)
    )


def test_the_bound_trains_on_the_same_batches_as_fit(small_photos: Path):
    # Deterministic transforms on both splits: the in-memory batches equal the loaders'.
    transform = ck.eval_transforms(TINY_SIZE.crop, TINY_SIZE.resize)
    train_ds, valid_ds = ck.build_datasets(small_photos, transform, transform)
    histories = []
    for in_memory in (False, True):
        loaders = ck.make_loaders(train_ds, valid_ds, batch_size=8, num_workers=0)
        if in_memory:
            loaders = {split: list(loader) for split, loader in loaders.items()}
        model = resnet18_classifier()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        histories.append(
            ck.fit(model, loaders, nn.CrossEntropyLoss(), optimizer, epochs=1, progress=False)
        )

    assert histories[0].train_loss == pytest.approx(histories[1].train_loss)
    assert histories[0].valid_acc == histories[1].valid_acc


def test_a_fit_epoch_with_the_default_workers_stays_near_the_compute_bound(small_photos: Path):
    workers = ck.default_num_workers()

    result = fit_vs_bound.measure_arch(
        "resnet18", small_photos, TINY_SIZE, batch_size=8, repeats=3, workers=[workers]
    )

    # CPU time of this process (workers' time is not in it): steady on a busy machine. At
    # 32 px the photos cost more next to the compute than at 224 px, hence the margin.
    assert result.ratio(f"fit, {workers} workers", "cpu") <= 2.0, result.runs


# --------------------------------------------------------------------------- 2. cached features


def test_a_cached_feature_epoch_is_at_least_3x_faster_than_running_the_whole_network(
    tiny_synthetic: Path,
):
    case = cached_features.Case(TINY_SIZE, train_per_class=2, valid_per_class=1, epochs=3)

    result = cached_features.measure_case(case, tiny_synthetic, batch_size=8)

    assert result.speedup("cpu") >= 3.0, result.later_epochs
    assert len(result.valid_acc["plain"]) == len(result.valid_acc["cached"]) == case.epochs


# --------------------------------------------------------------------------- 3. inference


def rgb_folder(folder: Path, count: int = 10) -> Path:
    """RGB images of varied sizes and colours (RGB, so both loops decode identical pixels)."""
    generator = torch.Generator().manual_seed(0)
    folder.mkdir()
    for index in range(count):
        side = 40 + 7 * index
        pixels = torch.randint(0, 256, (side, side + 5, 3), dtype=torch.uint8, generator=generator)
        Image.fromarray(pixels.numpy()).save(folder / f"img_{index}.png")
    return folder


def test_predict_folder_and_the_one_by_one_loop_predict_the_same_classes(tmp_path: Path):
    model = resnet18_classifier().eval()
    transform = ck.eval_transforms(TINY_SIZE.crop, TINY_SIZE.resize)
    names = [str(index) for index in range(12)]
    folder = rgb_folder(tmp_path / "photos")

    batched = [p.label for p in ck.predict_folder(model, folder, transform, names)]
    one_by_one = plain_predict_one_by_one(model, ck.image_files(folder), transform, names)

    assert batched == one_by_one


def test_predict_folder_keeps_up_with_the_bound_and_beats_the_one_by_one_loop(
    tiny_synthetic: Path,
):
    # CPU time: steadier than wall time on a shared machine. On 12 tiny images the fixed
    # costs of a call (the DataLoader, the untimed warm-up pass, Prediction objects) weigh
    # far more than at 224 px, where the benchmark's target is 0.9x the bound (0.48x was
    # measured here on a busy machine): only a collapse should fail.
    result = measure_model("resnet18", tiny_synthetic / "valid", TINY_SIZE, repeats=3)

    assert result.ratio_to_one_by_one("cpu") >= 1.0, result.runs
    assert result.ratio_to_bound("cpu") >= 0.35, result.runs
    assert result.ratio_to_bound("cpu") <= 1.2  # the bound is a bound (up to timing noise)


# --------------------------------------------------------------------------- plumbing


def test_interleaved_runs_the_variants_in_turn_reversing_the_order_every_other_round():
    calls: list[str] = []

    interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)

    assert calls == ["a", "b", "b", "a", "a", "b"]


def test_write_section_replaces_its_own_section_and_keeps_the_others(tmp_path: Path):
    results = tmp_path / "results.md"
    write_section("one", "first", results)
    write_section("two", "second", results)

    write_section("one", "first again", results)

    text = results.read_text(encoding="utf-8")
    assert "first again" in text and "second" in text
    assert "first\n" not in text
    assert text.index("first again") < text.index("second")
