"""coursekit.infer, timing, metrics and bundle, on tiny generated images and small CPU models."""

from __future__ import annotations

import copy
import csv
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from coursekit import infer, metrics, models, timing
from coursekit.bundle import BundleError, export_bundle, load_bundle
from coursekit.config import IMAGENET_MEAN, IMAGENET_STD
from coursekit.data import eval_transforms
from coursekit.folders import image_files, load_image
from coursekit.infer import Prediction
from coursekit.train import save_checkpoint

CLASSES = ["ants", "bees", "wasps"]
IMAGE_SIZE, RESIZE_SIZE = 32, 36
BUNDLE_ARGS = dict(
    class_names=CLASSES,
    arch="resnet18",
    image_size=IMAGE_SIZE,
    resize_size=RESIZE_SIZE,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny inputs gain nothing from intra-op threads, which thrash on a busy shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _forget_measured_speeds():
    """Each test measures afresh: speeds are remembered per model type, which tests share."""
    timing._MEASURED.clear()
    yield
    timing._MEASURED.clear()


def _random_resnet18() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=len(CLASSES))
    # Non-trivial running statistics, so that train-mode and eval-mode outputs differ.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def _resnet() -> nn.Module:
    return _random_resnet18()


@pytest.fixture
def model(_resnet: nn.Module) -> nn.Module:
    return copy.deepcopy(_resnet)


@pytest.fixture(scope="module")
def transform():
    return eval_transforms(IMAGE_SIZE, RESIZE_SIZE, IMAGENET_MEAN, IMAGENET_STD)


def make_image(path: Path, seed: int, size: tuple[int, int] = (48, 40)) -> Path:
    """A random-coloured image file (each seed gives a different picture)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    return [make_image(tmp_path / "imgs" / f"img{i}.png", seed=i) for i in range(5)]


def reference_probs(model: nn.Module, transform, path: Path) -> torch.Tensor:
    """Softmax of the model in eval mode, written out without coursekit.infer."""
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(transform(load_image(path)).unsqueeze(0)), dim=1)[0]


class ModeProbe(nn.Module):
    """Scores class 0 in train mode and class 1 in eval mode, and records every call."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.calls: list[dict] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(
            {
                "training": self.training,
                "bn_training": self.bn.training,
                "inference_mode": torch.is_inference_mode_enabled(),
                "batch": len(x),
            }
        )
        winner = 0 if self.training else 1
        return nn.functional.one_hot(torch.full((len(x),), winner), len(CLASSES)).float() * 5


def count_forwards(model: nn.Module) -> list[int]:
    """A list that grows by one entry (the batch size) per forward pass of ``model``."""
    calls: list[int] = []
    model.register_forward_hook(lambda module, args, output: calls.append(len(args[0])))
    return calls


# --------------------------------------------------------------------------- predictions


def test_predict_image_gives_sorted_top_k_of_the_eval_mode_softmax(model, transform, images):
    expected = reference_probs(copy.deepcopy(model), transform, images[0])

    pred = infer.predict_image(model, images[0], transform, CLASSES, top_k=5)

    assert len(pred.top_probs) == len(CLASSES)  # top_k=5 is clipped to the 3 classes
    assert pred.top_probs == sorted(pred.top_probs, reverse=True)
    assert sum(pred.top_probs) == pytest.approx(1.0, abs=1e-5)
    order = expected.argsort(descending=True).tolist()
    assert pred.top_indices == order
    assert pred.top_classes == [CLASSES[i] for i in order]
    assert torch.allclose(torch.tensor(pred.top_probs), expected[order], atol=1e-6)
    assert (pred.label, pred.index, pred.prob) == (CLASSES[order[0]], order[0], pred.top_probs[0])
    assert pred.source == str(images[0])

    top2 = infer.predict_image(model, images[0], transform, CLASSES, top_k=2)
    assert top2.top_classes == pred.top_classes[:2]


def test_predict_image_uses_eval_and_inference_mode_and_restores_every_flag(transform, images):
    probe = ModeProbe()
    probe.train()
    probe.bn.eval()  # a frozen BatchNorm inside a training model must stay frozen

    pred = infer.predict_image(probe, images[0], transform, CLASSES)

    # Two passes: the untimed warm-up, then the timed one.
    assert probe.calls == 2 * [
        {"training": False, "bn_training": False, "inference_mode": True, "batch": 1}
    ]
    assert pred.label == CLASSES[1]  # the eval-mode answer
    assert probe.training and not probe.bn.training


def test_predict_image_accepts_pil_images_and_converts_them_to_rgb(model, transform, images):
    rgb = load_image(images[1])
    grey = rgb.convert("L")

    from_path = infer.predict_image(model, images[1], transform, CLASSES)
    from_pil = infer.predict_image(model, rgb, transform, CLASSES)
    from_grey = infer.predict_image(model, grey, transform, CLASSES)
    from_grey_as_rgb = infer.predict_image(model, grey.convert("RGB"), transform, CLASSES)

    assert from_pil.source == "<image>"
    assert from_pil.top_probs == pytest.approx(from_path.top_probs, abs=1e-6)
    assert from_grey.top_probs == pytest.approx(from_grey_as_rgb.top_probs, abs=1e-6)


def test_predict_image_rejects_class_names_that_do_not_match_the_model(model, transform, images):
    with pytest.raises(ValueError, match="3 class scores but 2 class names"):
        infer.predict_image(model, images[0], transform, CLASSES[:2])


def test_predict_images_batched_equals_one_by_one(model, transform, images):
    forwards = count_forwards(model)

    batched = infer.predict_images(
        model, images, transform, CLASSES, batch_size=2, channels_last=False
    )

    assert forwards == [1, 2, 2, 1]  # one image's untimed warm-up, then one pass per batch
    assert [p.source for p in batched] == [str(path) for path in images]
    for path, pred in zip(images, batched, strict=True):
        alone = infer.predict_image(model, path, transform, CLASSES)
        assert pred.top_classes == alone.top_classes
        assert pred.top_probs == pytest.approx(alone.top_probs, abs=1e-5)


def test_decoding_in_worker_processes_gives_the_same_predictions_and_reports(
    model, transform, images, tmp_path, capsys
):
    broken = tmp_path / "imgs" / "broken.png"
    broken.write_bytes(b"not a picture")
    paths = [*images[:2], broken, *images[2:]]

    in_process = infer.predict_images(model, paths, transform, CLASSES, batch_size=2)
    in_workers = infer.predict_images(model, paths, transform, CLASSES, batch_size=2, num_workers=2)

    assert [p.source for p in in_workers] == [str(path) for path in images]
    for a, b in zip(in_process, in_workers, strict=True):
        assert a.top_classes == b.top_classes
        assert a.top_probs == pytest.approx(b.top_probs, abs=1e-6)
    # Printed by the notebook's own process both times, so the learner sees it.
    assert capsys.readouterr().out.count(f"Skipped: Cannot read image {broken}") == 2
    with pytest.raises(ValueError, match="num_workers=-1"):
        infer.predict_images(model, paths, transform, CLASSES, num_workers=-1)


def test_cpu_batches_run_channels_last_with_the_same_scores(model, transform, images):
    layouts: list[bool] = []
    model.register_forward_pre_hook(
        lambda module, args: layouts.append(
            args[0].is_contiguous(memory_format=torch.channels_last)
        )
    )

    preds = infer.predict_images(
        model, images, transform, CLASSES, batch_size=len(images), channels_last=True
    )

    assert layouts and all(layouts)
    batch = torch.stack([transform(load_image(path)) for path in images])
    with torch.inference_mode():
        expected = torch.softmax(model.eval()(batch), dim=1)
    for pred, probs in zip(preds, expected, strict=True):
        assert pred.top_probs[0] == pytest.approx(probs.max().item(), abs=1e-5)


def test_predict_images_gives_each_image_its_share_of_the_batch_time(transform, images):
    probe = ModeProbe()
    forward_seconds = 0.05
    probe.register_forward_hook(lambda module, args, output: time.sleep(forward_seconds))

    preds = infer.predict_images(
        probe, images[:4], transform, CLASSES, batch_size=4, channels_last=False
    )

    shares = {p.seconds for p in preds}
    assert len(shares) == 1  # one forward pass, shared equally
    share = shares.pop()
    assert forward_seconds / 4 <= share < forward_seconds


def slow_first_call(seconds: float) -> ModeProbe:
    """A model whose first call pays one-off set-up costs, as real first calls do."""
    probe = ModeProbe()
    probe.register_forward_hook(
        lambda module, args, output: time.sleep(seconds if len(module.calls) == 1 else 0)
    )
    return probe


def test_a_slow_first_call_is_an_untimed_warm_up(transform, images):
    first_call_seconds = 0.3
    probe = slow_first_call(first_call_seconds)

    preds = infer.predict_images(
        probe, images[:4], transform, CLASSES, batch_size=2, channels_last=False
    )
    alone = infer.predict_image(slow_first_call(first_call_seconds), images[0], transform, CLASSES)

    assert [call["batch"] for call in probe.calls] == [1, 2, 2]  # warm-up, then two batches
    assert max(p.seconds for p in [*preds, alone]) < first_call_seconds / 4


@pytest.mark.parametrize("wrong", ["photos", Path("photos")], ids=["str", "Path"])
def test_predict_images_refuses_one_path_and_points_to_predict_folder(model, transform, wrong):
    with pytest.raises(TypeError, match=r"got 'photos'.*predict_folder.*predict_image"):
        infer.predict_images(model, wrong, transform, CLASSES)


def test_predict_images_refuses_one_pil_image_and_points_to_predict_image(model, transform, images):
    with pytest.raises(TypeError, match="got one PIL image.*predict_image"):
        infer.predict_images(model, load_image(images[0]), transform, CLASSES)


def test_predict_images_skips_unreadable_files_naming_each(model, transform, images, capsys):
    broken = images[0].parent / "broken.jpg"
    broken.write_bytes(b"this is not a picture")
    missing = images[0].parent / "missing.png"

    preds = infer.predict_images(
        model, [images[0], broken, images[1], missing], transform, CLASSES, batch_size=2
    )

    assert [p.source for p in preds] == [str(images[0]), str(images[1])]
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert "broken.jpg" in lines[0] and "missing.png" in lines[1]


def test_predict_images_opens_each_image_once_even_while_tuning(model, transform, images, capsys):
    broken = images[0].parent / "broken.jpg"
    broken.write_bytes(b"this is not a picture")
    opened: list[tuple] = []

    def counting(image):
        opened.append(image.size)
        return transform(image)

    # The tuning step looks at the first readable image for its shape: that image, and the
    # unreadable one before it, must not be opened (or reported) a second time.
    preds = infer.predict_images(model, [broken, *images], counting, CLASSES)

    assert len(opened) == len(images)
    assert [p.source for p in preds] == [str(path) for path in images]
    assert capsys.readouterr().out.count("broken.jpg") == 1


def test_predict_images_switches_eval_mode_once_per_call_not_per_batch(transform, images):
    probe = ModeProbe().train()
    switches: list[bool] = []
    original_train = probe.train

    def recording_train(mode: bool = True):
        switches.append(mode)
        return original_train(mode)

    probe.train = recording_train

    preds = infer.predict_images(
        probe, images, transform, CLASSES, batch_size=1, channels_last=False  # nothing to tune
    )

    assert len(preds) == len(images) and len(probe.calls) > len(images)  # warm-up included
    assert switches == [False]  # one eval() for the call; the flags are restored directly
    assert probe.training and probe.bn.training
    assert all(not call["training"] and call["inference_mode"] for call in probe.calls)


def test_predict_folder_is_recursive_sorted_and_ignores_hidden_files(model, transform, tmp_path):
    folder = tmp_path / "photos"
    wanted = [
        make_image(folder / "b" / "2.png", seed=2),
        make_image(folder / "a" / "1.jpg", seed=1),
        make_image(folder / "a" / "deeper" / "3.JPEG", seed=3),
    ]
    make_image(folder / ".ipynb_checkpoints" / "1-checkpoint.png", seed=4)
    make_image(folder / "a" / ".hidden.png", seed=5)
    make_image(folder / "__MACOSX" / "x.png", seed=6)
    (folder / "notes.txt").write_text("not an image")
    # A linked sub-folder is walked as the datasets walk it (build_datasets follows links).
    elsewhere = make_image(tmp_path / "elsewhere" / "4.png", seed=7).parent
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    wanted.append(folder / "linked" / "4.png")

    preds = infer.predict_folder(model, folder, transform, CLASSES, batch_size=2)

    assert [p.source for p in preds] == [str(path) for path in sorted(wanted)]
    assert image_files(folder) == sorted(wanted)


def test_predict_folder_explains_a_missing_or_empty_folder(model, transform, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
        infer.predict_folder(model, tmp_path / "nowhere", transform, CLASSES)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no pictures")
    with pytest.raises(FileNotFoundError, match="No image files in .*empty"):
        infer.predict_folder(model, tmp_path / "empty", transform, CLASSES)


# --------------------------------------------------------------------------- timing


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


# --------------------------------------------------------------------------- tables and CSV


def _hand_made_predictions() -> list[Prediction]:
    return [
        Prediction("photos/rose.jpg", ["rose", "tulip", "daisy"], [0.8, 0.15, 0.05], [2, 0, 1], 0.004),
        Prediction("photos/a_long_name.png", ["tulip", "rose", "daisy"], [0.5, 0.3, 0.2], [0, 2, 1], 0.0125),
    ]  # fmt: skip


def test_predictions_table_lines_up_file_label_prob_and_time():
    table = infer.predictions_table(_hand_made_predictions(), top_k=2)

    header, rule, first, second = table.splitlines()
    assert header.split() == ["file", "top-1", "prob", "ms/image", "top-2"]
    assert first.split()[:4] == ["photos/rose.jpg", "rose", "0.800", "4.00"]
    assert second.split()[:4] == ["photos/a_long_name.png", "tulip", "0.500", "12.50"]
    assert first.endswith("rose 0.80, tulip 0.15")
    # Fixed width: names start under their header, numbers end under theirs.
    label_start = header.index("top-1")
    assert first[label_start:].startswith("rose ") and second[label_start:].startswith("tulip ")
    for column, values in (("prob", ("0.800", "0.500")), ("ms/image", ("4.00", "12.50"))):
        end = header.index(column) + len(column)
        assert first[:end].endswith(values[0]) and second[:end].endswith(values[1])
    assert "top-2" not in infer.predictions_table(_hand_made_predictions())


def test_csv_round_trip_with_the_csv_module(model, transform, images, tmp_path):
    preds = infer.predict_images(model, images[:3], transform, CLASSES, top_k=2)
    target = tmp_path / "runs" / "new folder" / "predictions.csv"

    written = infer.save_predictions_csv(preds, target)

    assert written == target
    assert [p.name for p in target.parent.iterdir()] == ["predictions.csv"]  # no temp file left
    with target.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == [
        "file", "label", "prob", "top1_label", "top1_prob", "top2_label", "top2_prob", "seconds"
    ]  # fmt: skip
    for row, pred in zip(rows, preds, strict=True):
        assert (row["file"], row["label"]) == (pred.source, pred.label)
        assert float(row["prob"]) == pred.prob
        assert [row["top1_label"], row["top2_label"]] == pred.top_classes
        assert [float(row["top1_prob"]), float(row["top2_prob"])] == pred.top_probs
        assert float(row["seconds"]) == pred.seconds


def test_save_predictions_csv_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "predictions.csv"
    target.write_text("old results\n")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(csv.DictWriter, "writerows", crash)
    with pytest.raises(KeyboardInterrupt):
        infer.save_predictions_csv(_hand_made_predictions(), target)

    assert target.read_text() == "old results\n"
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]


# --------------------------------------------------------------------------- metrics


def test_collect_predictions_matches_the_eval_mode_softmax(model):
    torch.manual_seed(1)
    inputs, labels = torch.randn(7, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=3)
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        expected = torch.softmax(reference(inputs), dim=1)
    model.train()

    probs, collected = infer.collect_predictions(model, loader)

    assert probs.shape == (7, 3) and torch.allclose(probs, expected, atol=1e-5)
    assert torch.equal(collected, labels)
    assert model.training
    assert not probs.is_inference()  # learners may edit or plot it freely


def test_confusion_matrix_matches_a_hand_built_example():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    preds = torch.tensor([0, 1, 1, 2, 0, 2])

    cm = metrics.confusion_matrix(labels, preds, num_classes=3)

    assert cm.dtype == torch.int64
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_confusion_matrix_counts_like_a_plain_loop():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (50,), generator=generator)
    preds = torch.randint(0, 4, (50,), generator=generator)
    expected = torch.zeros(4, 4, dtype=torch.int64)
    for true, guess in zip(labels.tolist(), preds.tolist(), strict=True):
        expected[true, guess] += 1

    assert torch.equal(metrics.confusion_matrix(labels, preds, num_classes=4), expected)


def test_confusion_matrix_explains_bad_input():
    with pytest.raises(ValueError, match="class index 3, outside 0..2"):
        metrics.confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), num_classes=3)
    with pytest.raises(ValueError, match=r"probs.argmax\(dim=1\)"):
        metrics.confusion_matrix(torch.tensor([0, 1]), torch.rand(2, 3), num_classes=3)


def test_per_class_accuracy_is_nan_for_a_class_without_samples():
    cm = torch.tensor([[2, 1, 0], [0, 0, 0], [1, 0, 3]])

    accuracy = metrics.per_class_accuracy(cm)

    assert accuracy[0].item() == pytest.approx(2 / 3)
    assert torch.isnan(accuracy[1])
    assert accuracy[2].item() == pytest.approx(3 / 4)


def test_top_k_accuracy_matches_a_hand_calculation():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.25, 0.45, 0.30]])
    labels = torch.tensor([1, 2, 0])
    # top-1 guesses 0, 2, 1: only the second is right. top-2 sets {0,1}, {2,1}, {1,2}: two right.
    assert metrics.top_k_accuracy(probs, labels, k=1) == pytest.approx(1 / 3)
    assert metrics.top_k_accuracy(probs, labels, k=2) == pytest.approx(2 / 3)
    assert metrics.top_k_accuracy(probs, labels, k=10) == 1.0


# --------------------------------------------------------------------------- bundles


@pytest.fixture(scope="module")
def bundle_path(_resnet: nn.Module, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "models" / "insects.pt"
    extra = {"epochs": 3, "note": "smoke", "history": [0.5, 0.7]}
    assert export_bundle(path, copy.deepcopy(_resnet), extra=extra, **BUNDLE_ARGS) == path
    return path


def test_bundle_is_one_plain_file_that_safe_torch_load_reads(bundle_path, _resnet):
    contents = torch.load(bundle_path, weights_only=True)

    assert set(contents) == {
        "format", "version", "state_dict", "class_names", "arch", "num_classes",
        "image_size", "resize_size", "mean", "std", "extra",
    }  # fmt: skip
    assert (contents["format"], contents["version"]) == ("coursekit-bundle", 1)
    assert contents["class_names"] == CLASSES and contents["num_classes"] == 3
    assert contents["arch"] == "resnet18"
    assert (contents["image_size"], contents["resize_size"]) == (IMAGE_SIZE, RESIZE_SIZE)
    assert contents["mean"] == list(IMAGENET_MEAN) and contents["std"] == list(IMAGENET_STD)
    assert contents["extra"] == {"epochs": 3, "note": "smoke", "history": [0.5, 0.7]}
    original = _resnet.state_dict()
    assert all(torch.equal(contents["state_dict"][k], original[k]) for k in original)
    assert [p.name for p in bundle_path.parent.iterdir()] == ["insects.pt"]  # no temp file


def test_bundle_loads_in_a_fresh_python_without_coursekit(bundle_path, _resnet, tmp_path):
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    torch.save(inputs, tmp_path / "inputs.pt")
    script = textwrap.dedent(
        """
        import sys
        import torch, torchvision
        bundle_file, inputs_file, output_file = sys.argv[1:]
        bundle = torch.load(bundle_file, weights_only=True)
        model = torchvision.models.get_model(
            bundle["arch"], weights=None, num_classes=bundle["num_classes"]
        )
        model.load_state_dict(bundle["state_dict"])
        model.eval()
        with torch.no_grad():
            torch.save(model(torch.load(inputs_file, weights_only=True)), output_file)
        assert not [name for name in sys.modules if name.startswith("coursekit")]
        """
    )
    outputs = tmp_path / "outputs.pt"
    files = [str(bundle_path), str(tmp_path / "inputs.pt"), str(outputs)]
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, *files], capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stderr
    expected = copy.deepcopy(_resnet).eval()
    with torch.no_grad():
        assert torch.allclose(torch.load(outputs, weights_only=True), expected(inputs), atol=1e-5)


def test_load_bundle_predicts_like_the_original_model(bundle_path, model, transform, images):
    bundle = load_bundle(bundle_path, device="cpu")

    assert not bundle.model.training
    assert next(bundle.model.parameters()).device == torch.device("cpu")
    assert (bundle.arch, bundle.class_names) == ("resnet18", CLASSES)
    assert repr(bundle) == "Bundle(arch='resnet18', classes=3, image_size=32)"
    assert bundle.metadata["extra"]["note"] == "smoke" and "state_dict" not in bundle.metadata
    for path in images[:2]:
        original = infer.predict_image(model, path, transform, CLASSES)
        loaded = bundle.predict(path, top_k=3)
        assert loaded.top_classes == original.top_classes
        assert loaded.top_probs == pytest.approx(original.top_probs, abs=1e-6)
    folder_preds = bundle.predict_folder(images[0].parent, top_k=2)
    assert [p.source for p in folder_preds] == [str(path) for path in images]
    assert all(len(p.top_classes) == 2 for p in folder_preds)


@pytest.mark.parametrize(
    ("build", "arch", "loaded_type"),
    [
        (lambda: models.resnet18(num_classes=3), "resnet18", torchvision.models.ResNet),
        (lambda: torchvision.models.resnet18(weights=None, num_classes=3), "coursekit.resnet18", models.ResNet),
    ],
    ids=["coursekit-model-as-torchvision", "torchvision-model-as-coursekit"],
)  # fmt: skip
def test_coursekit_and_torchvision_resnet_bundles_interchange(build, arch, loaded_type, tmp_path):
    torch.manual_seed(0)
    original = build().eval()
    path = export_bundle(tmp_path / "b.pt", original, **{**BUNDLE_ARGS, "arch": arch})

    loaded = load_bundle(path).model

    assert type(loaded) is loaded_type
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        assert torch.allclose(loaded(inputs), original(inputs), atol=1e-5)


@pytest.mark.parametrize("transform_input", [True, False])
def test_googlenet_bundles_keep_the_input_transform_and_load_without_aux_heads(
    transform_input, tmp_path
):
    # Built the way the ImageNet weights are (no auxiliary heads) or as a learner might.
    torch.manual_seed(0)
    original = torchvision.models.googlenet(
        weights=None,
        num_classes=3,
        aux_logits=False,
        transform_input=transform_input,
        init_weights=True,
    ).eval()
    path = export_bundle(tmp_path / "g.pt", original, **{**BUNDLE_ARGS, "arch": "googlenet"})

    stored = torch.load(path, weights_only=True)["arch_options"]
    assert stored == {"aux_logits": False, "transform_input": transform_input}
    loaded = load_bundle(path).model
    assert loaded.transform_input is transform_input and loaded.aux1 is None
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs), original(inputs))


def _tampered(bundle_path: Path, tmp_path: Path, **changes) -> Path:
    contents = torch.load(bundle_path, weights_only=True)
    contents.update(changes)
    path = tmp_path / "tampered.pt"
    torch.save(contents, path)
    return path


def _whole_model(path: Path, model: nn.Module) -> None:
    torch.save(model, path)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p, m: save_checkpoint(p, model=m, epoch=1), "training checkpoint.*load_checkpoint"),
        (lambda p, m: torch.save(m.state_dict(), p), "bare state_dict.*load_state_dict"),
        (lambda p, m: torch.save(torch.ones(3), p), "holds a Tensor"),
        (lambda p, m: torch.save({"weights": [1, 2]}, p), r"dictionary with keys \['weights'\]"),
        (_whole_model, r"safe loading.*torch.save\(model\)"),
        (lambda p, m: p.write_text("<html>not found</html>"), "not a file written by torch.save"),
    ],
    ids=["checkpoint", "state_dict", "tensor", "other-dict", "whole-model", "text-file"],
)
def test_load_bundle_says_what_a_non_bundle_file_is(write, message, tmp_path):
    path = tmp_path / "my model.pt"
    write(path, nn.Linear(4, 3))

    with pytest.raises(BundleError, match=message) as caught:
        load_bundle(path)

    assert str(path) in str(caught.value)
    assert "ck.export_bundle(" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_load_bundle_names_the_first_weight_that_does_not_fit(bundle_path, tmp_path):
    five = ["a", "b", "c", "d", "e"]
    path = _tampered(bundle_path, tmp_path, num_classes=5, class_names=five)

    mismatch = r"'fc.weight' has shape \(3, 512\) in the weights but resnet18 with 5 classes expects \(5, 512\)"
    with pytest.raises(BundleError, match=mismatch) as caught:
        load_bundle(path)

    assert str(path) in str(caught.value)


def test_load_bundle_rejects_an_unknown_arch_and_a_newer_format(bundle_path, tmp_path):
    with pytest.raises(BundleError, match="unknown arch 'resnet19'.*Did you mean resnet18"):
        load_bundle(_tampered(bundle_path, tmp_path, arch="resnet19"))
    with pytest.raises(BundleError, match="version 2, but this coursekit reads version 1"):
        load_bundle(_tampered(bundle_path, tmp_path, version=2))


def test_load_bundle_names_arch_options_that_do_not_fit(bundle_path, tmp_path):
    with pytest.raises(BundleError, match=r"damaged bundle: its arch_options \{'colour': True\}"):
        load_bundle(_tampered(bundle_path, tmp_path, arch_options={"colour": True}))


def test_load_bundle_explains_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_bundle(tmp_path / "nothing.pt")


def test_export_bundle_checks_arch_class_count_and_extra_before_writing(model, tmp_path):
    path = tmp_path / "never.pt"
    with pytest.raises(BundleError, match=r"'fc.weight' has shape \(3, 512\).*expects \(4, 512\)"):
        export_bundle(path, model, **{**BUNDLE_ARGS, "class_names": [*CLASSES, "flies"]})
    with pytest.raises(BundleError, match="do not fit resnet50 with 3 classes"):
        export_bundle(path, model, **{**BUNDLE_ARGS, "arch": "resnet50"})
    with pytest.raises(BundleError, match="unknown arch 'ResNet-18'.*resnet18"):
        export_bundle(path, model, **{**BUNDLE_ARGS, "arch": "ResNet-18"})
    with pytest.raises(BundleError, match=r"extra\['data'\] is a PosixPath.*str\(path\)"):
        export_bundle(path, model, extra={"data": tmp_path}, **BUNDLE_ARGS)
    assert not list(tmp_path.iterdir())


def test_export_bundle_keeps_the_old_bundle_when_writing_fails(model, tmp_path, monkeypatch):
    target = tmp_path / "insects.pt"
    target.write_bytes(b"the previous bundle")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        export_bundle(target, model, **BUNDLE_ARGS)

    assert target.read_bytes() == b"the previous bundle"
    assert [p.name for p in tmp_path.iterdir()] == ["insects.pt"]
