"""Diagrams for the lessons, drawn with matplotlib and committed as PNG files.

Each lesson that has pictures owns one module here (``lesson03.py``, ...) exposing
``DIAGRAMS``: a dict from file name (``"03_resnet_basic_block.png"``) to a function that
takes no argument and returns a matplotlib Figure. Numbers in a diagram (channels, sizes)
are computed from the code that builds the model, so they cannot drift from it.

    python -m tools.diagrams            # redraw every diagram into notebooks/figures/
    python -m tools.diagrams 03 05      # only lessons 03 and 05
    python -m tools.diagrams course_map # the README's map of the course

Notebooks embed them with a relative link, ``![...](figures/03_resnet_basic_block.png)``,
which shows in JupyterLab, on the repository's web page and in Colab after a clone.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

#: A notebook shows a figure about 9 inches wide at 100 dpi; text below 10 pt is hard to read.
WIDTH = 9.0
DPI = 110
FONT_SIZE = 11

#: One palette for the whole course: what is learned, what is frozen, data, and plain steps.
COLORS = {
    "data": "#dbe9f6",
    "layer": "#fde9c9",
    "frozen": "#d9d9d9",
    "learned": "#c9ecd4",
    "step": "#f3f3f3",
    "warn": "#f8d0d0",
    "edge": "#333333",
}


def canvas(height: float, width: float = WIDTH) -> tuple[plt.Figure, plt.Axes]:
    """A blank figure whose axes run 0..width and 0..height in inches (no ticks, no frame).

    >>> fig, ax = canvas(2.0)
    >>> tuple(float(v) for v in ax.get_xlim())
    (0.0, 9.0)
    """
    fig = plt.figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    return fig, ax


def box(
    ax: plt.Axes,
    x: float,
    y: float,
    w: float,
    h: float,
    text: str = "",
    color: str = "step",
    size: float = FONT_SIZE,
    bold: bool = False,
) -> tuple[float, float, float, float]:
    """A rounded box with centred text; ``color`` is a COLORS key or a matplotlib colour.

    >>> fig, ax = canvas(2.0)
    >>> box(ax, 1, 0.5, 2, 1, "conv 3x3")
    (1, 0.5, 2, 1)
    """
    face = COLORS.get(color, color)
    ax.add_patch(
        FancyBboxPatch(
            (x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=face, edgecolor=COLORS["edge"], linewidth=1.2,
        )
    )
    if text:
        ax.text(
            x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size,
            fontweight="bold" if bold else "normal",
        )
    return (x, y, w, h)


def arrow(
    ax: plt.Axes,
    start: tuple[float, float],
    end: tuple[float, float],
    text: str = "",
    curve: float = 0.0,
    style: str = "-|>",
    size: float = FONT_SIZE - 1,
) -> None:
    """An arrow from ``start`` to ``end``, optionally bent (``curve``) and labelled at its middle.

    >>> fig, ax = canvas(2.0)
    >>> arrow(ax, (0, 1), (2, 1), "x")
    """
    ax.add_patch(
        FancyArrowPatch(
            start, end, arrowstyle=style, mutation_scale=14, linewidth=1.3,
            color=COLORS["edge"], connectionstyle=f"arc3,rad={curve}",
        )
    )
    if text:
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        ax.text(mx, my + 0.12, text, ha="center", va="bottom", fontsize=size)


def label(ax: plt.Axes, x: float, y: float, text: str, size: float = FONT_SIZE, **kw) -> None:
    """Plain text at (x, y), centred unless ``ha``/``va`` say otherwise."""
    kw.setdefault("ha", "center")
    kw.setdefault("va", "center")
    ax.text(x, y, text, fontsize=size, **kw)


def row_of_boxes(
    ax: plt.Axes,
    texts: Sequence[str],
    y: float,
    h: float,
    x0: float = 0.2,
    x1: float = WIDTH - 0.2,
    gap: float = 0.35,
    color: str | Sequence[str] = "step",
    size: float = FONT_SIZE,
) -> list[tuple[float, float, float, float]]:
    """Equal boxes left to right between x0 and x1, joined by arrows; returns their rectangles.

    >>> fig, ax = canvas(1.5)
    >>> len(row_of_boxes(ax, ["a", "b", "c"], y=0.4, h=0.7))
    3
    """
    n = len(texts)
    w = (x1 - x0 - gap * (n - 1)) / n
    colors = [color] * n if isinstance(color, str) else list(color)
    rects = []
    for i, (t, c) in enumerate(zip(texts, colors, strict=True)):
        rects.append(box(ax, x0 + i * (w + gap), y, w, h, t, c, size=size))
        if i:
            arrow(ax, (x0 + i * (w + gap) - gap, y + h / 2), (x0 + i * (w + gap), y + h / 2))
    return rects
