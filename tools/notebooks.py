"""Keep the lesson notebooks committed clean: no outputs except the ones nbval compares.

Cells tagged ``nbval-check-output`` keep their expected output (and an execution count, since
nbval treats an output without one as an unrun cell); every other cell is committed empty.

    python tools/notebooks.py check notebooks/*.ipynb    # exit 1 and name the offenders
    python tools/notebooks.py strip notebooks/*.ipynb    # remove outputs in place
    python tools/notebooks.py record notebooks/03_*.ipynb  # run in smoke mode, keep tagged outputs

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
    parser.add_argument("command", choices=("check", "strip", "record"))
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
        elif cells := dirty_cells(nb):
            failed = True
            print(
                f"{path}: code cells {cells} carry outputs. "
                f"Run: python tools/notebooks.py strip {path}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
