"""The lessons stay within the course's reading budget (tools/lesson_stats.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import lesson_stats

REPO = Path(__file__).resolve().parents[1]

LESSONS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_reads_within_the_budget(path):
    assert lesson_stats.lesson_stats(path).problems() == []


def test_the_counter_sees_what_it_should(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    long_cell = " ".join(["word"] * 200)
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 03 · Title\n\nA smoke run. `ignored code words here`"),
        nbformat.v4.new_markdown_cell(long_cell),
        nbformat.v4.new_code_cell("x = ck.fit(1)  # fmt: skip\nck.fit(2); ck.pick_device()"),
        nbformat.v4.new_markdown_cell("<details><summary>s</summary>" + long_cell + "</details>"),
        nbformat.v4.new_markdown_cell("## Going further\n\n" + long_cell + "\n![d](figures/a.png)"),
    ]
    path = tmp_path / "03_example.ipynb"
    nbformat.write(nb, path)
    stats = lesson_stats.lesson_stats(path)
    assert (stats.words, stats.longest_cell, stats.diagrams) == (205, 200, 1)
    assert (stats.smoke_mentions, stats.colab_link, stats.pragmas) == (1, False, 1)
    assert stats.ck_names == {"fit", "pick_device"}
    problems = " ".join(stats.problems())
    assert "cell of 200 words" in problems and "'smoke' 1x" in problems
    assert "Colab" in problems and "pragma" in problems


def test_the_reading_page_shows_the_current_numbers():
    stats = [lesson_stats.lesson_stats(p) for p in LESSONS]
    page = lesson_stats.READING_PAGE.read_text(encoding="utf-8")
    assert page == lesson_stats.reading_page(stats), (
        "run: python tools/lesson_stats.py --write docs/READING.md"
    )
