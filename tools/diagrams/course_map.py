"""The README's one-picture map of the course, drawn from the lessons' own titles."""

from __future__ import annotations

import json
import textwrap
from itertools import pairwise
from pathlib import Path

import matplotlib.pyplot as plt

from tools.diagrams import arrow, box, canvas, label

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

#: Which part of the pipeline each lesson belongs to (colour and legend).
STAGES = {
    "data": ("Data", ("00", "01", "02")),
    "layer": ("Networks and training", ("03", "04")),
    "learned": ("Transfer learning", ("05", "06")),
    "frozen": ("Using the model", ("07", "08", "09")),
    "warn": ("Beyond one machine", ("10", "11")),
}
PER_ROW = 5
#: Legend entries per row: four or five long names on one line would overlap.
LEGEND_PER_ROW = 3
LEGEND_ROW = 0.45


def lesson_titles() -> list[tuple[str, str]]:
    """(number, title) of every lesson, read from each notebook's first heading."""
    found = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        heading = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])
        title = heading.splitlines()[0].lstrip("# ").split("·", 1)[-1].strip()
        found.append((path.name[:2], title.split(":")[0]))
    return found


def stage_of(number: str) -> str:
    return next(color for color, (_, lessons) in STAGES.items() if number in lessons)


def draw_course_map() -> plt.Figure:
    lessons = lesson_titles()
    rows = (len(lessons) + PER_ROW - 1) // PER_ROW
    box_w, box_h, gap_x, gap_y = 1.5, 1.05, 0.3, 0.45
    shown = [c for c in STAGES if any(stage_of(n) == c for n, _ in lessons)]
    legend_rows = (len(shown) + LEGEND_PER_ROW - 1) // LEGEND_PER_ROW
    height = 0.8 + (legend_rows - 1) * LEGEND_ROW + rows * (box_h + gap_y)
    fig, ax = canvas(height)
    centres = []
    for i, (number, title) in enumerate(lessons):
        row, col = divmod(i, PER_ROW)
        if row % 2:  # snake: odd rows run right to left, so each arrow is short
            col = PER_ROW - 1 - col
        x = 0.25 + col * (box_w + gap_x)
        y = height - 0.25 - (row + 1) * (box_h + gap_y) + gap_y
        text = f"{number}\n" + "\n".join(textwrap.wrap(title, 16))
        box(ax, x, y, box_w, box_h, text, stage_of(number), size=10)
        centres.append((x, y))
    for (x0, y0), (x1, y1) in pairwise(centres):
        if y0 == y1:
            left_to_right = x1 > x0
            start = (x0 + box_w, y0 + box_h / 2) if left_to_right else (x0, y0 + box_h / 2)
            end = (x1, y1 + box_h / 2) if left_to_right else (x1 + box_w, y1 + box_h / 2)
            arrow(ax, start, end)
        else:
            arrow(ax, (x0 + box_w / 2, y0), (x1 + box_w / 2, y1 + box_h))
    slot = 9.0 / min(len(shown), LEGEND_PER_ROW)
    for i, color in enumerate(shown):
        row, col = divmod(i, LEGEND_PER_ROW)
        x, y = 0.25 + col * slot, 0.22 + (legend_rows - 1 - row) * LEGEND_ROW
        box(ax, x, y, 0.3, 0.3, color=color)
        label(ax, x + 0.4, y + 0.15, STAGES[color][0], size=10, ha="left")
    return fig


DIAGRAMS = {"course_map.png": draw_course_map}
