"""Benchmark 4: wall time of every lesson notebook in smoke mode, and of ``make test``.

Each ``notebooks/*.ipynb`` is executed with nbclient the way ``make test`` runs it
(``COURSE_MODE=smoke``, ``COURSE_STRICT_WARNINGS=1``, checkpoints and CSVs into a temporary
``COURSE_RUNS_DIR``), once, and timed from kernel start to the last cell; the slowest cell is
named so that a slow lesson points at its own culprit. ``--make-test`` also times the whole
``make test`` (minutes). A failing notebook is reported as failed, with its time so far.

    python -m bench.notebook_times                 # every notebook
    python -m bench.notebook_times --make-test     # ... and make test
    python -m bench.notebook_times --quick         # the first notebook only, nothing written
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient.exceptions import CellExecutionError, CellTimeoutError

from bench.common import (
    BENCH_DIR,
    REPO_ROOT,
    base_parser,
    collect_environment,
    lesson_client,
    report,
    section_intro,
)

NAME = "notebook_times"
TITLE = "4. Notebooks in smoke mode, and make test"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
CELL_TIMEOUT = 300  # seconds, the same limit make test gives nbval


@dataclass
class NotebookResult:
    path: Path
    seconds: float
    error: str | None
    slowest_cell: str
    slowest_seconds: float


def smoke_environment(runs_dir: Path) -> dict[str, str]:
    """The variables ``make test`` sets for the notebooks.

    >>> smoke_environment(Path("/tmp/runs"))["COURSE_MODE"]
    'smoke'
    """
    return {
        "COURSE_MODE": "smoke",
        "COURSE_STRICT_WARNINGS": "1",
        "COURSE_RUNS_DIR": str(runs_dir),
        "MPLBACKEND": "Agg",
    }


def _cell_seconds(cell: nbformat.NotebookNode) -> float:
    """Seconds a cell ran, from the timestamps nbclient records in its metadata."""
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    parse = datetime.datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def _slowest_cell(nb: nbformat.NotebookNode) -> tuple[str, float]:
    code = [(i, cell) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    if not code:
        return "-", 0.0
    index, cell = max(code, key=lambda item: _cell_seconds(item[1]))
    first_line = next((line for line in cell.source.splitlines() if line.strip()), "")
    return f"cell {index}: `{first_line.strip()[:50]}`", _cell_seconds(cell)


def time_notebook(path: Path) -> NotebookResult:
    """Execute ``path`` once with nbclient (in its own folder) and time it."""
    nb, client = lesson_client(path, CELL_TIMEOUT)
    error = None
    started = time.perf_counter()
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as failure:
        lines = [line for line in str(failure).splitlines() if line.strip()]
        error = lines[-1][:160] if lines else type(failure).__name__
    seconds = time.perf_counter() - started
    return NotebookResult(path, seconds, error, *_slowest_cell(nb))


def prepare_smoke_data() -> None:
    """Make sure the smoke-mode synthetic data exists, as ``make test`` does first (untimed)."""
    subprocess.run(
        [sys.executable, "-m", "data_scripts", "synthetic"],
        cwd=REPO_ROOT,
        env={**os.environ, "COURSE_MODE": "smoke"},
        check=True,
        capture_output=True,
    )


def time_make_test(log_path: Path) -> tuple[float, int, str]:
    """Wall seconds, exit code and pytest's last summary line of one ``make test``."""
    started = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        done = subprocess.run(["make", "test"], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    lines = [line for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    summary = next((line for line in reversed(lines) if " in " in line and "=" in line), "")
    return seconds, done.returncode, summary.strip("= ")


def render(
    results: Sequence[NotebookResult],
    make_test: tuple[float, int, str] | None,
    environment: dict,
    seconds: float,
) -> str:
    rows = [
        "| notebook | seconds | status | slowest cell (seconds) |",
        "|---|---|---|---|",
    ]
    for r in results:
        status = "ok" if r.error is None else f"FAILED: {r.error}"
        rows.append(
            f"| {r.path.name} | {r.seconds:.1f} | {status} "
            f"| {r.slowest_cell} ({r.slowest_seconds:.1f}) |"
        )
    total = sum(r.seconds for r in results)
    rows.append(f"| **all notebooks** | **{total:.1f}** | | |")
    if make_test is None:
        make_line = "`make test` not timed (run with `--make-test`)."
    else:
        wall, code, summary = make_test
        make_line = f"`make test`: **{wall:.0f} s** wall, exit code {code} ({summary})."
    return "\n".join(
        [
            section_intro(TITLE, f"bench.{NAME}", environment, seconds),
            "Each notebook executed once with nbclient, COURSE_MODE=smoke, strict warnings, "
            "runs in a temporary folder; seconds include kernel start-up (a few seconds each).\n",
            *rows,
            "",
            make_line,
            "",
            f"![notebook times]({NAME}.png)",
        ]
    )


def plot(results: Sequence[NotebookResult]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 0.4 * len(results) + 1.2))
    axes = figure.subplots()
    colours = ["tab:blue" if r.error is None else "tab:red" for r in results]
    bars = axes.barh([r.path.stem for r in results], [r.seconds for r in results], color=colours)
    axes.bar_label(bars, fmt="%.0f s", fontsize=8)
    axes.invert_yaxis()
    axes.margins(x=0.12)  # room for the labels at the end of the bars
    axes.set_xlabel("seconds in smoke mode (red: failed)")
    figure.tight_layout()
    path = BENCH_DIR / f"{NAME}.png"
    figure.savefig(path, dpi=100)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--make-test", action="store_true", help="also time `make test`")
    args = parser.parse_args(argv)
    if args.threads is not None:  # torch in each kernel reads it when it starts
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    environment = collect_environment()
    started = time.perf_counter()
    notebooks = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    if not notebooks:
        raise SystemExit(f"No notebooks in {NOTEBOOKS_DIR}.")
    if args.quick:
        notebooks = notebooks[:1]
    prepare_smoke_data()
    with tempfile.TemporaryDirectory(prefix="bench-notebooks-") as tmp:
        # The kernels nbclient starts inherit this process's environment.
        os.environ.update(smoke_environment(Path(tmp) / "runs"))
        results = []
        for path in notebooks:
            results.append(time_notebook(path))
            print(f"{path.name}: {results[-1].seconds:.1f} s", flush=True)
        make_test = time_make_test(Path(tmp) / "make-test.log") if args.make_test else None
    if not args.quick:
        plot(results)
    markdown = render(results, make_test, environment, time.perf_counter() - started)
    report(NAME, markdown, quick=args.quick)


if __name__ == "__main__":
    main()
