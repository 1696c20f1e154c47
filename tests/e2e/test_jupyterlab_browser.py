"""A lesson run the way a learner runs it: JupyterLab in Chromium, Run > Run All Cells.

nbval proves that every cell runs; this test proves what the learner SEES: no error
output, tqdm's progress bar drawn as a widget (not as text), plots drawn as images, and the
exercise checks rendered as rich text. Screenshots go to build/e2e/<lesson>*.png.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "build" / "e2e"
#: Lessons that train with ck.fit, in the order they are preferred.
PREFERRED = ("04_training_loop.ipynb", "05_transfer_learning.ipynb")
KERNEL_READY_SECONDS = 180
RUN_ALL_SECONDS = 900
# The module's first test also starts JupyterLab and runs the whole lesson.
pytestmark = pytest.mark.timeout(KERNEL_READY_SECONDS + RUN_ALL_SECONDS + 300)

# What the test looks for, by JupyterLab 4 / ipywidgets 8 class names.
CODE_CELL = ".jp-Notebook .jp-CodeCell"
OUTPUT = ".jp-OutputArea-output"
# JupyterLab 4 renders an error output as stderr text holding the traceback.
ERROR_OUTPUT = f'{OUTPUT}[data-mime-type="application/vnd.jupyter.error"]'
STDERR_OUTPUT = f'{OUTPUT}[data-mime-type="application/vnd.jupyter.stderr"]'
PLAIN_TEXT = f"{OUTPUT}.jp-RenderedText"
RICH_TEXT = f"{OUTPUT}.jp-RenderedHTMLCommon"  # text/html and text/markdown outputs
PLOT = f'{OUTPUT}[data-mime-type="image/png"] img'
TQDM_WIDGET = f"{OUTPUT} .widget-hbox:has(.widget-hprogress)"  # label, bar, counters

#: The notebook is loaded (all its code cells are in the page) and its kernel is idle.
KERNEL_READY = """
(codeCells) => {
  const kernel = document.querySelector('.jp-KernelName')?.textContent ?? '';
  const status = document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status;
  const loaded = document.querySelectorAll('.jp-Notebook .jp-CodeCell').length === codeCells;
  return loaded && kernel !== '' && kernel !== 'No Kernel' && status === 'idle';
}
"""
#: Run All is over: it started (a cell has an execution count), no cell is running or
#: queued ("[*]": Run All queues every cell at once), and the kernel is idle. A cell that
#: fails stops Run All, so later cells may keep an empty "[ ]".
RUN_ALL_FINISHED = """
() => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
    .map(prompt => prompt.textContent);
  const status = document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status;
  const started = prompts.some(prompt => /\\[\\d+\\]/.test(prompt));
  return status === 'idle' && started && !prompts.some(prompt => prompt.includes('*'));
}
"""


def code_cells(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]


def training_lesson() -> Path:
    """The lesson to open: 04 (else 05), else the first lesson that trains with ck.fit."""
    lessons = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    training = [path for path in lessons if "ck.fit(" in "\n".join(code_cells(path))]
    preferred = [path for name in PREFERRED for path in training if path.name == name]
    assert training, "no lesson in notebooks/ calls ck.fit(...): nothing to run in the browser"
    return (preferred or training)[0]


def texts(page: Any, selector: str) -> list[str]:
    return page.locator(selector).all_inner_texts()


def screenshot(page: Any, locator: Any, path: Path) -> Path:
    """A screenshot of the page with ``locator`` scrolled into view."""
    path.parent.mkdir(parents=True, exist_ok=True)
    locator.scroll_into_view_if_needed()
    page.screenshot(path=path)
    return path


@pytest.fixture(scope="module")
def lesson() -> Path:
    return training_lesson()


@pytest.fixture(scope="module")
def ran_lesson(jupyter_lab: Any, browser_context: Any, lesson: Path) -> Iterator[Any]:
    """The page of the lesson, opened in JupyterLab and run with Run > Run All Cells."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = browser_context.new_page()
    try:
        page.goto(jupyter_lab.url(f"lab/tree/{lesson.name}"), wait_until="domcontentloaded")
        page.wait_for_function(
            KERNEL_READY, arg=len(code_cells(lesson)), timeout=KERNEL_READY_SECONDS * 1000
        )
        page.keyboard.press("Control+b")  # hide the file browser: more room for the lesson
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:
            page.wait_for_function(RUN_ALL_FINISHED, timeout=RUN_ALL_SECONDS * 1000, polling=1000)
        except PlaywrightTimeout:
            stuck = screenshot(page, page.locator(CODE_CELL).last, SCREENSHOTS / "timeout.png")
            prompts = " ".join(texts(page, f"{CODE_CELL} .jp-InputPrompt"))
            pytest.fail(f"Run All did not finish in {RUN_ALL_SECONDS}s: {prompts} (see {stuck})")
        yield page
    finally:
        page.close()


def test_the_training_lesson_runs_without_errors_and_draws_widgets_and_plots(
    ran_lesson: Any, lesson: Path
) -> None:
    page = ran_lesson
    errors = texts(page, ERROR_OUTPUT)
    assert errors == [], "error output in the page:\n" + "\n---\n".join(errors)
    tracebacks = [text for text in texts(page, STDERR_OUTPUT) if "Traceback" in text]
    assert tracebacks == [], "a traceback on stderr:\n" + "\n---\n".join(tracebacks)
    prompts = texts(page, f"{CODE_CELL} .jp-InputPrompt")
    assert all(re.search(r"\[\d+\]", prompt) for prompt in prompts), prompts

    epochs_bar = page.locator(TQDM_WIDGET, has_text="epochs").first
    assert epochs_bar.count() == 1, "fit's tqdm progress bar was not drawn as a widget"
    assert "100%" in epochs_bar.inner_text()
    assert epochs_bar.locator(".progress-bar-success").count() == 1  # tqdm's finished bar
    assert not any("epochs:" in text for text in texts(page, PLAIN_TEXT)), "a text progress bar"

    plots = page.locator(PLOT)
    assert plots.count() >= 1, "no plot was drawn"
    assert plots.first.evaluate("img => img.naturalWidth") > 100

    shot = screenshot(page, epochs_bar, SCREENSHOTS / f"{lesson.stem}.png")
    assert shot.stat().st_size > 10_000


def test_exercise_checks_render_as_rich_text(ran_lesson: Any, lesson: Path) -> None:
    page = ran_lesson
    checks = page.locator(RICH_TEXT, has_text="Not attempted yet")
    assert checks.count() >= 1, "no exercise check() output rendered as rich text"
    label = checks.first.locator("span", has_text="Not attempted yet")
    assert label.evaluate("span => getComputedStyle(span).fontWeight") in ("700", "bold")
    assert checks.first.locator("code").count() >= 1  # `____` shown as code, not backticks
    assert not any("Not attempted yet" in text for text in texts(page, PLAIN_TEXT)), (
        "a check() result was shown as plain text"
    )
    screenshot(page, checks.first, SCREENSHOTS / f"{lesson.stem}-exercises.png")
