"""The import rules of docs/ARCHITECTURE.md, checked on the source of every coursekit module.

config, folders (dataset folders on disk, torch-free) and metrics import nothing of
coursekit; data imports config and folders; models, distributed and viz import only config;
train imports config and distributed; timing, infer and bundle build on each other in that
order; the exercises stand alone. ``_safe_io`` (atomic writes and the checkpoint value
check) is a private leaf that train, infer and bundle share; ``_model_state`` (a model's
device and eval mode, on top of config) one that most modules share.
"""

from __future__ import annotations

import ast
import re
import sys
import types
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "coursekit"

#: Which coursekit modules each module may import ("exercises" means coursekit.exercises.*).
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "folders": set(),
    "_safe_io": set(),
    "_model_state": {"config"},
    "metrics": set(),
    "data": {"config", "folders"},
    "models": {"config", "_model_state"},
    "distributed": {"config"},
    "train": {"config", "_safe_io", "distributed", "_model_state"},
    "viz": {"config", "_model_state"},
    "timing": {"config", "_model_state"},
    "infer": {"config", "folders", "metrics", "timing", "_safe_io", "_model_state"},
    "bundle": {"config", "models", "data", "infer", "_safe_io", "_model_state"},
    "recipe": {"config", "data", "models", "train", "bundle", "viz", "distributed"},
    "export": {"config", "models", "data", "infer", "bundle", "_safe_io", "_model_state"},
    "demo": {"config", "folders", "infer", "bundle", "export", "viz", "_model_state"},
    "exercises": {"exercises"},
}
#: The package's front doors: they wire the modules together, so they may import any.
UNRESTRICTED = {"__init__", "__main__"}


def owner(path: Path) -> str:
    """The rule a source file falls under: its module name, or "exercises" for that package."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def coursekit_imports(path: Path) -> set[str]:
    """The coursekit modules ``path`` imports anywhere in it (top-level names, e.g. "config").

    ``from coursekit import models`` counts as "models"; importing a name from the package
    itself (``from coursekit import fit``) counts as "coursekit", which imports everything.
    """
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name.split(".") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            base += node.module.split(".") if node.module else []
            targets = [base + [alias.name] for alias in node.names] if len(base) == 1 else [base]
        else:
            continue
        for parts in targets:
            if parts[0] != "coursekit":
                continue
            module = parts[1] if len(parts) > 1 else "coursekit"
            is_module = (PACKAGE / module).is_dir() or (PACKAGE / f"{module}.py").is_file()
            found.add(module if is_module else "coursekit")
    return found


SOURCES = sorted(path for path in PACKAGE.rglob("*.py") if owner(path) not in UNRESTRICTED)


def test_every_module_has_a_rule():
    assert {owner(path) for path in SOURCES} == set(ALLOWED)


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_imports_follow_the_architecture(path):
    imported = coursekit_imports(path) - {owner(path)}  # a package may use its own parts
    forbidden = imported - ALLOWED[owner(path)]
    assert not forbidden, f"{path.name} imports {sorted(forbidden)} of coursekit"


def test_the_import_finder_sees_every_form_of_import(tmp_path, monkeypatch):
    fake = tmp_path / "coursekit"
    (fake / "exercises").mkdir(parents=True)
    for name in ("config.py", "models.py", "data.py", "exercises/core.py"):
        (fake / name).write_text("")
    source = fake / "exercises" / "lesson01.py"
    source.write_text(
        "import coursekit.config\n"
        "from coursekit import models, fit\n"
        "from . import core\n"
        "def later():\n"
        "    from coursekit.data import load_image\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert coursekit_imports(source) == {"config", "models", "coursekit", "exercises", "data"}


NOTEBOOKS = PACKAGE.parent / "notebooks"


def test_all_is_the_public_top_level_and_holds_every_lesson_name():
    import coursekit

    for name in coursekit.__all__:
        getattr(coursekit, name)  # each one resolves (and is then bound at the top level)
    public = {
        name
        for name, value in vars(coursekit).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(coursekit.__all__) == sorted(public)
    used = {
        name
        for notebook in NOTEBOOKS.glob("*.ipynb")
        for name in re.findall(r"\bck\.([A-Za-z_]\w*)", notebook.read_text(encoding="utf-8"))
    }
    assert used, "no ck. names found: the notebooks moved?"
    assert used - set(coursekit.__all__) == set()
