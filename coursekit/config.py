"""Run modes and settings: the one place where sizes, epochs and paths come from.

A lesson never hard-codes a number. It asks for the settings of the current run mode:

    >>> settings = get_settings()            # reads COURSE_MODE (default "full")
    >>> settings.image_size, settings.epochs  # doctest: +SKIP
    (224, 10)

``smoke`` mode (what ``make test`` uses) shrinks everything so that every notebook runs in
seconds on a CPU; ``full`` mode is the real lesson. Any single setting can be overridden
with an environment variable named ``COURSE_<FIELD>`` (for example ``COURSE_EPOCHS=3``);
``describe_overrides()`` lists them.

This module imports nothing else from coursekit, so every other module may import it.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import random
import sys
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

Mode = Literal["smoke", "full"]
MODES: tuple[str, ...] = ("smoke", "full")
ENV_PREFIX = "COURSE_"

#: The repository root when coursekit is installed with ``pip install -e .``.
REPO_ROOT = Path(__file__).resolve().parents[1]

#: Per-channel RGB mean and std of ImageNet, which torchvision's pretrained weights expect.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class SettingsError(ValueError):
    """A run-mode setting (usually an environment variable) has a value we cannot use."""


@dataclass(frozen=True)
class Settings:
    """Every number a lesson needs, for one run mode.

    >>> s = Settings.for_mode("smoke")
    >>> s.image_size < Settings.for_mode("full").image_size
    True
    """

    mode: Mode = "full"
    #: Side of the square crop fed to the network.
    image_size: int = 224
    #: Side images are resized to before the centre crop in the eval pipeline.
    resize_size: int = 256
    batch_size: int = 32
    #: Epochs for a training run from scratch or for the head of a frozen backbone.
    epochs: int = 10
    #: Epochs for the second, unfrozen phase of fine-tuning.
    fine_tune_epochs: int = 5
    #: Cap on images per class taken from the train / valid split (None = all of them).
    train_per_class: int | None = None
    valid_per_class: int | None = None
    #: Dataset to use instead of each lesson's own ("synthetic", "hymenoptera", "flowers102",
    #: or a folder path). None means "the lesson's own dataset".
    dataset: str | None = None
    data_root: Path = field(default_factory=lambda: REPO_ROOT / "data")
    #: Where checkpoints, bundles and CSVs written by the lessons go.
    runs_dir: Path = field(default_factory=lambda: REPO_ROOT / "runs")
    #: torchvision classifier used by the transfer-learning lessons.
    arch: str = "resnet18"
    #: "auto" picks cuda, then mps, then cpu.
    device: str = "auto"
    seed: int = 42
    #: Learning rate for training from scratch / for a new head.
    lr: float = 1e-3
    #: Lower learning rate for the whole network once unfrozen.
    fine_tune_lr: float = 1e-4
    #: The new head learns this many times faster than the backbone (discriminative LRs).
    head_lr_multiplier: float = 10.0
    #: StepLR: decay the LR by ``lr_gamma`` every ``lr_step_size`` epochs.
    lr_step_size: int = 7
    lr_gamma: float = 0.1
    #: StepLR of the shorter fine-tuning phase (its own optimizer, its own schedule).
    fine_tune_lr_step_size: int = 2
    #: DataLoader worker processes; see ``default_num_workers``.
    num_workers: int = 0
    #: Inference timing: un-timed warm-up passes, then timed repeats.
    warmup_runs: int = 3
    timing_runs: int = 10
    #: Validation fraction and seed for splitting a single folder (like Keras).
    validation_split: float = 0.2
    split_seed: int = 123
    #: Top-k predictions shown by the evaluation and inference lessons.
    top_k: int = 5
    #: Number of images in galleries and grids.
    gallery_size: int = 8

    @classmethod
    def for_mode(cls, mode: str) -> Settings:
        """The built-in settings of ``mode`` ("smoke" or "full"), ignoring the environment."""
        if mode not in MODES:
            raise SettingsError(
                f"COURSE_MODE={mode!r} is not a run mode. Use one of {', '.join(MODES)} "
                "(for example: COURSE_MODE=smoke make lab)."
            )
        base = cls(mode=mode, num_workers=default_num_workers())  # type: ignore[arg-type]
        if mode == "full":
            return base
        return dataclasses.replace(
            base,
            image_size=64,
            resize_size=72,
            batch_size=8,
            epochs=1,
            fine_tune_epochs=1,
            fine_tune_lr_step_size=1,
            train_per_class=4,
            valid_per_class=2,
            dataset="synthetic",
            num_workers=0,
            warmup_runs=1,
            timing_runs=2,
            gallery_size=4,
            top_k=3,
        )

    @property
    def is_smoke(self) -> bool:
        return self.mode == "smoke"

    def banner(self) -> str:
        """The one visible line a notebook prints about the run mode."""
        if self.is_smoke:
            return (
                f"SMOKE RUN: tiny data ({self.train_per_class}/class), {self.image_size}px, "
                f"{self.epochs} epoch(s). Numbers here mean nothing; "
                "set COURSE_MODE=full for the real lesson."
            )
        return (
            f"Full run: {self.image_size}px images, batch {self.batch_size}, "
            f"{self.epochs} epochs, device {self.device}."
        )


def _parse(name: str, raw: str, kind: Any) -> Any:
    """Turn the text of an environment variable into the type of a Settings field."""
    text = raw.strip()
    optional = "None" in str(kind)
    if optional and text.lower() in ("", "none", "all"):
        return None
    try:
        if "Path" in str(kind):
            return Path(text).expanduser()
        if "int" in str(kind) and "float" not in str(kind):
            return int(text)
        if "float" in str(kind):
            return float(text)
    except ValueError:
        expected = "an integer" if "int" in str(kind) else "a number"
        raise SettingsError(
            f"{ENV_PREFIX}{name.upper()}={raw!r} is not {expected}. "
            f"Fix or unset it (for example: unset {ENV_PREFIX}{name.upper()})."
        ) from None
    return text


def _env_overrides(environ: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name == "mode":
            continue
        key = f"{ENV_PREFIX}{f.name.upper()}"
        if key in environ:
            overrides[f.name] = _parse(f.name, environ[key], f.type)
    return overrides


def get_settings(mode: str | None = None, **overrides: Any) -> Settings:
    """Settings for ``mode`` (default: ``$COURSE_MODE`` or "full"), env overrides applied.

    >>> get_settings("smoke", epochs=2).epochs
    2
    """
    chosen = (mode or os.environ.get(f"{ENV_PREFIX}MODE") or "full").strip().lower()
    settings = Settings.for_mode(chosen)
    settings = dataclasses.replace(settings, **_env_overrides(os.environ))
    settings = dataclasses.replace(settings, **overrides)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    positive = (
        "image_size",
        "resize_size",
        "batch_size",
        "epochs",
        "fine_tune_epochs",
        "lr_step_size",
        "fine_tune_lr_step_size",
    )
    for name in positive:
        if getattr(s, name) < 1:
            raise SettingsError(
                f"Setting {name}={getattr(s, name)} must be at least 1 "
                f"(check {ENV_PREFIX}{name.upper()})."
            )
    if s.resize_size < s.image_size:
        raise SettingsError(
            f"resize_size={s.resize_size} is smaller than image_size={s.image_size}: the centre "
            f"crop would not fit. Set {ENV_PREFIX}RESIZE_SIZE to at least {s.image_size}."
        )
    if not 0.0 < s.validation_split < 1.0:
        raise SettingsError(
            f"validation_split={s.validation_split} must be between 0 and 1 "
            f"(check {ENV_PREFIX}VALIDATION_SPLIT)."
        )
    if s.device not in ("auto", "cpu", "cuda", "mps") and not s.device.startswith("cuda:"):
        raise SettingsError(
            f"device={s.device!r} is not known. Use auto, cpu, cuda, cuda:N or mps "
            f"(check {ENV_PREFIX}DEVICE)."
        )


def describe_overrides() -> str:
    """A table of the environment variables that override settings, with full-mode defaults."""
    full = Settings.for_mode("full")
    rows = [f"{ENV_PREFIX}MODE=smoke|full (default full)"]
    for f in fields(Settings):
        if f.name != "mode":
            rows.append(f"{ENV_PREFIX}{f.name.upper()} (full default: {getattr(full, f.name)})")
    return "\n".join(rows)


def default_num_workers() -> int:
    """DataLoader workers that are safe where the course runs.

    Worker processes in a notebook on Windows and macOS use ``spawn`` and must re-import
    the notebook's code, which fails for functions defined in cells; there we use 0.
    On Linux, up to 2 workers overlap image decoding with training.
    """
    if sys.platform.startswith("win") or platform.system() == "Darwin":
        return 0
    return min(2, os.cpu_count() or 1)


def pick_device(preference: str = "auto") -> torch.device:
    """The device to train on: ``preference``, or for "auto" cuda, then mps, then cpu.

    >>> pick_device("cpu")
    device(type='cpu')
    """
    if preference != "auto":
        if preference.startswith("cuda") and not torch.cuda.is_available():
            raise SettingsError(
                f"device={preference!r} was asked for but CUDA is not available here. "
                f"Use {ENV_PREFIX}DEVICE=auto or cpu."
            )
        if preference == "mps" and not torch.backends.mps.is_available():
            raise SettingsError(
                f"device='mps' was asked for but Apple MPS is not available here. "
                f"Use {ENV_PREFIX}DEVICE=auto or cpu."
            )
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a run can be repeated.

    >>> seed_everything(0); a = torch.rand(1); seed_everything(0)
    >>> bool(a == torch.rand(1))
    True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def strict_warnings() -> None:
    """Turn deprecation warnings raised by torch and torchvision into errors.

    ``make test`` sets ``COURSE_STRICT_WARNINGS=1`` so that a lesson using a deprecated API
    (such as ``pretrained=True`` instead of the weights API) fails CI instead of rotting.

    >>> strict_warnings()
    >>> warnings.filters[0][0]
    'error'
    """
    torch_modules = r"torch(vision)?(\.|$)"
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("error", category=category, module=torch_modules)
    # torchvision reports `pretrained=True` and friends as a UserWarning saying "deprecated".
    warnings.filterwarnings(
        "error", message=".*deprecated", category=UserWarning, module=torch_modules
    )


def start_lesson(mode: str | None = None, **overrides: Any) -> Settings:
    """What the first code cell of every lesson calls: settings, seeds, and the mode line.

    >>> settings = start_lesson("smoke")  # doctest: +ELLIPSIS
    SMOKE RUN: ...
    """
    settings = get_settings(mode, **overrides)
    if os.environ.get(f"{ENV_PREFIX}STRICT_WARNINGS") == "1":
        strict_warnings()
    seed_everything(settings.seed)
    print(settings.banner())
    return settings
