"""The web demo the way a person uses it: `python -m coursekit serve` in headless Chromium.

A tiny model is trained in the test (a few steps on generated red and blue pictures) and
exported as a bundle; the demo serves it on a free loopback port. The test uploads a red
picture and expects the label "red" and its probability bars, then uploads a damaged file
and expects the readable message (no stack trace). Screenshots go to build/e2e/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import coursekit as ck

pytest.importorskip("gradio", reason='the demo extra: pip install -e ".[demo]"')

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "build" / "e2e"
CLASSES = ["blue", "red"]
SIZE = 32
SERVER_START_SECONDS = 60
ANSWER_MS = 20_000
pytestmark = pytest.mark.timeout(180)


def colored_picture(color: str, seed: int) -> Image.Image:
    """A noisy picture that is mostly red or mostly blue."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 90, size=(SIZE + 8, SIZE + 8, 3))
    pixels[..., 0 if color == "red" else 2] += 150
    return Image.fromarray(pixels.astype(np.uint8))


def train_tiny_bundle(path: Path) -> Path:
    """resnet18 at 32 px whose head is trained (the backbone stays random and frozen, so
    its features are computed once) on generated pictures: enough to tell red from blue."""
    torch.manual_seed(0)
    transform = ck.eval_transforms(SIZE, SIZE + 8)
    images = [(colored_picture(c, seed), i) for seed in range(8) for i, c in enumerate(CLASSES)]
    inputs = torch.stack([transform(image) for image, _ in images])
    targets = torch.tensor([label for _, label in images])
    model = ck.random_init_model("resnet18", len(CLASSES)).eval()
    with torch.no_grad():
        features = ck.without_head(model)(inputs)
    optimizer = torch.optim.Adam(model.fc.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model.fc(features), targets).backward()
        optimizer.step()
    return ck.export_bundle(
        path, model, class_names=CLASSES, arch="resnet18", image_size=SIZE,
        resize_size=SIZE + 8, mean=ck.IMAGENET_MEAN, std=ck.IMAGENET_STD,
    )  # fmt: skip


@pytest.fixture()
def demo_url(tmp_path_factory: pytest.TempPathFactory, loopback_port: int) -> Iterator[str]:
    """The demo serving a freshly trained bundle on 127.0.0.1; stopped at the end."""
    home = tmp_path_factory.mktemp("demo")
    bundle = train_tiny_bundle(home / "tiny.pt")
    port = loopback_port
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",  # nothing leaves the machine
        "GRADIO_TEMP_DIR": str(home / "gradio-tmp"),
        "HF_HUB_OFFLINE": "1",
    }
    log = home / "demo.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "coursekit", "serve", str(bundle), "--port", str(port)],
            cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if server.poll() is not None:
                pytest.fail(f"the demo exited with {server.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"the demo did not answer in {SERVER_START_SECONDS}s:\n{log.read_text()}"
                    )
                time.sleep(0.5)
        assert "127.0.0.1" in log.read_text()  # it says where it listens, and only there
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def test_upload_shows_the_label_and_bars_and_a_damaged_file_shows_a_message(
    demo_url: str, browser_context: object, tmp_path: Path
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    red = tmp_path / "red.png"
    colored_picture("red", seed=99).save(red)
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)  # a JPEG header, then nothing
    page = browser_context.new_page()  # type: ignore[attr-defined]
    page.goto(demo_url)
    upload = page.locator("#upload input[type=file]")
    upload.set_input_files(str(red))
    prediction = page.locator("#prediction")
    prediction.get_by_text("red").first.wait_for(timeout=ANSWER_MS)
    # gr.Label draws one bar per class, each with the class name and its percentage.
    page.wait_for_function(
        "() => document.querySelector('#prediction').innerText.includes('%')", timeout=ANSWER_MS
    )
    shown = prediction.inner_text()
    assert "red" in shown and "blue" in shown and "%" in shown
    assert "ms" in page.locator("#message textarea").input_value()
    page.screenshot(path=SCREENSHOTS / "demo-prediction.png", full_page=True)

    page.locator("#upload button[aria-label='Clear']").first.click()
    upload.set_input_files(str(damaged))
    message = page.locator("#message textarea")
    page.wait_for_function(
        "() => document.querySelector('#message textarea').value.includes('cannot be used')",
        timeout=ANSWER_MS,
    )
    text = message.input_value()
    assert "damaged.jpg cannot be used" in text
    assert "Traceback" not in page.content()
    page.wait_for_timeout(1000)  # let the pop-up finish fading in before the picture
    page.screenshot(path=SCREENSHOTS / "demo-damaged-file.png", full_page=True)
    page.close()
