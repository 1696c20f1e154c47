"""Run the lessons in full mode and publish what they reached in ``docs/RESULTS.md``.

Each lesson notebook is executed once with nbclient, ``COURSE_MODE=full``, in a kernel that
inherits this process's environment (``TORCH_HOME``, ``COURSE_DATA_ROOT``, ``COURSE_ARCH``,
every other ``COURSE_*``). Per lesson: wall time (kernel start to last cell), peak memory of
the kernel's process tree (DataLoader workers included) and the headline results: the text
output of the code cells tagged ``result``, or, in a lesson without such a cell, the output
lines that mention accuracy. Rows of lessons not run this time are kept, so a few lessons
can be re-run; the total is printed and written.

    COURSE_DATA_ROOT=/data TORCH_HOME=/weights COURSE_ARCH=mobilenet_v2 \\
        python -m bench.full_mode                  # every notebooks/NN_*.ipynb
    python -m bench.full_mode 05 06                # only lessons 05 and 06 (rows updated)
    python -m bench.full_mode path/to/x.ipynb --output /tmp/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
import psutil
import torch
from nbclient.exceptions import CellExecutionError, CellTimeoutError

from bench.common import REPO_ROOT, cpu_model, lesson_client

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
RESULTS_MD = REPO_ROOT / "docs" / "RESULTS.md"
RESULT_TAG = "result"
CELL_TIMEOUT = 3600  # seconds: a full-mode training cell can take many minutes on a CPU
#: The rows' data, kept in RESULTS.md itself so that a partial run can update some rows.
DATA_MARKER = "full-mode-data"
_ACCURACY = re.compile(r"accura", re.IGNORECASE)
#: Lines that are progress or advice, not results: a per-epoch log line, a warning.
_NOT_A_RESULT = re.compile(r"^(epoch \d+/\d+\b|WARNING\b)")


@dataclass
class LessonResult:
    notebook: str
    seconds: float
    peak_mib: float
    headlines: list[str]
    status: str
    date: str
    #: ``COURSE_DATASET`` of the run: "" for the lesson's own data. A run on other data
    #: (lesson 09 on a folder of your own photos) gets a row of its own, left out of the total.
    dataset: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.notebook, self.dataset


# --------------------------------------------------------------------------- running


class PeakMemory:
    """Samples the memory of this process's children (the kernel and its workers).

    Proportional set size where the OS reports it (Linux): a page shared by N processes
    counts 1/N in each. A forked DataLoader worker starts sharing all of its parent's
    memory, so a sum of resident sizes would count the kernel once more per worker.

    >>> with PeakMemory() as peak: pass
    >>> peak.mib >= 0
    True
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _tree_bytes(self) -> int:
        total = 0
        for child in psutil.Process().children(recursive=True):
            try:
                total += _proportional_bytes(child)
            except psutil.Error:  # a worker that ended between listing and reading
                continue
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.mib = max(self.mib, self._tree_bytes() / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _proportional_bytes(process: psutil.Process) -> int:
    """PSS of ``process``, or its resident size where the OS has no PSS."""
    full = process.memory_full_info()
    return getattr(full, "pss", full.rss)


def kernel_environment() -> dict[str, str]:
    """This process's environment (TORCH_HOME, COURSE_*...) with the run mode set to full.

    >>> kernel_environment()["COURSE_MODE"]
    'full'
    """
    return {**os.environ, "COURSE_MODE": "full"}


#: Progress bars in JupyterLab are widgets; their text stand-in is no result.
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _cell_text(cell: nbformat.NotebookNode) -> list[str]:
    """The text a code cell printed or returned, line by line (no images, no widgets)."""
    lines = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            lines += output.get("text", "").splitlines()
        elif output.get("output_type") in ("execute_result", "display_data"):
            data = output.get("data", {})
            text = data.get("text/plain", "")
            if text and "image/png" not in data and WIDGET_MIME not in data:
                lines += text.splitlines()
    # tqdm bars redrawn with "\r" leave their last state only.
    return [line.rsplit("\r", 1)[-1].strip() for line in lines if line.strip()]



def headlines(nb: nbformat.NotebookNode) -> list[str]:
    """Output of the cells tagged ``result``; without any, the lines that mention accuracy.

    Per-epoch log lines and warnings are left out: the table shows what a lesson reached.
    """
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    tagged = [cell for cell in code if RESULT_TAG in cell.get("metadata", {}).get("tags", [])]
    if tagged:
        lines = [line for cell in tagged for line in _cell_text(cell)]
    else:
        lines = [line for cell in code for line in _cell_text(cell) if _ACCURACY.search(line)]
    return [line for line in lines if not _NOT_A_RESULT.match(line)]


def slowest_cells(nb: nbformat.NotebookNode, count: int = 3) -> list[tuple[float, str]]:
    """(seconds, first source line) of the ``count`` slowest code cells, from nbclient's timing."""
    timed = []
    for cell in nb.cells:
        execution = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and {"iopub.execute_input", "shell.execute_reply"} <= set(
            execution
        ):
            start, end = (
                datetime.datetime.fromisoformat(execution[key].replace("Z", "+00:00"))
                for key in ("iopub.execute_input", "shell.execute_reply")
            )
            first_line = next((line for line in cell.source.splitlines() if line.strip()), "")
            timed.append(((end - start).total_seconds(), first_line[:70]))
    return sorted(timed, reverse=True)[:count]


def run_lesson(path: Path, timeout: int = CELL_TIMEOUT) -> LessonResult:
    """Execute ``path`` once in full mode (in its own folder); time, peak memory, headlines."""
    nb, client = lesson_client(path, timeout)
    status = "ok"
    started = time.perf_counter()
    client.record_timing = True  # per-cell times, for the slowest cells printed by main()
    with PeakMemory() as peak:
        try:
            client.execute(env=kernel_environment())
        except (CellExecutionError, CellTimeoutError) as failure:
            lines = [line for line in str(failure).splitlines() if line.strip()]
            status = "FAILED: " + (lines[-1][:160] if lines else type(failure).__name__)
    for seconds, first_line in slowest_cells(nb):
        print(f"    {seconds:6.1f} s  {first_line}", flush=True)
    return LessonResult(
        notebook=path.name,
        seconds=time.perf_counter() - started,
        peak_mib=peak.mib,
        headlines=headlines(nb),
        status=status,
        date=datetime.date.today().isoformat(),
        dataset=os.environ.get("COURSE_DATASET", ""),
    )


# --------------------------------------------------------------------------- RESULTS.md


def machine() -> dict[str, str]:
    """What the numbers depend on: CPU, cores, RAM, versions, arch, data, date."""
    data_root = os.environ.get("COURSE_DATA_ROOT") or str(REPO_ROOT / "data")
    root = Path(data_root)
    datasets = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return {
        "CPU": f"{cpu_model()}, {os.cpu_count()} logical cores",
        "RAM": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "python / torch": f"{platform.python_version()} / {torch.__version__}",
        "arch (COURSE_ARCH)": os.environ.get("COURSE_ARCH", "resnet18 (default)"),
        "datasets": f"{', '.join(datasets) or 'none'} in {data_root}",
        "date": datetime.datetime.now().isoformat(timespec="minutes"),
    }


def _stored(path: Path) -> tuple[dict[str, str], dict[tuple[str, str], LessonResult]]:
    """The machine and the rows of an existing RESULTS.md (empty when there is none)."""
    if not path.is_file():
        return {}, {}
    found = re.search(rf"<!-- {DATA_MARKER}\n(.*?)\n-->", path.read_text(encoding="utf-8"), re.S)
    if not found:
        return {}, {}
    data = json.loads(found.group(1))
    rows = [LessonResult(**row) for row in data["lessons"]]
    return data["machine"], {row.key: row for row in rows}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def _course_total(rows: Sequence[LessonResult]) -> float:
    """Seconds of the lessons run on their own data: the course as a learner first runs it."""
    return sum(row.seconds for row in rows if not row.dataset)


def render(about: dict[str, str], rows: Sequence[LessonResult]) -> str:
    total = _course_total(rows)
    lines = [
        "# What to expect in full mode",
        "",
        "Every lesson run once in full mode (`python -m bench.full_mode`), on:",
        "",
        *(f"* {key}: {value}" for key, value in about.items()),
        "",
        "| lesson | wall time | peak memory | headline results | run on |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        results = "<br>".join(_cell(line) for line in row.headlines) or "-"
        if row.status != "ok":
            results = f"**{_cell(row.status)}**<br>{results}"
        lesson = row.notebook + (f"<br>on `COURSE_DATASET={row.dataset}`" if row.dataset else "")
        lines.append(
            f"| {_cell(lesson)} | {_minutes(row.seconds)} | {row.peak_mib:,.0f} MiB "
            f"| {results} | {row.date} |"
        )
    lines += [
        f"| **all lessons, on their own data** | **{_minutes(total)}** | | | |",
        "",
        "Wall time runs from kernel start to the last cell; peak memory is the memory of the "
        "kernel and its loader workers (proportional set size: memory a forked worker shares "
        "with the kernel counts once), sampled twice a second. A row "
        "\"on `COURSE_DATASET=...`\" is a lesson run on other photos than its own; it is not "
        "part of the total.",
        "",
        f"<!-- {DATA_MARKER}",
        json.dumps({"machine": about, "lessons": [asdict(row) for row in rows]}, indent=1),
        "-->",
        "",
    ]
    return "\n".join(lines)


def update_results(path: Path, new: Sequence[LessonResult]) -> float:
    """Write ``path`` with the ``new`` rows replacing theirs; returns the total seconds."""
    _, rows = _stored(path)
    rows.update({row.key: row for row in new})
    ordered = [rows[key] for key in sorted(rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(machine(), ordered), encoding="utf-8")
    return _course_total(ordered)


# --------------------------------------------------------------------------- command line


def lessons(selection: Sequence[str]) -> list[Path]:
    """Notebook paths: every ``notebooks/NN_*.ipynb``, or those named (``05`` or a path).

    >>> [p.name[:2] for p in lessons(["05"])]  # doctest: +SKIP
    ['05']
    """
    if not selection:
        return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    found = []
    for item in selection:
        matches = (
            [Path(item)]
            if item.endswith(".ipynb")
            else sorted(NOTEBOOKS_DIR.glob(f"{item}_*.ipynb"))
        )
        if not matches or not matches[0].is_file():
            raise SystemExit(f"No lesson notebook {item!r}: give a number such as 05 or a path.")
        found += matches
    return found


@contextmanager
def _runs_dir() -> Iterator[None]:
    """Checkpoints into one scratch folder for the whole run (lesson 06 reuses 05's head),
    unless COURSE_RUNS_DIR says where: lessons reuse the models they find there."""
    if "COURSE_RUNS_DIR" in os.environ:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="full-mode-runs-") as tmp:
        os.environ["COURSE_RUNS_DIR"] = tmp
        try:
            yield
        finally:
            del os.environ["COURSE_RUNS_DIR"]


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers (05) or notebook paths")
    parser.add_argument("--output", type=Path, default=RESULTS_MD, help="the file to update")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT, help="seconds per cell")
    args = parser.parse_args(argv)
    results = []
    with _runs_dir():
        for path in lessons(args.lessons):
            print(f"{path.name}: running in full mode ...", flush=True)
            results.append(run_lesson(path, args.timeout))
            done = results[-1]
            print(
                f"{path.name}: {done.status}, {_minutes(done.seconds)}, "
                f"peak {done.peak_mib:,.0f} MiB",
                flush=True,
            )
    total = update_results(args.output, results)
    print(f"Wrote {args.output}. Total of all lessons in it: {_minutes(total)}.")
    return total


if __name__ == "__main__":
    main()
