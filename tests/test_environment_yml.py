"""environment.yml agrees with pyproject.toml: same Python, installs the project, no clashing pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml  # PyYAML comes with jupyterlab (through jupyter-events)
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
#: conda-forge names that differ from the PyPI names used in pyproject.toml.
CONDA_TO_PYPI = {"pytorch": "torch", "pyyaml": "pyyaml"}
#: A conda "name=1.2" or "name==1.2" or "name>=1.2" pin.
CONDA_PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|=|>=|<=|>|<|~=|!=)?\s*([^\s=<>!~]+)?")


def load_environment(text: str) -> tuple[list[str], list[str]]:
    """(conda dependencies, pip requirements) of an environment.yml text."""
    document = yaml.safe_load(text)
    conda, pip = [], []
    for entry in document.get("dependencies", []):
        if isinstance(entry, dict):
            pip.extend(entry.get("pip", []))
        else:
            conda.append(str(entry))
    return conda, pip


def project_requirements() -> dict[str, SpecifierSet]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    everything = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        everything.extend(extra)
    return {canonicalize_name(r.name): r.specifier for r in map(Requirement, everything)}


def conda_pin(entry: str) -> tuple[str, str | None, str | None]:
    name, operator, version = CONDA_PIN.match(entry).groups()
    return canonicalize_name(CONDA_TO_PYPI.get(name.lower(), name)), operator, version


def clashes(conda: list[str], pip: list[str], wanted: dict[str, SpecifierSet]) -> list[str]:
    """Pins in environment.yml that pyproject's version ranges do not admit."""
    found = []
    for entry in conda:
        name, operator, version = conda_pin(entry)
        if name in wanted and version and operator in ("=", "==") and version not in wanted[name]:
            found.append(entry)
    for line in pip:
        if line.startswith("-"):
            continue
        requirement = Requirement(line)
        pinned = [s.version for s in requirement.specifier if s.operator in ("==", "===")]
        name = canonicalize_name(requirement.name)
        if name in wanted and any(v not in wanted[name] for v in pinned):
            found.append(line)
    return found


@pytest.fixture(scope="module")
def environment() -> tuple[list[str], list[str]]:
    return load_environment((REPO / "environment.yml").read_text())


def test_name_and_channel() -> None:
    document = yaml.safe_load((REPO / "environment.yml").read_text())
    assert document["name"] == "torch-course"
    assert document["channels"] == ["conda-forge"]


def test_python_version_is_allowed_by_requires_python(
    environment: tuple[list[str], list[str]],
) -> None:
    conda, _ = environment
    pins = [conda_pin(entry) for entry in conda if conda_pin(entry)[0] == "python"]
    assert len(pins) == 1, "environment.yml must pin python exactly once"
    _, operator, version = pins[0]
    assert operator == "=" and version
    requires = SpecifierSet(
        tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    )
    assert version in requires


def test_pip_installs_the_project_editable(environment: tuple[list[str], list[str]]) -> None:
    conda, pip = environment
    assert "pip" in conda
    assert any(re.fullmatch(r"-e\s+\.(\[dev\])?", line.strip()) for line in pip)


def test_no_pin_clashes_with_pyproject(environment: tuple[list[str], list[str]]) -> None:
    assert clashes(*environment, project_requirements()) == []


def test_clash_check_catches_bad_pins() -> None:
    bad = "dependencies:\n  - python=3.11\n  - pytorch=2.0.1\n  - pip\n  - pip:\n      - torchvision==0.15.2\n      - -e .\n"
    assert clashes(*load_environment(bad), project_requirements()) == [
        "pytorch=2.0.1",
        "torchvision==0.15.2",
    ]
    fine = "dependencies:\n  - python=3.11\n  - pytorch=2.14.1\n  - pip\n"
    assert clashes(*load_environment(fine), project_requirements()) == []
