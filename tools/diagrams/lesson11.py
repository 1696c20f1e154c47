"""Lesson 11's picture: a bundle becomes an ONNX file with its metadata, run by ONNX Runtime
behind a web page; the int8 branch shrinks the file.

The weight sizes are computed from the model that ``coursekit`` builds (mobilenet_v2 with
102 classes): 4 bytes per float32 weight, 1 byte per int8 weight.
"""

from __future__ import annotations

from coursekit.models import count_parameters, random_init_model
from tools.diagrams import arrow, box, canvas, label

ARCH = "mobilenet_v2"
CLASSES = 102


def _weights_mb(bytes_per_weight: int) -> float:
    return count_parameters(random_init_model(ARCH, CLASSES)) * bytes_per_weight / 1e6


def ship_pipeline():
    float_mb, int8_mb = _weights_mb(4), _weights_mb(1)
    fig, ax = canvas(3.8)
    y, h = 1.95, 1.25
    middle = y + h / 2
    box(ax, 0.1, y, 1.9, h, "bundle .pt\nweights +\nclass names +\npreprocessing", "data", size=10)
    onnx_text = f"model.onnx\ngraph + weights\n({float_mb:.1f} MB float32)\n+ metadata"
    box(ax, 2.45, y, 2.0, h, onnx_text, "layer", size=10)
    box(ax, 4.9, y, 1.85, h, "ONNX Runtime\n(CPU, no\ntorch needed)", "learned", size=10)
    box(ax, 7.2, y, 1.7, h, "web page\n(Gradio):\nbars + time", "step", size=10)
    arrow(ax, (2.0, middle), (2.45, middle))
    arrow(ax, (4.45, middle), (4.9, middle))
    arrow(ax, (6.75, middle), (7.2, middle))
    label(ax, 2.2, y + h + 0.3, "ck.export_onnx\n+ parity check", size=10)
    label(ax, 5.8, y + h + 0.3, "ck.load_onnx", size=10)
    label(ax, 8.05, y + h + 0.3, "ck.serve", size=10)
    box(ax, 2.45, 0.15, 2.0, 1.0, f"model.int8.onnx\n({int8_mb:.1f} MB int8)", "warn", size=10)
    arrow(ax, (3.45, y), (3.45, 1.15))
    label(ax, 3.35, 1.55, "ck.quantize_onnx", size=10, ha="right")
    arrow(ax, (4.45, 0.65), (5.3, y), curve=0.2)
    label(ax, 7.6, 0.65, f"sizes: weights of\n{ARCH}, {CLASSES} classes", size=10)
    return fig


DIAGRAMS = {"11_ship_pipeline.png": ship_pipeline}
