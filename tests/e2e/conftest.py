"""A real client for the lessons: JupyterLab on a free loopback port, driven by headless Chromium.

The browser test is opt-in because it needs Debian's ``chromium`` and Playwright and takes a
few minutes: run it with ``make e2e`` (or ``COURSE_E2E=1 python -m pytest tests/e2e``).
Everything stays on this machine: JupyterLab listens on 127.0.0.1 with a random token, its
update and news checks are off, and Chromium runs with background networking disabled.
The server and the browser are always stopped by the fixtures' finalizers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
OPT_IN_VARIABLE = "COURSE_E2E"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Seconds JupyterLab may take to answer after it was started.
SERVER_START_SECONDS = 120
#: JupyterLab settings for a quiet, testable page: every cell stays in the DOM (no
#: virtual scrolling), nothing is fetched from the internet, nothing is saved unless the test
#: saves it (into the throw-away copy of the notebooks).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip this folder's tests unless they were asked for (they need a browser)."""
    if os.environ.get(OPT_IN_VARIABLE) == "1":
        return
    opt_in = pytest.mark.skip(
        reason=f"browser test is opt-in: run `make e2e` (or {OPT_IN_VARIABLE}=1 pytest tests/e2e)"
    )
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(opt_in)


# --------------------------------------------------------------------------- what it needs


def _run(command: list[str], timeout: float) -> bool:
    """Run an install command, showing its output; True when it succeeded."""
    print("$", " ".join(command), flush=True)
    try:
        return subprocess.run(command, timeout=timeout, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired) as error:
        print(f"{command[0]} failed: {error}")
        return False


def _install_chromium() -> None:
    """Debian's chromium through apt, when this user may install packages."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return
    if _run(["apt-get", "update", "-qq"], timeout=300):
        _run(["apt-get", "install", "-y", "-qq", "chromium"], timeout=600)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """The path of Debian's chromium, installed with apt if missing; skips if impossible."""
    found = shutil.which("chromium")
    if found is None:
        _install_chromium()
        found = shutil.which("chromium")
    if found is None:
        pytest.skip(
            "Debian's chromium is not installed and could not be installed here (needs root "
            "and apt-get): run `sudo apt-get install chromium`, then `make e2e`."
        )
    return found


@pytest.fixture(scope="session")
def sync_playwright() -> object:
    """Playwright's sync API (the e2e extra), installed with pip if missing.

    Only the Python package is needed: its wheel ships the node driver, and the browser is
    Debian's chromium, so `playwright install` (which downloads browsers) is never run.
    """
    if importlib.util.find_spec("playwright") is None:
        _run([sys.executable, "-m", "pip", "install", "-q", "playwright>=1.40"], timeout=600)
        importlib.invalidate_caches()
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("Playwright could not be installed: run `pip install -e '.[e2e]'`.")
    from playwright.sync_api import sync_playwright

    return sync_playwright


# --------------------------------------------------------------------------- JupyterLab


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: where it answers, its token, and the folder it serves."""

    base_url: str
    token: str
    notebook_dir: Path
    log: Path

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}?token={self.token}"

    def api(self, path: str, method: str = "GET") -> dict | list:
        request = urllib.request.Request(
            f"{self.base_url}/api/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else {}


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def loopback_port() -> int:
    """A free TCP port on 127.0.0.1 for a server the test starts."""
    return free_loopback_port()


def _write_lab_settings(settings_dir: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")


def _lab_environment(home: Path) -> dict[str, str]:
    """Smoke mode, a private runs folder, and Jupyter folders nobody else uses."""
    env = {
        **os.environ,
        "COURSE_MODE": "smoke",
        "COURSE_RUNS_DIR": str(home / "runs"),
        "JUPYTER_CONFIG_DIR": str(home / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(home / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "lab-workspaces"),
        "IPYTHONDIR": str(home / "ipython"),
    }
    # The unit tests' Agg backend would stop the kernel from drawing plots inline.
    env.pop("MPLBACKEND", None)
    return env


def _wait_until_answering(lab: Lab, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{_tail(lab.log)}")
        try:
            lab.api("status")
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {SERVER_START_SECONDS}s:\n{_tail(lab.log)}")


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _stop(lab: Lab, server: subprocess.Popen) -> None:
    """Ask JupyterLab to shut down (it stops its kernels), then make sure it is gone."""
    if server.poll() is None:
        try:
            lab.api("shutdown", method="POST")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
    for stop_signal in (None, signal.SIGTERM, signal.SIGKILL):
        if stop_signal is not None:
            os.killpg(server.pid, stop_signal)  # the group we started: server and helpers
        try:
            server.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def synthetic_data() -> None:
    """The smoke-mode dataset, generated if missing (no-op when it is complete)."""
    subprocess.run(
        [sys.executable, "-m", "data_scripts", "synthetic"],
        cwd=REPO,
        env={**os.environ, "COURSE_MODE": "smoke"},
        check=True,
        timeout=600,
    )


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory: pytest.TempPathFactory, synthetic_data: None) -> Iterator[Lab]:
    """JupyterLab serving a throw-away copy of notebooks/ (it must never write into the repo)."""
    home = tmp_path_factory.mktemp("jupyterlab")
    notebook_dir = home / "notebooks"
    shutil.copytree(REPO / "notebooks", notebook_dir, ignore=shutil.ignore_patterns(".*"))
    env = _lab_environment(home)
    _write_lab_settings(Path(env["JUPYTERLAB_SETTINGS_DIR"]))
    port, token = free_loopback_port(), secrets.token_hex(24)
    lab = Lab(f"http://127.0.0.1:{port}", token, notebook_dir, home / "jupyterlab.log")
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        f"--port={port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}", f"--notebook-dir={notebook_dir}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        *(["--allow-root"] if os.geteuid() == 0 else []),  # containers and CI run as root
    ]  # fmt: skip
    with lab.log.open("wb") as log:
        server = subprocess.Popen(
            command, cwd=notebook_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        _wait_until_answering(lab, server)
        yield lab
    finally:
        _stop(lab, server)


# --------------------------------------------------------------------------- Chromium


@pytest.fixture(scope="session")
def browser_context(
    sync_playwright: object, chromium_executable: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[object]:
    """Headless Chromium with a throw-away profile; closed (and its processes gone) at the end."""
    with sync_playwright() as playwright:  # type: ignore[operator]
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=chromium_executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()
