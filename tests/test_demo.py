"""The prediction behind the demo page: bars, time, Grad-CAM, and readable messages for bad files.

No browser and no server here (tests/e2e/test_demo_browser.py drives the page itself).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

import coursekit as ck
from coursekit.demo import DemoInputError, classify, load_model, open_upload

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
CLASSES = ["ant", "bee", "cat"]
SIZE = 64


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("demo")
    return ck.export_bundle(
        folder / "model.pt", ck.random_init_model("resnet18", len(CLASSES)), class_names=CLASSES,
        arch="resnet18", image_size=SIZE, resize_size=SIZE, mean=ck.IMAGENET_MEAN,
        std=ck.IMAGENET_STD,
    )  # fmt: skip


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "photo.png"
    pixels = np.random.default_rng(1).integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_classify_gives_the_bundles_top_k_and_a_time(bundle_path, photo):
    bundle = load_model(bundle_path)
    result = classify(bundle, photo, top_k=2)
    expected = bundle.predict(photo, top_k=2)
    assert list(result.labels) == expected.top_classes
    assert list(result.labels.values()) == pytest.approx(expected.top_probs)
    assert result.seconds > 0 and "ms" in result.timing
    assert result.overlay is None


def test_grad_cam_overlay_is_an_image_of_the_input_size(bundle_path, photo):
    result = classify(load_model(bundle_path), photo, with_grad_cam=True)
    assert result.overlay.shape == (SIZE, SIZE, 3)
    assert 0.0 <= result.overlay.min() and result.overlay.max() <= 1.0


def test_an_onnx_file_gives_the_same_bars(bundle_path, photo, tmp_path):
    pytest.importorskip("onnxruntime")
    onnx_path = ck.export_onnx(bundle_path, tmp_path / "model.onnx", parity_batch=0).path
    from_onnx = classify(load_model(onnx_path), photo, top_k=3)
    from_bundle = classify(load_model(bundle_path), photo, top_k=3)
    assert list(from_onnx.labels) == list(from_bundle.labels)
    assert list(from_onnx.labels.values()) == pytest.approx(list(from_bundle.labels.values()))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"just some text, not a picture", "cannot be used"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "cannot be used"),  # a PNG cut off after its header
    ],
    ids=["not-an-image", "damaged-png"],
)
def test_bad_files_get_a_readable_message(bundle_path, tmp_path, content, expected):
    upload = tmp_path / "upload.png"
    upload.write_bytes(content)
    with pytest.raises(DemoInputError, match=expected) as caught:
        classify(load_model(bundle_path), upload)
    message = str(caught.value)
    assert "upload.png" in message and "Traceback" not in message
    assert str(tmp_path) not in message  # the server's temporary path stays out of the page


def test_a_decompression_bomb_is_refused_before_decoding(bundle_path, tmp_path, monkeypatch):
    upload = tmp_path / "huge.png"
    Image.new("RGB", (400, 400)).save(upload)
    # A tiny limit stands in for a real bomb (a small file that decodes to gigapixels).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    with pytest.raises(DemoInputError, match="huge.png") as caught:
        classify(load_model(bundle_path), upload)
    assert "pixels" in str(caught.value).lower()


def test_an_oversized_upload_and_no_upload_are_refused(tmp_path, monkeypatch):
    upload = tmp_path / "big.jpg"
    upload.write_bytes(b"\xff" * 2000)
    monkeypatch.setattr("coursekit.demo.MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(DemoInputError, match="MB"):
        open_upload(upload)
    with pytest.raises(DemoInputError, match="No image yet"):
        open_upload(None)


def test_the_page_builds_and_its_handler_turns_errors_into_messages(bundle_path, tmp_path, photo):
    pytest.importorskip("gradio")
    app = ck.build_app(load_model(bundle_path), examples=[photo], top_k=2)
    handler = next(fn for fn in app.fns.values() if fn.name == "on_image").fn
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gr.Warning outside a request only warns
        labels, message, overlay = handler(str(tmp_path / "bad.jpg"), False)
    assert labels is None and "bad.jpg cannot be used" in message
    labels, message, overlay = handler(str(photo), True)
    assert len(labels) == 2 and "ms" in message and overlay.shape == (SIZE, SIZE, 3)
