"""The lesson diagrams: each is drawn by code, committed as drawn, and embedded where it exists."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from tools.diagrams import DPI, WIDTH
from tools.diagrams.__main__ import OUT_DIR, all_diagrams

REPO = Path(__file__).resolve().parents[1]
DIAGRAMS = all_diagrams()
LINK = re.compile(r"!\[[^\]]*\]\(((?!http)[^)]+\.png)\)")


def test_there_are_diagrams():
    assert "course_map.png" in DIAGRAMS


@pytest.mark.parametrize("name", sorted(DIAGRAMS))
def test_committed_png_is_what_the_code_draws(name, tmp_path):
    fig = DIAGRAMS[name]()
    try:
        assert fig.get_figwidth() <= WIDTH + 0.01, "wider than a notebook shows at full size"
        fig.savefig(tmp_path / name, dpi=DPI)
    finally:
        plt.close(fig)
    committed = OUT_DIR / name
    assert committed.exists(), f"run: python -m tools.diagrams (then commit {committed.name})"
    drawn = np.asarray(Image.open(tmp_path / name).convert("RGB"), dtype=np.float32)
    saved = np.asarray(Image.open(committed).convert("RGB"), dtype=np.float32)
    assert drawn.shape == saved.shape, f"{name} changed size: redraw with python -m tools.diagrams"
    # A changed number or label moves many pixels; font hinting differences move a few.
    assert np.abs(drawn - saved).mean() < 1.0, f"{name} is stale: python -m tools.diagrams"


def test_every_png_in_figures_is_drawn_by_a_diagram():
    assert {p.name for p in OUT_DIR.glob("*.png")} <= set(DIAGRAMS)


def test_every_embedded_figure_exists():
    pages = [*(REPO / "notebooks").glob("*.ipynb")]
    for page in pages:
        for link in LINK.findall(page.read_text(encoding="utf-8")):
            assert (page.parent / link).exists(), f"{page.name} links to missing {link}"
    for link in LINK.findall((REPO / "README.md").read_text(encoding="utf-8")):
        assert (REPO / link).exists(), f"README.md links to missing {link}"
