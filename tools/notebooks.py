"""Keep the lesson notebooks committed clean: no outputs except the ones nbval compares.

Cells tagged ``nbval-check-output`` keep their expected output (and an execution count, since
nbval treats an output without one as an unrun cell); every other cell is committed empty.

    python tools/notebooks.py check notebooks/*.ipynb    # exit 1 and name the offenders
    python tools/notebooks.py strip notebooks/*.ipynb    # remove outputs in place
    python tools/notebooks.py record notebooks/03_*.ipynb  # run in smoke mode, keep tagged outputs
    python tools/notebooks.py sync notebooks/*.ipynb     # the Colab link and the setup cell

Every lesson opens with the same setup cell (``SETUP_CELL``) and an "Open in Colab" link
(``colab_link``); ``sync`` writes both, and ``check`` fails when a lesson's copy differs.

``record`` executes the notebook in smoke mode, which is how ``make test`` runs it, so the
expected outputs it stores are the ones CI will see.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import nbformat

CHECK_TAG = "nbval-check-output"
NOTEBOOK_FORMAT = 4

#: Where the course lives; the Colab links and the setup cell's clone step point here.
COURSE_REPO = "course-kit/image-classification-course"
COURSE_BRANCH = "main"

#: The first code cell of every lesson. In a kernel without coursekit (a fresh Colab runtime)
#: it installs the course, cloning it first when the notebook was opened alone, and makes it
#: importable in the same kernel: an editable install's import hook is only read when Python
#: starts, so the checkout goes on sys.path by hand instead of asking for a restart.
SETUP_CELL = f"""\
# Setup: makes the course's helper package, coursekit, importable (installs it on Colab).
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("coursekit") is None:
    course = next((p for p in ("..", ".") if os.path.isdir(os.path.join(p, "coursekit"))), None)
    if course is None:  # opened alone, e.g. from the Colab link: fetch the course first
        repo = "https://github.com/{COURSE_REPO}"
        subprocess.check_call(["git", "clone", "-q", "--depth", "1", repo, "course"])
        course = "course"
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "-e", course])
    sys.path.insert(0, os.path.abspath(course))  # importable now, without a restart
    importlib.invalidate_caches()

import coursekit as ck

settings = ck.start_lesson()"""

COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def colab_url(path: Path) -> str:
    """Where Colab opens the lesson at ``path`` straight from the repository."""
    return (
        f"https://colab.research.google.com/github/{COURSE_REPO}/blob/{COURSE_BRANCH}/"
        f"notebooks/{path.name}"
    )


def colab_link(path: Path) -> str:
    """The markdown "Open in Colab" badge for the lesson at ``path``."""
    return f"[![Open In Colab]({COLAB_BADGE})]({colab_url(path)})"


def first_code_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return next(cell for cell in nb.cells if cell.cell_type == "code")


def setup_problems(nb: nbformat.NotebookNode, path: Path) -> list[str]:
    """What differs from the shared setup cell and Colab link (empty when in sync)."""
    problems = []
    if not first_code_cell(nb).source.startswith(SETUP_CELL):
        problems.append("its first code cell is not the shared setup cell")
    if colab_link(path) not in nb.cells[0].source:
        problems.append("its title cell lacks the Open-in-Colab link")
    return problems


def sync(nb: nbformat.NotebookNode, path: Path) -> nbformat.NotebookNode:
    """Write the shared setup cell (keeping lines after ``start_lesson()``) and the Colab link."""
    cell = first_code_cell(nb)
    marker = "settings = ck.start_lesson()"
    rest = cell.source.split(marker, 1)[1] if marker in cell.source else ""
    cell.source = SETUP_CELL + rest
    title = nb.cells[0]
    lines = [line for line in title.source.splitlines() if COLAB_BADGE not in line]
    title.source = "\n".join([lines[0], "", colab_link(path), *lines[1:]]).replace("\n\n\n", "\n\n")
    return nb


def is_compared(cell: nbformat.NotebookNode) -> bool:
    """True for a cell whose output nbval compares (tagged, or marked in the source)."""
    tags = cell.get("metadata", {}).get("tags", [])
    return CHECK_TAG in tags or "NBVAL_CHECK_OUTPUT" in cell.get("source", "")


def dirty_cells(nb: nbformat.NotebookNode) -> list[int]:
    """Indices of code cells that carry outputs or counts they should not."""
    return [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        and not is_compared(cell)
        and (cell.get("outputs") or cell.get("execution_count"))
    ]


def strip(nb: nbformat.NotebookNode, keep_compared: bool = True) -> nbformat.NotebookNode:
    """Remove outputs, execution counts and volatile metadata; keep compared cells' outputs."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if keep_compared and is_compared(cell):
            continue
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def record(path: Path, timeout: int = 600) -> None:
    """Run ``path`` in smoke mode and store only the outputs of compared cells."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=NOTEBOOK_FORMAT)
    os.environ["COURSE_MODE"] = "smoke"
    # Checkpoints and CSVs of a recording run are scratch, never a learner's runs/.
    with tempfile.TemporaryDirectory(prefix="record-runs-") as runs_dir:
        os.environ.setdefault("COURSE_RUNS_DIR", runs_dir)
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute()
    for number, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        if is_compared(cell):
            cell.execution_count = number + 1
            # Only text is compared: images and widgets would never match byte for byte.
            cell.outputs = [o for o in cell.outputs if o.output_type in ("stream", "execute_result")]
            for output in cell.outputs:
                if output.output_type == "execute_result":
                    output.data = {"text/plain": output.data.get("text/plain", "")}
                    output.metadata = {}
                    output.execution_count = cell.execution_count
    nbformat.write(strip(nb), path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("check", "strip", "record", "sync"))
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    failed = False
    for path in args.paths:
        if args.command == "record":
            record(path)
            print(f"recorded {path}")
            continue
        nb = nbformat.read(path, as_version=NOTEBOOK_FORMAT)
        if args.command == "strip":
            nbformat.write(strip(nb), path)
        elif args.command == "sync":
            nbformat.write(sync(nb, path), path)
        else:
            if cells := dirty_cells(nb):
                failed = True
                print(
                    f"{path}: code cells {cells} carry outputs. "
                    f"Run: python tools/notebooks.py strip {path}"
                )
            for problem in setup_problems(nb, path):
                failed = True
                print(f"{path}: {problem}. Run: python tools/notebooks.py sync {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
