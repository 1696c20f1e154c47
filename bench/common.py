"""Plumbing shared by the benchmark scripts: settings, interleaved timing, data, results.

Every script follows the same recipe: record the machine, build the same data and model
for each variant, warm up, time the variants in turn (A B B A ...) so that a burst of load
from elsewhere hits all of them, and report medians and the ratio within the run:

    >>> runs = interleaved({"a": job_a, "b": job_b}, repeats=3)  # doctest: +SKIP
    >>> ratio(runs["a"].wall, runs["b"].wall)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from data_scripts.synthetic import SYNTHETIC_CLASS_NAMES, make_synthetic

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_PATH = BENCH_DIR / "results.md"
NUM_CLASSES = len(SYNTHETIC_CLASS_NAMES)

RESULTS_HEADER = """\
# Benchmarks: coursekit helpers vs the plain loops they replace

Produced by `make bench` (= `python -m bench.run_all`); each section says which command wrote
it, when, and on what machine. Each script can be run alone (`python -m bench.NAME`) and then
rewrites only its own section. Absolute times depend on the machine and on whatever else
runs on it; the **ratios** within one run are the result. Method, for every section:

* Variants run in turn, A B B A A B ..., in one process, after an untimed warm-up of each, on
  the same data, model initialisation, batch size, transforms and loader settings. The
  tables give the median of the repeats and the ratio of medians.
* The plain loops (`bench/plain_loops.py`) reproduce the costs of the source material:
  `train_model` of the flowers-102 post (forward pass in the valid phase with autograd on,
  `zero_grad` every step in both phases, `loss.item()` per batch, accuracy summed per
  batch) and the per-image inference loop of the ResNet-18 post (open, convert, transform,
  `unsqueeze`, forward under `no_grad`, `torch.max`, one printed line per image).
* Data: the offline synthetic ImageFolder set (`data_scripts.synthetic`), 12 classes,
  images 48-320 px of mixed modes and formats, generated into a temporary folder.
* Model: torchvision `resnet18(weights=None, num_classes=12)`; no pretrained weights are
  downloaded, so every variant starts from the same seeded random initialisation.
"""


# --------------------------------------------------------------------------- command line


def base_parser(description: str) -> argparse.ArgumentParser:
    """The options every script shares: ``--quick``, ``--threads``, ``--repeats``.

    >>> base_parser("demo").parse_args(["--quick"]).quick
    True
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and one repeat: a sanity run that prints results and writes nothing",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads(N) first (default: torch's own choice, recorded)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed repeats per variant (median reported)"
    )
    return parser


def apply_threads(threads: int | None) -> None:
    """Pin torch's intra-op thread count when asked; the choice is recorded either way.

    >>> apply_threads(None)
    """
    if threads is not None:
        if threads < 1:
            raise SystemExit(f"--threads={threads}: use 1 or more.")
        torch.set_num_threads(threads)


def start_run(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, dict[str, Any], float]:
    """Every script's first steps: parse the options, pin the threads, record the machine,
    start the clock (the recorded time covers the whole run, data generation included).

    >>> args, environment, started = start_run(base_parser("demo"), ["--quick"])  # doctest: +SKIP
    """
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    return args, collect_environment(), time.perf_counter()


def lesson_client(path: Path, timeout: int) -> tuple[Any, Any]:
    """A lesson notebook read from ``path`` and an nbclient ready to run it in its own
    folder, as Jupyter would (relative paths in the lesson then resolve the same way).

    >>> nb, client = lesson_client(Path("notebooks/00_environment_check.ipynb"), 600)  # doctest: +SKIP
    """
    import nbformat  # here: only the notebook benchmarks need it
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    resources = {"metadata": {"path": str(path.parent)}}
    return nb, NotebookClient(nb, timeout=timeout, kernel_name="python3", resources=resources)


def command_line(module: str) -> str:
    """The command that reproduces this run, e.g. ``python -m bench.fit_vs_plain --threads 1``.

    >>> command_line("bench.x").startswith("python -m bench.x")
    True
    """
    return " ".join(["python", "-m", module, *map(shlex.quote, sys.argv[1:])])


# --------------------------------------------------------------------------- environment


def cpu_model() -> str:
    """The CPU's model name, e.g. ``AMD EPYC``.

    >>> isinstance(cpu_model(), str)
    True
    """
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.processor() or "unknown"
    found = re.search(r"^model name\s*:\s*(.+)$", text, flags=re.MULTILINE)
    return found.group(1).strip() if found else "unknown"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def collect_environment() -> dict[str, str]:
    """What the numbers depend on: versions, threads, CPU, load average at the start.

    >>> "torch threads" in collect_environment()
    True
    """
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "git commit": _git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch threads": f"{torch.get_num_threads()} intra-op, "
        f"{torch.get_num_interop_threads()} inter-op",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
        "CPU": f"{cpu_model()} ({os.cpu_count()} logical cores)",
        "oneDNN (mkldnn)": str(torch.backends.mkldnn.is_available()),
        "load average at start (1/5/15 min)": " / ".join(f"{value:.2f}" for value in load),
    }


def load_note(environment: Mapping[str, str]) -> str:
    """How busy the machine was at the start, from the load average, and what to read.

    >>> load_note({"load average at start (1/5/15 min)": "0.50 / 0.40 / 0.30"})[:22]
    'The machine was quiet '
    """
    one_minute = float(environment["load average at start (1/5/15 min)"].split(" / ")[0])
    busy = one_minute > (os.cpu_count() or 1)
    state = "busy with other jobs" if busy else "quiet"
    return (
        f"The machine was {state} (load average above): the absolute speeds are context; the "
        "ratios, measured in turn within one run, are the result."
    )


def environment_markdown(environment: Mapping[str, str]) -> str:
    """The environment as one compact markdown line per entry.

    >>> environment_markdown({"torch": "2.4"})
    '* torch: 2.4'
    """
    return "\n".join(f"* {key}: {value}" for key, value in environment.items())


# --------------------------------------------------------------------------- timing


@dataclass
class Runs:
    """Wall-clock and CPU seconds of each repeat of one variant.

    CPU time (``time.process_time``: every thread of this process) hardly changes when other
    programs compete for the cores, so its ratio is the steadier one on a shared machine;
    wall time is what a learner waits.
    """

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def interleaved(variants: Mapping[str, Callable[[], Any]], repeats: int) -> dict[str, Runs]:
    """Run every variant once per round, in turn, A B then B A ...; the seconds of each run.

    Interleaving spreads slow phases of a shared machine over all variants, so the ratio
    of medians stays meaningful even when the absolute times drift; reversing the order
    every other round cancels whatever the previous variant leaves behind (caches,
    allocator state) for the next one.

    >>> runs = interleaved({"noop": lambda: None}, repeats=2)
    >>> len(runs["noop"].wall), len(runs["noop"].cpu)
    (2, 2)
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be at least 1.")
    runs = {name: Runs() for name in variants}
    order = list(variants.items())
    for round_number in range(repeats):
        for name, run in order if round_number % 2 == 0 else reversed(order):
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            runs[name].cpu.append(time.process_time() - cpu)
            runs[name].wall.append(time.perf_counter() - wall)
    return runs


def median(values: Iterable[float]) -> float:
    """The median, which one disturbed repeat cannot drag the way it drags a mean.

    >>> median([1.0, 9.0, 2.0])
    2.0
    """
    return float(statistics.median(list(values)))


def ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median of ``numerator`` over median of ``denominator``.

    >>> ratio([2.0, 2.0], [4.0])
    0.5
    """
    return median(numerator) / median(denominator)


def verdict(value: float, target: float, *, at_most: bool) -> str:
    """ "met" or "MISSED" for a ratio against its target (``at_most``: lower is better).

    >>> verdict(0.7, 0.8, at_most=True), verdict(3.0, 4.0, at_most=False)
    ('met', 'MISSED')
    """
    met = value <= target if at_most else value >= target
    return "met" if met else "MISSED"


def seconds_list(values: Iterable[float]) -> str:
    """Repeats as a short list for the tables, e.g. ``1.23, 1.31``.

    >>> seconds_list([1.234, 0.5])
    '1.23, 0.50'
    """
    return ", ".join(f"{value:.2f}" for value in values)


# --------------------------------------------------------------------------- data and model


@dataclass(frozen=True)
class ImageSize:
    """The crop fed to the network and the side resized to first (eval pipeline)."""

    crop: int
    resize: int

    @property
    def label(self) -> str:
        return f"{self.crop} px"


#: The course's full-mode and smoke-mode image sizes (coursekit.config).
FULL_SIZE = ImageSize(224, 256)
SMOKE_SIZE = ImageSize(64, 72)
#: Sizes for --quick runs: small enough for a sanity check in seconds.
TINY_SIZE = ImageSize(32, 36)


def synthetic_data(root: Path, train_per_class: int, valid_per_class: int) -> Path:
    """Generate the synthetic ImageFolder set under ``root`` (quietly) and return its folder.

    >>> folder = synthetic_data(tmp_path, train_per_class=2, valid_per_class=1)  # doctest: +SKIP
    """
    with contextlib.redirect_stdout(io.StringIO()):
        return make_synthetic(
            root, train_per_class=train_per_class, valid_per_class=valid_per_class
        )


def synthetic_data_for(root: Path, cases: Sequence[Any]) -> Path:
    """The synthetic set with as many images per class as the largest of ``cases`` needs
    (each case has ``train_per_class`` and ``valid_per_class``), generated once for all.

    >>> folder = synthetic_data_for(tmp_path, QUICK_CASES)  # doctest: +SKIP
    """
    return synthetic_data(
        root,
        max(case.train_per_class for case in cases),
        max(case.valid_per_class for case in cases),
    )


def resnet18_classifier(seed: int = 0) -> nn.Module:
    """A seeded, randomly initialised torchvision ResNet-18 with one output per class.

    >>> resnet18_classifier().fc.out_features
    12
    """
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None, num_classes=NUM_CLASSES)


def random_classifier(arch: str, num_classes: int, seed: int = 0) -> nn.Module:
    """A seeded, randomly initialised torchvision classifier (speed does not need weights).

    >>> random_classifier("mobilenet_v2", 2).classifier[-1].out_features
    2
    """
    torch.manual_seed(seed)
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


# --------------------------------------------------------------------------- results


#: The benchmark scripts (``bench.<name>``), in the order run_all runs them.
SCRIPTS = (
    "fit_vs_plain",
    "fit_vs_bound",
    "profile_loops",
    "cached_features",
    "batched_inference",
    "notebook_times",
)
#: The order of the sections in results.md (the analysis is written by hand); others follow
#: in the order they were added.
SECTION_ORDER = (*SCRIPTS, "analysis")


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def _section_rank(section: str) -> int:
    name = section.split(":", 2)[1]
    return SECTION_ORDER.index(name) if name in SECTION_ORDER else len(SECTION_ORDER)


def write_section(name: str, markdown: str, path: Path = RESULTS_PATH) -> Path:
    """Put ``markdown`` into ``path`` as section ``name``, replacing that section only.

    The header is rewritten each time; other sections are kept as they are, in
    ``SECTION_ORDER``.

    >>> write_section("fit_vs_plain", "## 1. ...")  # doctest: +SKIP
    """
    start, end = _markers(name)
    block = f"{start}\n{markdown.strip()}\n{end}"
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    sections = re.findall(r"<!-- bench:[\w]+:start -->.*?<!-- bench:[\w]+:end -->", old, re.S)
    replaced = [block if section.startswith(start) else section for section in sections]
    if block not in replaced:
        replaced.append(block)
    replaced.sort(key=_section_rank)
    path.write_text(RESULTS_HEADER + "\n" + "\n\n".join(replaced) + "\n", encoding="utf-8")
    return path


def report(name: str, markdown: str, *, quick: bool) -> None:
    """Print a section, and unless it was a --quick run, store it in results.md."""
    print(markdown)
    if quick:
        print("\n(--quick: nothing written; run without --quick to update bench/results.md)")
    else:
        print(f"\nWrote section {name!r} of {write_section(name, markdown)}")


def section_intro(title: str, module: str, environment: Mapping[str, str], seconds: float) -> str:
    """Title, reproducing command, run time and environment: the top of every section."""
    return (
        f"## {title}\n\n"
        f"Command: `{command_line(module)}` (took {seconds:.0f} s)\n\n"
        f"{environment_markdown(environment)}\n"
    )


def grouped_bar_plot(
    path: Path,
    title: str,
    ylabel: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    log_scale: bool = False,
    reference_lines: Mapping[str, float] | None = None,
) -> Path:
    """Save a grouped bar chart (one group per size, one bar per series) as a PNG.

    ``reference_lines`` maps a label to a height drawn as a dashed line (e.g. a target).

    >>> grouped_bar_plot(tmp_path / "a.png", "t", "s", ["64 px"], {"a": [1.0]})  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no window, works on a headless machine
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.5))
    axes = figure.subplots()
    width = 0.8 / max(len(series), 1)
    for index, (name, values) in enumerate(series.items()):
        positions = [group + index * width for group in range(len(groups))]
        bars = axes.bar(positions, values, width, label=name)
        axes.bar_label(bars, fmt="%.3g", fontsize=8)
    axes.set_xticks([group + width * (len(series) - 1) / 2 for group in range(len(groups))])
    axes.set_xticklabels(groups)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    for (label, height), style in zip(
        (reference_lines or {}).items(), ("--", ":", "-."), strict=False
    ):
        axes.axhline(height, color="grey", linestyle=style, linewidth=1, label=label)
    if log_scale:
        axes.set_yscale("log")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path
