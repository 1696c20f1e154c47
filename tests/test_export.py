"""ONNX export: metadata in the file, dynamic batch, parity with PyTorch, ONNX Runtime predictions.

The parity bound (1e-4 on the logits, every top-1 equal) is checked on randomly initialised
resnet18 and mobilenet_v2 in float32: no pretrained weights are needed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import coursekit as ck
from bench.onnx_inference import with_batch_statistics
from coursekit.__main__ import main
from coursekit.export import ONNX_FORMAT, OnnxExportError, check_parity, load_onnx

pytest.importorskip("onnxruntime", reason='the deploy extra: pip install -e ".[deploy]"')
onnx = pytest.importorskip("onnx", reason='the deploy extra: pip install -e ".[deploy]"')

CLASSES = ["ant", "bee", "cat"]
SIZE = 64


def make_bundle(tmp_path, arch: str, size: int = SIZE):
    torch.manual_seed(0)
    model = with_batch_statistics(ck.random_init_model(arch, len(CLASSES)), size)
    return ck.export_bundle(
        tmp_path / f"{arch}.pt", model, class_names=CLASSES, arch=arch, image_size=size,
        resize_size=size + 8, mean=ck.IMAGENET_MEAN, std=ck.IMAGENET_STD,
    )  # fmt: skip


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_export_matches_pytorch_within_1e_4(tmp_path, arch):
    bundle_path = make_bundle(tmp_path, arch, size=224)
    report = ck.export_onnx(bundle_path, tmp_path / f"{arch}.onnx", parity_batch=4)
    assert report.parity is not None
    assert report.parity.max_abs_diff < 1e-4, report.parity
    assert report.parity.top1_agree
    assert report.parity.max_abs_logit > 0.1  # logits of a realistic scale were compared
    assert f"opset {report.opset}" in str(report)
    # An independent check on other images and another batch size (dynamic batch).
    bundle, onnx_model = ck.load_bundle(bundle_path), load_onnx(report.path)
    batch = torch.rand(3, 3, 224, 224)
    parity = check_parity(bundle.model, onnx_model, batch)
    assert parity.max_abs_diff < 1e-4 and parity.top1_agree


def test_preprocessing_metadata_travels_in_the_file(tmp_path):
    report = ck.export_onnx(make_bundle(tmp_path, "resnet18"), tmp_path / "m.onnx", parity_batch=0)
    props = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    assert props["format"] == ONNX_FORMAT
    assert json.loads(props["class_names"]) == CLASSES
    assert json.loads(props["image_size"]) == SIZE and json.loads(props["resize_size"]) == SIZE + 8
    assert json.loads(props["mean"]) == pytest.approx(ck.IMAGENET_MEAN)
    assert json.loads(props["std"]) == pytest.approx(ck.IMAGENET_STD)
    assert json.loads(props["arch"]) == "resnet18"
    graph_input = onnx.load(str(report.path)).graph.input[0]
    batch_dim = graph_input.type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic: any batch size
    loaded = load_onnx(report.path)
    assert loaded.class_names == CLASSES and loaded.arch == "resnet18"


def test_a_bare_model_needs_its_class_names(tmp_path):
    model = ck.random_init_model("resnet18", 3)
    with pytest.raises(OnnxExportError, match="class_names"):
        ck.export_onnx(model, tmp_path / "m.onnx")
    report = ck.export_onnx(
        model, tmp_path / "m.onnx", class_names=CLASSES, arch="resnet18", image_size=SIZE,
        resize_size=SIZE,
    )  # fmt: skip
    assert report.parity.ok()


def test_parity_report_can_fail(tmp_path):
    bundle = ck.load_bundle(make_bundle(tmp_path, "resnet18"))
    onnx_model = load_onnx(ck.export_onnx(bundle, tmp_path / "m.onnx", parity_batch=0).path)
    with torch.no_grad():
        bundle.model.fc.bias += 1.0  # the PyTorch model changes after the export
    parity = check_parity(bundle.model, onnx_model, torch.rand(2, 3, SIZE, SIZE))
    assert parity.max_abs_diff > 0.5 and not parity.ok()


def test_onnx_file_without_metadata_is_refused(tmp_path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2)).eval()
    path = tmp_path / "plain.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, 4, 4),), dynamo=True).save(str(path))
    with pytest.raises(OnnxExportError, match="not written by ck.export_onnx"):
        load_onnx(path)
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(OnnxExportError, match="not a usable ONNX file"):
        load_onnx(tmp_path / "broken.onnx")
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        load_onnx(tmp_path / "missing.onnx")


def write_images(folder, count: int = 6) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        sub = folder / CLASSES[i % len(CLASSES)]
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(40 + 7 * i, 50, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"{i}.png")


def test_onnx_predict_folder_equals_pytorch_predict_folder(tmp_path):
    bundle_path = make_bundle(tmp_path, "mobilenet_v2")
    write_images(tmp_path / "photos")
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"not a jpeg")  # skipped by both
    bundle = ck.load_bundle(bundle_path)
    onnx_model = load_onnx(ck.export_onnx(bundle, tmp_path / "m.onnx", parity_batch=0).path)
    expected = bundle.predict_folder(tmp_path / "photos", top_k=3, batch_size=4)
    actual = onnx_model.predict_folder(tmp_path / "photos", top_k=3, batch_size=4)
    assert len(actual) == len(expected) == 6
    for mine, theirs in zip(actual, expected, strict=True):
        assert mine.source == theirs.source
        assert mine.top_classes == theirs.top_classes
        assert mine.top_probs == pytest.approx(theirs.top_probs, abs=1e-5)


def test_export_command_prints_opset_and_parity(tmp_path, capsys):
    bundle_path = make_bundle(tmp_path, "resnet18")
    assert main(["export", str(bundle_path), "--onnx", str(tmp_path / "cli.onnx")]) == 0
    out = capsys.readouterr().out
    assert "opset 18" in out and "largest logit difference" in out and "all agree" in out
    assert (tmp_path / "cli.onnx").is_file()


def test_quantized_file_keeps_metadata_and_mostly_agrees(tmp_path):
    report = ck.export_onnx(make_bundle(tmp_path, "resnet18"), tmp_path / "m.onnx", parity_batch=0)
    quantized = load_onnx(ck.quantize_onnx(report.path, tmp_path / "m.int8.onnx"))
    assert quantized.class_names == CLASSES
    assert (tmp_path / "m.int8.onnx").stat().st_size < report.path.stat().st_size / 2
    batch = torch.rand(4, 3, SIZE, SIZE)
    parity = check_parity(load_onnx(report.path), quantized, batch)
    assert parity.max_abs_diff > 0  # int8 is an approximation, not an exact copy
    head_only = ck.quantize_onnx(report.path, tmp_path / "m.fc.onnx", op_types=["Gemm"])
    assert head_only.stat().st_size > 2 * (tmp_path / "m.int8.onnx").stat().st_size
