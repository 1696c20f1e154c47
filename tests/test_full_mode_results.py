"""bench.full_mode: runs notebooks in full mode and keeps docs/RESULTS.md's rows up to date.

Tested on tiny notebooks written into a temporary folder, never on the lessons.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from bench import full_mode


def write_notebook(path: Path, cells: list) -> Path:
    nbformat.write(new_notebook(cells=cells), path)
    return path


def result_cell(source: str) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["result"]
    return cell


def printed(text: str) -> nbformat.NotebookNode:
    """The output of a cell that printed ``text``."""
    return nbformat.v4.new_output("stream", name="stdout", text=text)


@pytest.fixture
def tiny_lessons(tmp_path: Path) -> tuple[Path, Path]:
    tagged = write_notebook(
        tmp_path / "01_tagged.ipynb",
        [
            new_markdown_cell("# A tiny lesson"),
            new_code_cell("import os\nprint('valid accuracy 0.10 (not a headline)')"),
            result_cell(
                "print('mode', os.environ['COURSE_MODE'])\n"
                "print('weights from', os.environ['TORCH_HOME'])\n"
                "print('arch', os.environ['COURSE_ARCH'])\n"
                "'final | valid accuracy 0.75'"
            ),
        ],
    )
    untagged = write_notebook(
        tmp_path / "02_untagged.ipynb",
        [new_code_cell("print('loss 1.2')\nprint('Valid accuracy: 0.50')\nprint('done')")],
    )
    return tagged, untagged


def test_lessons_run_in_full_mode_with_the_callers_variables(
    tiny_lessons: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    tagged, untagged = tiny_lessons
    monkeypatch.setenv("COURSE_MODE", "smoke")  # the script runs lessons in full mode anyway
    monkeypatch.setenv("TORCH_HOME", "/weights/here")
    monkeypatch.setenv("COURSE_ARCH", "mobilenet_v2")
    results_md = tmp_path / "RESULTS.md"

    full_mode.main([str(tagged), str(untagged), "--output", str(results_md)])

    text = results_md.read_text(encoding="utf-8")
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()}
    # Tagged cells give the headlines, pipes escaped for the table; other cells are left out.
    assert (
        "mode full<br>weights from /weights/here<br>arch mobilenet_v2<br>'final \\| valid"
        in (rows["01_tagged.ipynb"])
    )
    assert "0.10" not in rows["01_tagged.ipynb"]
    # Without a tagged cell, the lines that mention accuracy.
    assert "| Valid accuracy: 0.50 |" in rows["02_untagged.ipynb"]
    for row in (rows["01_tagged.ipynb"], rows["02_untagged.ipynb"]):
        seconds, peak = row.split(" | ")[1:3]
        assert seconds.endswith(" s") and peak.endswith(" MiB") and peak != "0 MiB"
    assert "arch (COURSE_ARCH): mobilenet_v2" in text and "logical cores" in text
    assert "RAM:" in text and "torch" in text
    assert "Total of all lessons in it" in capsys.readouterr().out


def test_a_partial_run_updates_its_rows_and_keeps_the_others(
    tiny_lessons: tuple[Path, Path], tmp_path: Path
):
    tagged, untagged = tiny_lessons
    results_md = tmp_path / "RESULTS.md"
    earlier = full_mode.LessonResult("01_tagged.ipynb", 61.0, 100.0, ["old"], "ok", "2026-01-01")
    kept = full_mode.LessonResult("02_untagged.ipynb", 125.0, 200.0, ["kept"], "ok", "2026-01-01")
    full_mode.update_results(results_md, [earlier, kept])
    write_notebook(untagged, [result_cell("print('new result')")])

    total = full_mode.main([str(untagged), "--output", str(results_md)])

    text = results_md.read_text(encoding="utf-8")
    assert "| 01_tagged.ipynb | 1 min 01 s | 100 MiB | old | 2026-01-01 |" in text
    assert "new result" in text and "kept" not in text
    assert total == pytest.approx(
        61.0 + full_mode._stored(results_md)[1][("02_untagged.ipynb", "")].seconds
    )
    assert f"**{full_mode._minutes(total)}**" in text


def test_a_failing_lesson_is_reported_with_its_error(tmp_path: Path):
    broken = write_notebook(tmp_path / "03_broken.ipynb", [new_code_cell("1 / 0")])

    result = full_mode.run_lesson(broken, timeout=60)

    assert result.status.startswith("FAILED") and "ZeroDivisionError" in result.status


def test_lesson_numbers_select_the_course_notebooks():
    assert [path.name[:3] for path in full_mode.lessons(["05"])] == ["05_"]
    assert all(path.name[:2].isdigit() for path in full_mode.lessons([]))
    with pytest.raises(SystemExit, match="'99'"):
        full_mode.lessons(["99"])


def test_progress_bar_widgets_are_not_headline_results():
    cell = result_cell("fit()")
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={
                "text/plain": "epochs:   0%|          | 0/10",
                full_mode.WIDGET_MIME: {"model_id": "x"},
            },
        ),
        printed("best valid accuracy 69.9%\n"),
    ]
    notebook = new_notebook(cells=[cell])
    assert full_mode.headlines(notebook) == ["best valid accuracy 69.9%"]


def test_epoch_log_lines_and_warnings_are_not_headline_results():
    tagged = result_cell("fit()")
    tagged.outputs = [
        printed(
            "epoch 1/10  train loss 1.285 acc 49.0% | valid loss 5.460 acc 64.7%\n"
            "best valid accuracy 69.9% at epoch 6\n"
        )
    ]
    untagged = new_code_cell("check()")
    untagged.outputs = [
        printed(
            "WARNING: class 10 has no validation images, so its accuracy is never measured\n"
            "valid accuracy 0.50\n"
        )
    ]
    assert full_mode.headlines(new_notebook(cells=[tagged])) == [
        "best valid accuracy 69.9% at epoch 6"
    ]
    assert full_mode.headlines(new_notebook(cells=[untagged])) == ["valid accuracy 0.50"]


def test_the_slowest_cells_come_from_the_recorded_cell_times():
    fast, slow = new_code_cell("x = 1"), new_code_cell("\n# a comment\ntrain()")
    for cell, end in ((fast, "00:00:01.5"), (slow, "00:01:40")):
        cell.metadata["execution"] = {
            "iopub.execute_input": "2026-12-04T00:00:00.000000Z",
            "shell.execute_reply": f"2026-12-04T{end}Z",
        }
    untimed = new_code_cell("never run")
    notebook = new_notebook(cells=[fast, new_markdown_cell("text"), untimed, slow])
    assert full_mode.slowest_cells(notebook, count=2) == [(100.0, "# a comment"), (1.5, "x = 1")]


def test_a_run_on_other_data_gets_its_own_row_outside_the_total(
    tiny_lessons: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    tagged, _ = tiny_lessons
    results_md = tmp_path / "RESULTS.md"
    own = full_mode.LessonResult("01_tagged.ipynb", 61.0, 100.0, ["own data"], "ok", "2026-01-01")
    full_mode.update_results(results_md, [own])
    monkeypatch.setenv("COURSE_DATASET", "/photos/birds")

    total = full_mode.main([str(tagged), "--output", str(results_md)])

    rows = full_mode._stored(results_md)[1]
    assert set(rows) == {("01_tagged.ipynb", ""), ("01_tagged.ipynb", "/photos/birds")}
    assert rows[("01_tagged.ipynb", "")].headlines == ["own data"]
    assert total == 61.0  # the course total counts the lesson on its own data only
    assert "01_tagged.ipynb<br>on `COURSE_DATASET=/photos/birds`" in results_md.read_text()


def test_peak_memory_counts_what_forked_workers_share_with_their_parent_once():
    import multiprocessing

    import psutil

    shared = bytearray(b"\x01" * (300 * 2**20))  # touched, so resident before the fork
    fork = multiprocessing.get_context("fork")
    ready = fork.Event()
    workers = [fork.Process(target=ready.wait, args=(30,)) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        processes = [psutil.Process(worker.pid) for worker in workers]
        counted = sum(full_mode._proportional_bytes(process) for process in processes)
        resident = sum(process.memory_info().rss for process in processes)
    finally:
        ready.set()
        for worker in workers:
            worker.join()
    assert len(shared) == 300 * 2**20
    if hasattr(psutil.Process().memory_full_info(), "pss"):
        # Resident sizes count the 300 MiB once per worker (600); shares count 2/3 of it.
        assert resident - counted >= 300 * 2**20
    else:  # an OS without proportional sizes: resident sizes it is
        assert counted == pytest.approx(resident, rel=0.05)
