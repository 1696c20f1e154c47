"""Lessons are committed without outputs, except the cells nbval compares."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tools import notebooks as nbtool

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))




def test_there_are_lessons():
    assert NOTEBOOKS, "no notebooks found under notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    assert nbtool.dirty_cells(nb) == [], f"run: python tools/notebooks.py strip {path}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_compared_cells_have_expected_output_and_a_count(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and nbtool.is_compared(cell):
            assert cell.outputs, f"{path.name}: a compared cell has no expected output"
            assert cell.execution_count, f"{path.name}: a compared cell needs an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_lesson_shape(path):
    """Every lesson starts with goals, calls start_lesson, and ends with exercises."""
    nb = nbformat.read(path, as_version=4)
    text = [c.source for c in nb.cells]
    assert nb.cells[0].cell_type == "markdown" and "goal" in nb.cells[0].source.lower()
    assert any("start_lesson(" in t for t in text), "the mode line comes from ck.start_lesson()"
    assert any("recap" in t.lower() for t in text if t.startswith("#")), "missing a recap"
    assert any("exercise" in t.lower() for t in text if t.startswith("#")), "missing exercises"


def test_the_checker_catches_a_dirty_notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1 + 1", execution_count=3)]
    nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"})]
    assert nbtool.dirty_cells(nb) == [0]
    nb.cells[0].metadata["tags"] = ["nbval-check-output"]
    assert nbtool.dirty_cells(nb) == []
    stripped = nbtool.strip(nb, keep_compared=False)
    assert stripped.cells[0].outputs == [] and stripped.cells[0].execution_count is None
