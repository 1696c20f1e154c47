"""coursekit.infer: predictions for images and folders, tables and CSV, on tiny images."""

from __future__ import annotations

import copy
import csv
import time
from pathlib import Path

import pytest
import torch
from inference_helpers import (
    CLASSES,
    ModeProbe,
    count_forwards,
    make_image,
    reference_probs,
)
from torch.utils.data import DataLoader, TensorDataset

from coursekit import infer
from coursekit.folders import image_files, load_image
from coursekit.infer import Prediction


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
        probe,
        images,
        transform,
        CLASSES,
        batch_size=1,
        channels_last=False,  # nothing to tune
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
