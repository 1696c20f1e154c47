"""Every lesson's first cell works in a fresh kernel without coursekit (a new Colab runtime).

The cell is run in a new virtual environment that has the course's third-party packages
(torch, ...) but not coursekit, offline: pip installs the course from a local copy. After
the cell, ``import coursekit`` must work in that same process, with no restart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import nbformat
import pytest

from tools import notebooks as nbtool

REPO = Path(__file__).resolve().parents[1]
LESSONS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))



# After the setup cell: coursekit must come from the course folder, in this very process.
AFTER_CELL = """
import coursekit
print("IMPORTED", coursekit.__file__, type(settings).__name__)
"""


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_every_lesson_starts_with_the_shared_setup_cell_and_a_colab_link(path):
    nb = nbformat.read(path, as_version=4)
    assert nbtool.setup_problems(nb, path) == [], f"run: python tools/notebooks.py sync {path}"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_the_readme_opens_every_lesson_in_colab(path):
    assert nbtool.colab_url(path) in (REPO / "README.md").read_text(encoding="utf-8")


def _copy_course(dest: Path) -> Path:
    """The files `pip install -e` needs, as a learner's checkout has them."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for package in ("coursekit", "data_scripts"):
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "notebooks").mkdir()
    return dest


def _fresh_environment(tmp_path: Path) -> Path:
    """A new venv that sees this environment's packages except coursekit itself."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir)  # pip comes with the linked packages below
    python = env_dir / "bin" / "python"
    site = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip()
    # Links to every installed package but the course's own (its editable hook and metadata),
    # so that pip finds torch & co. installed and needs no index.
    deps = tmp_path / "deps"
    deps.mkdir()
    ours = ("coursekit", "data_scripts", "__editable__")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(ours) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    Path(site, "course-deps.pth").write_text(f"{deps}\n")
    return python


def _run_cell(python: Path, cell: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))
    }
    # Offline: no index, and the build uses the setuptools the environment already has.
    env.update(PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", COURSE_MODE="smoke")
    return subprocess.run(
        [python, "-c", cell + AFTER_CELL], cwd=cwd, env=env, text=True, capture_output=True,
        timeout=240,
    )


@pytest.fixture
def fresh_python(tmp_path_factory) -> Path:  # one per test: the install persists
    python = _fresh_environment(tmp_path_factory.mktemp("fresh"))
    empty = tmp_path_factory.mktemp("empty")
    probe = subprocess.run(
        [python, "-c", "import coursekit"], cwd=empty, capture_output=True, text=True
    )
    assert probe.returncode != 0, "the fresh environment must not have coursekit yet"
    subprocess.run([python, "-c", "import torch, torchvision, pip"], cwd=empty, check=True)
    return python


def test_setup_cell_installs_the_checkout_and_imports_it_without_a_restart(fresh_python, tmp_path):
    course = _copy_course(tmp_path / "checkout")
    result = _run_cell(fresh_python, nbtool.SETUP_CELL, cwd=course / "notebooks")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"IMPORTED {course / 'coursekit' / '__init__.py'} Settings" in result.stdout


def test_setup_cell_clones_the_course_when_the_notebook_was_opened_alone(fresh_python, tmp_path):
    origin = _copy_course(tmp_path / "origin")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=origin, check=True)
    subprocess.run([*git, "add", "-A"], cwd=origin, check=True)
    subprocess.run([*git, "commit", "-qm", "course"], cwd=origin, check=True)
    url = f"https://github.com/{nbtool.COURSE_REPO}"
    assert url in nbtool.SETUP_CELL
    cell = nbtool.SETUP_CELL.replace(url, origin.as_uri())  # the local copy stands for GitHub
    alone = tmp_path / "content"  # Colab's working folder holds nothing of the course
    alone.mkdir()
    result = _run_cell(fresh_python, cell, cwd=alone)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"IMPORTED {alone / 'course' / 'coursekit' / '__init__.py'} Settings" in result.stdout
