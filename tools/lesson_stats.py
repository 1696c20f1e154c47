"""How the lessons read: prose on the main path, the longest cell, diagrams, tooling talk.

    python tools/lesson_stats.py            # a markdown table, one row per lesson
    python tools/lesson_stats.py --check    # exit 1 and name every lesson over a limit
    python tools/lesson_stats.py --write docs/READING.md   # the table the docs show

The main path is every markdown cell before the lesson's "Going further" heading, without
collapsed ``<details>`` blocks; words are counted outside inline code. The limits are the
course's reading budget (a beginner reads the main path in about 15 minutes).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
READING_PAGE = NOTEBOOKS.parent / "docs" / "READING.md"
MAX_WORDS = 1800
MAX_CELL_WORDS = 150
#: A cell may run a little over the budget where splitting it would cut a thought in half.
CELL_SLACK = 1.2
#: Lessons whose ideas are pictures (architectures, the loop, frozen backbone, the pipeline).
NEEDS_DIAGRAM = ("03", "04", "05", "06", "08")

GOING_FURTHER = re.compile(r"^#+ .*going further", re.I | re.M)
DETAILS = re.compile(r"<details>.*?</details>", re.S | re.I)
INLINE_CODE = re.compile(r"`[^`]*`")
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
DIAGRAM = re.compile(r"!\[[^\]]*\]\((?!http)([^)]+\.(?:svg|png))\)")
CK_NAME = re.compile(r"\bck\.([A-Za-z_]\w*)")


@dataclass
class LessonStats:
    lesson: str
    words: int
    longest_cell: int
    diagrams: int
    smoke_mentions: int
    colab_link: bool
    pragmas: int
    ck_names: frozenset[str]

    def problems(self) -> list[str]:
        found = []
        if self.words > MAX_WORDS:
            found.append(f"{self.words} words on the main path (budget {MAX_WORDS})")
        if self.longest_cell > MAX_CELL_WORDS * CELL_SLACK:
            found.append(f"a markdown cell of {self.longest_cell} words (budget {MAX_CELL_WORDS})")
        if self.smoke_mentions:
            found.append(f"'smoke' {self.smoke_mentions}x in markdown (only the banner says it)")
        if not self.colab_link:
            found.append("no Open-in-Colab link")
        if self.lesson in NEEDS_DIAGRAM and not self.diagrams:
            found.append("no diagram")
        if self.pragmas:
            found.append(f"{self.pragmas} formatter pragma(s) in learner code")
        return found


def words_in(markdown: str) -> int:
    return len(WORD.findall(INLINE_CODE.sub("x", markdown)))


def lesson_stats(path: Path) -> LessonStats:
    """Count what a beginner reads in one lesson.

    >>> stats = lesson_stats(sorted(NOTEBOOKS.glob("0[0-9]_*.ipynb"))[0])
    >>> stats.lesson
    '00'
    """
    nb = nbformat.read(path, as_version=4)
    words = longest = diagrams = smoke = pragmas = 0
    colab = side_path = False
    ck_names: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type == "code":
            pragmas += cell.source.count("# fmt:")
            ck_names.update(CK_NAME.findall(cell.source))
            continue
        if cell.cell_type != "markdown":
            continue
        side_path = side_path or bool(GOING_FURTHER.search(cell.source))
        colab = colab or "colab.research.google.com" in cell.source
        diagrams += len(DIAGRAM.findall(cell.source))
        smoke += len(re.findall(r"\bsmoke\b", cell.source, re.I))
        if not side_path:
            n = words_in(DETAILS.sub("", cell.source))
            words += n
            longest = max(longest, n)
    return LessonStats(
        path.name[:2], words, longest, diagrams, smoke, colab, pragmas, frozenset(ck_names)
    )


def table(stats: list[LessonStats]) -> str:
    rows = [
        "| lesson | main-path words | longest cell | diagrams | 'smoke' in prose | Colab link "
        "| `ck.` names |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in stats:
        rows.append(
            f"| {s.lesson} | {s.words} | {s.longest_cell} | {s.diagrams} | {s.smoke_mentions} "
            f"| {'yes' if s.colab_link else 'no'} | {len(s.ck_names)} |"
        )
    everything = frozenset().union(*(s.ck_names for s in stats))
    rows.append(f"\nDistinct `ck.` names across the course: {len(everything)}.")
    return "\n".join(rows)


def reading_page(stats: list[LessonStats]) -> str:
    """docs/READING.md: the budget, then the table (regenerated with --write)."""
    return (
        "# How the lessons read\n\n"
        f"Each lesson's main path (everything before its \"Going further\" section, without\n"
        f"collapsed `<details>` blocks) stays within {MAX_WORDS} words of prose, no markdown cell\n"
        f"over about {MAX_CELL_WORDS} words, so a beginner reads it in about 15 minutes. Made by\n"
        "`python tools/lesson_stats.py --write docs/READING.md`; `tests/test_lesson_readability.py`\n"
        "fails when a lesson goes over or this page is stale.\n\n" + table(stats) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a lesson is over")
    parser.add_argument("--write", type=Path, help="write the reading page (docs/READING.md)")
    args = parser.parse_args(argv)
    stats = [lesson_stats(p) for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))]
    if args.write:
        args.write.write_text(reading_page(stats), encoding="utf-8")
    print(table(stats))
    problems = [f"{s.lesson}: {p}" for s in stats for p in s.problems()]
    if args.check and problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
