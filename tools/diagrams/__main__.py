"""Redraw the lesson diagrams: ``python -m tools.diagrams [LESSON ...]`` (see the package doc)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path

import matplotlib.pyplot as plt

import tools.diagrams as diagrams

OUT_DIR = Path(__file__).resolve().parents[2] / "notebooks" / "figures"


def all_diagrams(lessons: list[str] | None = None) -> dict[str, object]:
    """File name -> drawing function, from every module here (or only the named lessons')."""
    found: dict[str, object] = {}
    for info in sorted(pkgutil.iter_modules(diagrams.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        if lessons and info.name.removeprefix("lesson") not in lessons:
            continue
        found.update(importlib.import_module(f"tools.diagrams.{info.name}").DIAGRAMS)
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.diagrams", description=__doc__)
    parser.add_argument("lessons", nargs="*", help="two-digit lesson numbers, or course_map (default: all)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for the PNG files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, draw in all_diagrams(args.lessons or None).items():
        fig = draw()
        fig.savefig(args.out / name, dpi=diagrams.DPI)
        plt.close(fig)
        print(args.out / name)


if __name__ == "__main__":
    main()
