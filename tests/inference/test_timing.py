"""coursekit.timing: timed passes and the fastest batch size and layout, on small CPU models."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from inference_helpers import (
    CLASSES,
    ModeProbe,
    count_forwards,
    make_image,
    reference_probs,
)
from torch import nn

from coursekit import infer, timing


def test_time_inference_runs_warmup_plus_timed_passes_in_eval_mode():
    probe = ModeProbe().train()
    # A slow first pass (one-off set-up cost) must fall in the untimed warm-up.
    probe.register_forward_hook(lambda m, args, out: time.sleep(0.5 if len(m.calls) == 1 else 0))

    result = timing.time_inference(probe, torch.randn(4, 3, 8, 8), warmup=2, runs=5)

    assert len(probe.calls) == 2 + 5
    assert result.mean_ms < 500 / 7  # had the 0.5 s pass been timed, the mean would exceed this
    assert all(not c["training"] and c["inference_mode"] for c in probe.calls)
    assert probe.training
    assert (result.runs, result.batch_size, result.device) == (5, 4, "cpu")
    assert 0 < result.min_ms <= result.median_ms and result.min_ms <= result.mean_ms
    assert result.per_image_ms == pytest.approx(result.median_ms / 4)
    assert result.images_per_second == pytest.approx(1000 / result.per_image_ms)
    assert "images/s" in str(result)


def test_time_inference_times_a_real_model_and_asks_for_a_batch_dimension(model):
    forwards = count_forwards(model)

    result = timing.time_inference(model, torch.randn(2, 3, 32, 32), warmup=1, runs=3)

    assert forwards == [2] * 4
    assert result.median_ms > 0 and result.images_per_second > 0
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        timing.time_inference(model, torch.randn(3, 32, 32))


def test_compare_one_by_one_vs_batched_times_the_same_images_both_ways():
    probe = ModeProbe()

    result = timing.compare_one_by_one_vs_batched(
        probe, torch.randn(5, 3, 8, 8), warmup=1, runs=2, batch_size=2, channels_last=False
    )

    batch_sizes = [c["batch"] for c in probe.calls]
    # (warmup + runs) passes of each kind: 5 single images, then batches of 2, 2 and 1.
    assert batch_sizes == [1] * (5 * 3) + [2, 2, 1] * 3
    one, batched = result["one_by_one"], result["batched"]
    assert one.batch_size == batched.batch_size == 5
    assert result["speedup"] == pytest.approx(batched.images_per_second / one.images_per_second)
    assert (result["batch_size"], result["channels_last"]) == (2, False)


class Slowed(nn.Module):
    """Wraps a model and sleeps ``seconds_per_pass(batch, channels_last)`` in every pass, so
    that which batch size and layout is fastest is known in advance."""

    def __init__(self, model: nn.Module, seconds_per_pass) -> None:
        super().__init__()
        self.model = model
        self.seconds_per_pass = seconds_per_pass
        self.calls: list[tuple[int, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        channels_last = channels_last and not x.is_contiguous()
        self.calls.append((len(x), channels_last))
        time.sleep(self.seconds_per_pass(len(x), channels_last))
        return self.model(x)


def middle_batch_wins(batch: int, channels_last: bool) -> float:
    """Per-image cost is lowest at batch 4 in channels-last, as on a CPU; batch 1 NCHW is
    slowest per image. Large enough sleeps that a busy machine cannot reorder them."""
    per_image = {1: 0.004, 4: 0.0015, 8: 0.0025}.get(batch, 0.003)
    return batch * per_image * (1.0 if channels_last else 1.5)


def test_measure_batch_speeds_finds_the_fastest_batch_size_and_layout():
    slowed = Slowed(ModeProbe(), middle_batch_wins)

    speeds = timing.measure_batch_speeds(slowed, 8, batch_sizes=[1, 4, 8])

    assert set(speeds.images_per_second) == {"NCHW", "channels-last"}
    assert all(sorted(row) == [1, 4, 8] for row in speeds.images_per_second.values())
    assert speeds.fastest() == (4, True)
    assert speeds.fastest(channels_last=False) == (4, False)
    cl = speeds.images_per_second["channels-last"]
    assert cl[4] > cl[8] > cl[1]  # the measured order follows the costs
    assert {layout for _, layout in slowed.calls} == {True, False}
    assert str(speeds).startswith("fastest: batch 4, channels-last")
    assert all(not c["training"] and c["inference_mode"] for c in slowed.model.calls)


def test_measured_speeds_are_remembered_until_remeasure_is_asked():
    slowed = Slowed(ModeProbe(), middle_batch_wins)
    first = timing.measure_batch_speeds(slowed, 8, batch_sizes=[1, 4])
    passes = len(slowed.calls)

    again = timing.measure_batch_speeds(slowed, 8, batch_sizes=[4, 1])
    assert len(slowed.calls) == passes and again == first  # from memory: no pass at all

    timing.measure_batch_speeds(slowed, 8, batch_sizes=[1, 4, 8])
    # A new size: all sizes asked for are measured again together, so they stay comparable.
    assert {batch for batch, _ in slowed.calls[passes:]} == {1, 4, 8}
    passes = len(slowed.calls)
    timing.measure_batch_speeds(slowed, (3, 8, 6), batch_sizes=[1, 4])  # another image shape
    assert len(slowed.calls) > passes
    passes = len(slowed.calls)
    timing.measure_batch_speeds(slowed, 8, batch_sizes=[1, 4], remeasure=True)
    assert len(slowed.calls) > passes
    with pytest.raises(ValueError, match="batch_sizes"):
        timing.measure_batch_speeds(slowed, 8, batch_sizes=[0, 4])


def test_predict_folder_uses_the_fastest_setup_and_an_explicit_choice_overrides_it(
    transform, tmp_path
):
    folder = tmp_path / "photos"
    for index in range(9):
        make_image(folder / f"{index}.png", seed=index)
    slowed = Slowed(ModeProbe(), middle_batch_wins)

    preds = infer.predict_folder(slowed, folder, transform, CLASSES)

    assert len(preds) == 9
    # After measuring: the untimed warm-up image, then batches of 4, 4 and 1, channels-last.
    assert slowed.calls[-4:] == [(1, True), (4, True), (4, True), (1, True)]
    slowed.calls.clear()

    infer.predict_folder(slowed, folder, transform, CLASSES, batch_size=9, channels_last=False)

    assert slowed.calls == [(1, False), (9, False)]  # nothing measured, exactly as asked
    with pytest.raises(ValueError, match="batch_size=0"):
        infer.predict_folder(slowed, folder, transform, CLASSES, batch_size=0)


def test_tuned_predictions_equal_the_unbatched_ones_in_both_layouts(model, transform, images):
    tuned = infer.predict_images(model, images, transform, CLASSES)
    for channels_last in (False, True):
        batched = infer.predict_images(
            model, images, transform, CLASSES, batch_size=4, channels_last=channels_last
        )
        for path, a, b in zip(images, tuned, batched, strict=True):
            expected = reference_probs(copy.deepcopy(model), transform, path)
            assert a.top_classes == b.top_classes
            assert a.top_probs == pytest.approx(b.top_probs, abs=1e-5)
            assert a.top_probs[0] == pytest.approx(expected.max().item(), abs=1e-5)


def test_the_comparison_batches_with_the_fastest_setup_and_is_not_slower_than_one_by_one():
    slowed = Slowed(ModeProbe(), middle_batch_wins)

    result = timing.compare_one_by_one_vs_batched(slowed, torch.randn(8, 3, 8, 8), warmup=1, runs=2)

    assert (result["batch_size"], result["channels_last"]) == (4, True)
    assert slowed.calls[-2:] == [(4, True), (4, True)]
    assert result["speedup"] > 1.5  # 4 ms per image one by one (NCHW: 6 ms), 1.5 ms batched


def test_useful_batch_sizes_stop_at_the_number_of_images():
    assert timing.useful_batch_sizes(1) == [1]
    assert timing.useful_batch_sizes(5) == [1, 4, 5]
    assert timing.useful_batch_sizes(64) == [1, 4, 8, 16, 32, 64]
    assert timing.useful_batch_sizes(500) == [1, 4, 8, 16, 32, 64]
