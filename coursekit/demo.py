"""A web page to try a model: upload or drop an image, see the top classes as bars.

``serve(path)`` starts a Gradio app on http://127.0.0.1:7860 for a bundle (``.pt``) or an
ONNX file written by ``export_onnx``. The page shows the top-k classes with their
probabilities, the time the prediction took and, for a bundle, the Grad-CAM overlay. A file
that is not an image, is damaged or is too large gets a readable message in the page.

    >>> serve("runs/flowers.onnx")                     # doctest: +SKIP
    >>> result = classify(load_model("runs/flowers.pt"), "rose.jpg")  # doctest: +SKIP
    >>> result.labels                                  # doctest: +SKIP
    {'rose': 0.93, 'tulip': 0.04, ...}

Gradio is the optional extra ``demo`` (``pip install -e ".[demo]"``). Its usage analytics
are switched off before it is imported, so nothing leaves the machine unless ``share=True``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from PIL import Image
from torch import nn

from coursekit.bundle import Bundle, load_bundle
from coursekit.export import OnnxModel, load_onnx
from coursekit.folders import UnreadableImageError, load_image, to_rgb
from coursekit.infer import predict_image
from coursekit.viz import grad_cam, im_convert

#: Where the page listens unless told otherwise: this computer only.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
#: Uploads larger than this are refused before they are decoded.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024

DemoModel = Bundle | OnnxModel


class DemoInputError(ValueError):
    """An uploaded file the demo cannot classify; the message is meant for the page."""


@dataclass(frozen=True)
class DemoResult:
    """What the page shows for one image."""

    #: Class name -> probability, best first (what ``gr.Label`` draws as bars).
    labels: dict[str, float]
    seconds: float
    #: The image with the Grad-CAM heatmap laid over it (H x W x 3 in [0, 1]), or None.
    overlay: np.ndarray | None

    @property
    def timing(self) -> str:
        """The prediction time, as the page prints it."""
        return f"Prediction took {self.seconds * 1000:.1f} ms (model forward pass)."


def load_model(path: str | os.PathLike) -> DemoModel:
    """A bundle (``.pt``) or an ONNX file (``.onnx``), ready to classify.

    >>> load_model("runs/flowers.onnx")  # doctest: +SKIP
    OnnxModel('runs/flowers.onnx', arch='resnet18', classes=102)
    """
    return load_onnx(path) if Path(path).suffix.lower() == ".onnx" else load_bundle(path)


def open_upload(upload: str | os.PathLike | Image.Image | None) -> Image.Image:
    """The uploaded file as an RGB image, or a DemoInputError whose message the page shows.

    >>> open_upload(None)
    Traceback (most recent call last):
    ...
    coursekit.demo.DemoInputError: No image yet: upload or drop a picture (JPEG, PNG, ...).
    """
    if upload is None:
        raise DemoInputError("No image yet: upload or drop a picture (JPEG, PNG, ...).")
    if isinstance(upload, Image.Image):
        return to_rgb(upload)
    path = Path(upload)
    if path.is_file() and path.stat().st_size > MAX_UPLOAD_BYTES:
        raise DemoInputError(
            f"{path.name} is {path.stat().st_size / 1e6:.0f} MB; the demo takes pictures up "
            f"to {MAX_UPLOAD_BYTES / 1e6:.0f} MB. Resize it and try again."
        )
    try:
        return load_image(path)
    except FileNotFoundError as error:
        raise DemoInputError(f"The upload {path.name} did not arrive: try again.") from error
    except UnreadableImageError as error:
        raise DemoInputError(
            f"{path.name} cannot be used: {_reason(error)} "
            "Upload a photo in a common format (JPEG, PNG, WebP, BMP, GIF)."
        ) from error


def _reason(error: Exception) -> str:
    """Why load_image refused the file, without the server's temporary path it names and
    without its advice for a dataset folder ("Fix: delete it ...")."""
    text = " ".join(str(error).split())
    text = text.split(": ", 1)[1] if ": " in text else text
    return text.split(" Fix:", 1)[0]


def classify(
    model: DemoModel, upload: str | os.PathLike | Image.Image | None, top_k: int = 5,
    with_grad_cam: bool = False,
) -> DemoResult:  # fmt: skip
    """Top-k probabilities, prediction time and (bundles only) the Grad-CAM overlay.

    >>> classify(load_model("runs/flowers.pt"), "rose.jpg", top_k=3).labels  # doctest: +SKIP
    """
    image = open_upload(upload)
    torch_or_onnx = model.model if isinstance(model, Bundle) else model
    prediction = predict_image(
        torch_or_onnx, image, model.transform, model.class_names, top_k=top_k
    )
    labels = dict(zip(prediction.top_classes, prediction.top_probs, strict=True))
    overlay = None
    if with_grad_cam and isinstance(model, Bundle):
        overlay = grad_cam_overlay(model, image, prediction.index)
    return DemoResult(labels=labels, seconds=prediction.seconds, overlay=overlay)


def grad_cam_overlay(bundle: Bundle, image: Image.Image, class_idx: int) -> np.ndarray:
    """The preprocessed image with the Grad-CAM heatmap of ``class_idx`` laid over it.

    The heatmap is taken at the model's last convolution, the usual choice.
    """
    convolutions = [module for module in bundle.model.modules() if isinstance(module, nn.Conv2d)]
    tensor = bundle.transform(image)
    heat = grad_cam(bundle.model, tensor, convolutions[-1], class_idx=class_idx).numpy()
    picture = im_convert(tensor, bundle.metadata["mean"], bundle.metadata["std"])
    colored = colormaps["jet"](heat)[..., :3]
    return np.clip(0.6 * picture + 0.4 * colored, 0.0, 1.0)


def build_app(model: DemoModel, examples: Sequence[str | os.PathLike] = (), top_k: int = 5) -> Any:
    """The Gradio page (a ``gr.Blocks``): upload, examples, bars, time and Grad-CAM.

    >>> app = build_app(load_model("runs/flowers.onnx"))  # doctest: +SKIP
    >>> app.launch()                                      # doctest: +SKIP
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    can_explain = isinstance(model, Bundle)

    def on_image(upload: str | None, explain: bool) -> tuple[Any, str, Any]:
        if upload is None:  # the upload was cleared: an empty page, no complaint
            return None, "", None
        try:
            result = classify(model, upload, top_k, with_grad_cam=explain and can_explain)
        except DemoInputError as error:
            # Shown in the page (the text box and a pop-up); no stack trace reaches the user.
            gr.Warning(str(error))
            return None, str(error), None
        return result.labels, result.timing, result.overlay

    with gr.Blocks(title="coursekit demo", analytics_enabled=False) as app:
        gr.Markdown(
            f"## Image classifier ({model.arch}, {len(model.class_names)} classes)\n"
            "Upload or drop a picture, or pick an example below."
        )
        with gr.Row():
            with gr.Column():
                upload = gr.File(
                    label="Image", file_types=["image"], type="filepath", elem_id="upload"
                )
                explain = gr.Checkbox(
                    label="Show where the model looked (Grad-CAM)",
                    value=False,
                    visible=can_explain,
                )
                if examples:
                    gr.Examples([[str(example)] for example in examples], inputs=[upload])
            with gr.Column():
                labels = gr.Label(num_top_classes=top_k, label="Prediction", elem_id="prediction")
                message = gr.Textbox(label="Time / message", interactive=False, elem_id="message")
                overlay = gr.Image(label="Grad-CAM", visible=can_explain, interactive=False)
        outputs = [labels, message, overlay]
        upload.change(on_image, [upload, explain], outputs)
        explain.change(on_image, [upload, explain], outputs)
    return app


def serve(
    path: str | os.PathLike, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
    share: bool = False, top_k: int = 5, examples: Sequence[str | os.PathLike] = (),
    block: bool = True,
) -> Any:  # fmt: skip
    """Start the demo page for a bundle or ONNX file; ``block=False`` returns the running app.

    Only this computer can open it (``host`` 127.0.0.1). To show it to others: ``share=True``
    (a temporary public Gradio link), ``host="0.0.0.0"`` on a trusted network, or a hosted
    Space. Stop a non-blocking app with ``app.close()``.

    >>> app = serve("runs/flowers.onnx", block=False)  # doctest: +SKIP
    >>> app.close()                                     # doctest: +SKIP
    """
    app = build_app(load_model(path), examples=examples, top_k=top_k)
    where = f"http://{host}:{port}"
    print(f"Demo of {path} on {where}", flush=True)
    if not share and host == DEFAULT_HOST:
        print(
            "Only this computer can open it. To share it: --share (a temporary public link) "
            "or --host 0.0.0.0 on a network you trust.",
            flush=True,
        )
    app.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
        show_error=False, quiet=True,
    )  # fmt: skip
    return app
