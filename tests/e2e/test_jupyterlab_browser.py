"""A lesson run the way a learner runs it: JupyterLab in Chromium, Run > Run All Cells.

nbval proves that every cell runs; this test proves what the learner SEES: no error
output, tqdm's progress bar drawn as a widget (not as text), plots drawn as images, and the
exercise checks rendered as rich text. After Run All the notebook is saved from the browser
and the saved file is read back: every code cell ran and none has an error output.

A second, generated notebook plants a right and a wrong answer to a lesson exercise (the
pass and fail messages must be rich text) and, last, a cell with a syntax error that the
error checks must report: it proves they can fail. Screenshots go to build/e2e/.
"""

from __future__ import annotations

import json
import re
import time
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
SAVE_SECONDS = 60
# The module's first test also starts JupyterLab and runs the whole lesson.
pytestmark = pytest.mark.timeout(KERNEL_READY_SECONDS + RUN_ALL_SECONDS + 300)

# What the test looks for, by JupyterLab 4 / ipywidgets 8 class names.
CODE_CELL = ".jp-Notebook .jp-CodeCell"
OUTPUT = ".jp-OutputArea-output"
# JupyterLab 4 renders an error output as stderr text holding the traceback; its DOM does
# not tell it from other stderr text, so its lines are looked for.
STDERR_OUTPUT = f'{OUTPUT}[data-mime-type="application/vnd.jupyter.stderr"]'
ERROR_LINE = re.compile(
    r"^(Traceback \(most recent call last\)|\w*(Error|Exception)|KeyboardInterrupt|SystemExit)"
    r"\b",
    re.MULTILINE,
)
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

#: The generated notebook: a lesson's exercise answered right, then wrong, then a cell that
#: cannot even be parsed (a SyntaxError prints no "Traceback" line).
CHECKS_NOTEBOOK = "e2e_exercise_checks.ipynb"
EXERCISES = "from coursekit.exercises import lesson04 as ex"
RIGHT_ANSWER = """\
def epoch_accuracy(batches):
    return sum(correct for correct, _ in batches) / sum(size for _, size in batches)
"""
WRONG_ANSWER = """\
def epoch_accuracy(batches):  # divides by the number of batches, not of images
    return sum(correct for correct, _ in batches) / len(batches)
"""
CHECK = "ex.q1.check(epoch_accuracy)"
BROKEN_CELL = "print('this cell never runs'"


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


def write_checks_notebook(folder: Path, like: Path) -> Path:
    """The generated notebook, in the served throw-away folder, with ``like``'s kernel."""
    import nbformat

    notebook = nbformat.v4.new_notebook(metadata=nbformat.read(like, as_version=4).metadata)
    notebook.cells = [
        nbformat.v4.new_markdown_cell("Exercise checks as a learner sees them."),
        nbformat.v4.new_code_cell(EXERCISES),
        nbformat.v4.new_code_cell(f"{RIGHT_ANSWER}\n\n{CHECK}"),
        nbformat.v4.new_code_cell(f"{WRONG_ANSWER}\n\n{CHECK}"),
        nbformat.v4.new_code_cell(BROKEN_CELL),
    ]
    path = folder / CHECKS_NOTEBOOK
    nbformat.write(notebook, path)
    return path


def expected_feedback(answer: str) -> Any:
    """What coursekit's check says to ``answer``, computed here, outside the browser."""
    from coursekit.exercises import lesson04

    namespace: dict[str, Any] = {}
    exec(answer, namespace)
    return lesson04.q1.evaluate(namespace["epoch_accuracy"]).feedback


def css_color(feedback: Any) -> str:
    """The label color in the HTML coursekit emits for ``feedback``, as the browser reports it."""
    hex_color = re.search(r"color:#([0-9a-fA-F]{6})", feedback._repr_html_()).group(1)
    red, green, blue = (int(hex_color[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgb({red}, {green}, {blue})"


def texts(page: Any, selector: str) -> list[str]:
    return page.locator(selector).all_inner_texts()


def error_outputs_in_page(page: Any) -> list[str]:
    return [text for text in texts(page, STDERR_OUTPUT) if ERROR_LINE.search(text)]


def screenshot(page: Any, locator: Any, path: Path) -> Path:
    """A screenshot of the page with ``locator`` scrolled into view."""
    path.parent.mkdir(parents=True, exist_ok=True)
    locator.scroll_into_view_if_needed()
    page.screenshot(path=path)
    return path


def run_all_cells(page: Any, lab: Any, notebook: Path) -> None:
    """Open ``notebook`` (served by ``lab``), wait for its kernel, and Run > Run All Cells."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(lab.url(f"lab/tree/{notebook.name}"), wait_until="domcontentloaded")
    page.wait_for_function(
        KERNEL_READY, arg=len(code_cells(notebook)), timeout=KERNEL_READY_SECONDS * 1000
    )
    page.keyboard.press("Control+b")  # hide the file browser: more room for the lesson
    click_menu(page, "Run", "Run All Cells")
    try:
        page.wait_for_function(RUN_ALL_FINISHED, timeout=RUN_ALL_SECONDS * 1000, polling=1000)
    except PlaywrightTimeout:
        stuck = screenshot(
            page, page.locator(CODE_CELL).last, SCREENSHOTS / f"{notebook.stem}-timeout.png"
        )
        prompts = " ".join(texts(page, f"{CODE_CELL} .jp-InputPrompt"))
        pytest.fail(f"Run All did not finish in {RUN_ALL_SECONDS}s: {prompts} (see {stuck})")


def click_menu(page: Any, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).click()


def save_from_the_browser(page: Any, notebook: Path) -> dict:
    """File > Save Notebook, then the saved file as JupyterLab wrote it."""
    before = notebook.stat().st_mtime_ns
    click_menu(page, "File", "Save Notebook")
    deadline = time.monotonic() + SAVE_SECONDS
    while notebook.stat().st_mtime_ns == before:
        assert time.monotonic() < deadline, f"{notebook} was not saved within {SAVE_SECONDS}s"
        time.sleep(0.2)
    return json.loads(notebook.read_text(encoding="utf-8"))


def problems_in_saved(notebook: dict) -> list[str]:
    """Code cells that did not run, and error outputs, in a saved notebook."""
    problems = []
    cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    for number, cell in enumerate(cells, start=1):
        first_line = "".join(cell["source"]).partition("\n")[0]
        if cell.get("execution_count") is None:
            problems.append(f"code cell {number} did not run: {first_line}")
        problems += [
            f"code cell {number} failed with {output['ename']}: {output['evalue']}"
            for output in cell["outputs"]
            if output["output_type"] == "error"
        ]
    return problems


@pytest.fixture(scope="module")
def lesson() -> Path:
    return training_lesson()


@pytest.fixture(scope="module")
def ran_lesson(jupyter_lab: Any, browser_context: Any, lesson: Path) -> Iterator[Any]:
    """The page of the lesson, opened in JupyterLab and run with Run > Run All Cells."""
    page = browser_context.new_page()
    try:
        run_all_cells(page, jupyter_lab, jupyter_lab.notebook_dir / lesson.name)
        yield page
    finally:
        page.close()


@pytest.fixture(scope="module")
def ran_checks(jupyter_lab: Any, browser_context: Any, lesson: Path) -> Iterator[Any]:
    """The page of the generated exercise-checks notebook, after Run All."""
    notebook = write_checks_notebook(jupyter_lab.notebook_dir, lesson)
    page = browser_context.new_page()
    try:
        run_all_cells(page, jupyter_lab, notebook)
        yield page
    finally:
        page.close()


def test_the_training_lesson_runs_without_errors_and_draws_widgets_and_plots(
    ran_lesson: Any, lesson: Path, jupyter_lab: Any
) -> None:
    page = ran_lesson
    errors = error_outputs_in_page(page)
    assert errors == [], "error output in the page:\n" + "\n---\n".join(errors)
    prompts = texts(page, f"{CODE_CELL} .jp-InputPrompt")
    assert all(re.search(r"\[\d+\]", prompt) for prompt in prompts), prompts
    saved = save_from_the_browser(page, jupyter_lab.notebook_dir / lesson.name)
    assert problems_in_saved(saved) == []

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


@pytest.mark.parametrize(
    ("answer", "outcome"), [(RIGHT_ANSWER, "pass"), (WRONG_ANSWER, "fail")], ids=["right", "wrong"]
)
def test_pass_and_fail_messages_render_as_rich_text(
    ran_checks: Any, answer: str, outcome: str
) -> None:
    page = ran_checks
    feedback = expected_feedback(answer)
    assert feedback.kind == outcome, f"the planted answer should {outcome}: {feedback}"
    words = feedback.text.replace("`", "")  # `code` is shown as a code element
    shown = page.locator(RICH_TEXT, has_text=words)
    assert shown.count() == 1, f"{feedback} is not shown as rich text"
    label = shown.locator("span", has_text=f"{feedback.label}:")
    assert label.evaluate("span => getComputedStyle(span).fontWeight") in ("700", "bold")
    assert label.evaluate("span => getComputedStyle(span).color") == css_color(feedback)
    assert not any(words in text for text in texts(page, PLAIN_TEXT)), "shown as plain text"


def test_error_checks_catch_a_syntax_error(ran_checks: Any, jupyter_lab: Any) -> None:
    page = ran_checks
    in_page = error_outputs_in_page(page)
    assert len(in_page) == 1 and "SyntaxError" in in_page[0], in_page
    shot = SCREENSHOTS / f"{Path(CHECKS_NOTEBOOK).stem}.png"
    screenshot(page, page.locator(STDERR_OUTPUT).last, shot)
    assert "Traceback" not in in_page[0]  # why a "Traceback" search alone is not enough
    saved = save_from_the_browser(page, jupyter_lab.notebook_dir / CHECKS_NOTEBOOK)
    (problem,) = problems_in_saved(saved)
    assert problem.startswith("code cell 4 failed with SyntaxError"), problem
