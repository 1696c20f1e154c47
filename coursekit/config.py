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
import difflib
import math
import multiprocessing
import numbers
import os
import platform
import random
import sys
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

if typing.TYPE_CHECKING:
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
    #: Epochs for the second, unfrozen phase of fine-tuning (few: the features are already good).
    fine_tune_epochs: int = 3
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
    #: Pretrained weights of ``arch``: "DEFAULT" (the best version, or a cached one when the
    #: best cannot be downloaded) or a version such as "IMAGENET1K_V1".
    weights: str = "DEFAULT"
    #: "auto" picks cuda, then mps, then cpu.
    device: str = "auto"
    seed: int = 42
    #: Learning rate for training from scratch / for a new head.
    lr: float = 1e-3
    #: Lower learning rate for the whole network once unfrozen. Lesson 06's recipe: with 1e-4
    #: (and BatchNorm adapting) fine-tuning on ants/bees fell below the frozen head.
    fine_tune_lr: float = 1e-5
    #: The new head learns this many times faster than the backbone (discriminative LRs).
    head_lr_multiplier: float = 10.0
    #: StepLR: decay the LR by ``lr_gamma`` every ``lr_step_size`` epochs.
    lr_step_size: int = 7
    lr_gamma: float = 0.1
    #: StepLR of the shorter fine-tuning phase (its own optimizer, its own schedule).
    fine_tune_lr_step_size: int = 2
    #: DataLoader worker processes; see ``default_num_workers``.
    num_workers: int = 0
    #: Memory (MiB) each process may fill with photos a dataset has already decoded and
    #: resized, so that every epoch after the first skips that work; 0 turns it off.
    image_cache_mib: int = 1024
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

    @property
    def caveat(self) -> str:
        """What a lesson prints next to a result: nothing in a real run, a warning in a quick one.

        >>> Settings.for_mode("full").caveat
        ''
        """
        return "  (quick run on tiny data: this number cannot be read)" if self.is_smoke else ""

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
            f"{self.epochs} epochs, {self._device_note()}."
        )

    def _device_note(self) -> str:
        """The device training will use, or why the one asked for cannot be used here."""
        try:
            device = pick_device(self.device)
        except SettingsError:
            return (
                f"device {self.device} is NOT available here "
                f"(set {ENV_PREFIX}DEVICE=auto or cpu)"
            )
        return f"device {device}" + (" (auto)" if self.device == "auto" else "")


#: COURSE_* variables that are not settings: the run mode, strict warnings in CI, and the
#: opt-in of the end-to-end browser tests.
NON_SETTING_VARIABLES: frozenset[str] = frozenset(
    f"{ENV_PREFIX}{name}" for name in ("MODE", "STRICT_WARNINGS", "E2E")
)
_TYPE_NAMES = {
    int: "an integer",
    float: "a number",
    str: "text",
    Path: "a folder path",
    bool: "yes or no (1/0, true/false, yes/no, on/off)",
}
_BOOL_WORDS = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("0", "false", "no", "off"), False),
}


def _field_type(hint: Any) -> tuple[type, bool]:
    """The base type of a Settings field's type hint, and whether None is allowed.

    >>> _field_type(int | None), _field_type(Path), _field_type(Mode)
    ((<class 'int'>, True), (<class 'pathlib.Path'>, False), (<class 'str'>, False))
    """
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = typing.get_args(hint)
        optional = type(None) in members
        hint = next(member for member in members if member is not type(None))
    if typing.get_origin(hint) is Literal:  # e.g. Mode: its choices are text
        hint = type(typing.get_args(hint)[0])
    return hint, optional


def _parse(name: str, raw: str, hint: Any) -> Any:
    """Turn the text of an environment variable into the type of a Settings field.

    >>> _parse("train_per_class", "3", int | None), _parse("flag", "off", bool)
    (3, False)
    """
    base, optional = _field_type(hint)
    text = raw.strip()
    variable = f"{ENV_PREFIX}{name.upper()}"
    if optional and text.lower() in ("", "none", "all"):
        return None
    if base is Path:
        if not text:
            raise SettingsError(
                f"{variable} is set but empty. Set it to a folder, or unset it for the "
                f"default (for example: unset {variable})."
            )
        return Path(text).expanduser()
    try:
        if base is bool:
            return _BOOL_WORDS[text.lower()]
        if base in (int, float):
            return base(text)
    except (KeyError, ValueError):
        raise SettingsError(
            f"{variable}={raw!r} is not {_TYPE_NAMES[base]}. "
            f"Fix or unset it (for example: unset {variable})."
        ) from None
    return text


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """A keyword override as the type of its field: text is read like an environment variable.

    >>> _coerce("flag", True, bool), _coerce("data_root", "/tmp", Path)
    (True, PosixPath('/tmp'))
    """
    base, optional = _field_type(hint)
    if value is None and optional:
        return None
    if isinstance(value, str):
        return value if base is str else _parse(name, value, hint)
    if base is bool:
        fits = isinstance(value, bool)
    elif base in (int, float):
        kind = numbers.Integral if base is int else numbers.Real
        fits = isinstance(value, kind) and not isinstance(value, bool)
    else:  # text was handled above; a path is fine for a text or path setting
        fits = isinstance(value, os.PathLike)
    if not fits:
        raise SettingsError(
            f"Setting {name}={value!r} must be {_TYPE_NAMES[base]}"
            f"{' or None' if optional else ''}, not {type(value).__name__} "
            f"(check {name}=... or {ENV_PREFIX}{name.upper()})."
        )
    return value if base is bool else base(value)


def _setting_types() -> dict[str, Any]:
    """Each setting's real type hint (the annotations are text under postponed evaluation)."""
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in fields(Settings) if f.name != "mode"}


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, hint in _setting_types().items():
        key = f"{ENV_PREFIX}{name.upper()}"
        if key in environ:
            overrides[name] = _parse(name, environ[key], hint)
    return overrides


def _setting_variables() -> list[str]:
    return [f"{ENV_PREFIX}{f.name.upper()}" for f in fields(Settings) if f.name != "mode"]


def _warn_about_unknown_variables(environ: Mapping[str, str]) -> None:
    """One warning per COURSE_* variable that is no setting (a typo would be silently ignored)."""
    known = [*_setting_variables(), *sorted(NON_SETTING_VARIABLES)]
    for key in sorted(environ):
        if key.startswith(ENV_PREFIX) and key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            guess = f" Did you mean {close[0]}?" if close else ""
            warnings.warn(
                f"{key} is not a course setting, so it is ignored.{guess} "
                "(python -m coursekit settings lists them all.)",
                UserWarning,
                stacklevel=3,
            )


def _keyword_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    kinds = _setting_types()
    unknown = [name for name in overrides if name not in kinds]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(kinds), n=1)
        raise SettingsError(
            f"{unknown[0]!r} is not a setting"
            + (f": did you mean {close[0]!r}?" if close else ".")
            + f" The settings are: {', '.join(kinds)}."
        )
    return {name: _coerce(name, value, kinds[name]) for name, value in overrides.items()}


def get_settings(mode: str | None = None, **overrides: Any) -> Settings:
    """Settings for ``mode`` (default: ``$COURSE_MODE`` or "full"), env overrides applied.

    Keyword overrides win over the environment; text such as ``epochs="3"`` is read the way
    an environment variable is.

    >>> get_settings("smoke", epochs=2).epochs
    2
    """
    chosen = (mode or os.environ.get(f"{ENV_PREFIX}MODE") or "full").strip().lower()
    settings = Settings.for_mode(chosen)
    _warn_about_unknown_variables(os.environ)
    settings = dataclasses.replace(settings, **_env_overrides(os.environ))
    settings = dataclasses.replace(settings, **_keyword_overrides(overrides))
    _validate(settings)
    return settings


def _refuse(message: str, name: str) -> SettingsError:
    return SettingsError(f"{message} (check {ENV_PREFIX}{name.upper()}).")


#: The networks halve an image five times (VGG's pools, ResNet's strides): below this side
#: the last feature map has no pixel left, and a lesson would fail deep inside a conv.
MIN_IMAGE_SIZE = 32
#: Seeds every generator takes: NumPy's legacy seed is 32 bits, torch's at most 64.
MAX_SEED = 2**32 - 1


def _validate(s: Settings) -> None:
    at_least = {
        "image_size": 1,
        "resize_size": 1,
        "batch_size": 1,
        "epochs": 1,
        "fine_tune_epochs": 1,
        "lr_step_size": 1,
        "fine_tune_lr_step_size": 1,
        "top_k": 1,
        "gallery_size": 1,
        "timing_runs": 1,
        "warmup_runs": 0,
        "num_workers": 0,
        "image_cache_mib": 0,
    }
    for name, low in at_least.items():
        if getattr(s, name) < low:
            raise _refuse(f"Setting {name}={getattr(s, name)} must be at least {low}", name)
    if s.image_size < MIN_IMAGE_SIZE:
        raise _refuse(
            f"Setting image_size={s.image_size} is too small: the networks halve the image "
            f"five times, so it must be at least {MIN_IMAGE_SIZE} (64 for quick tries, 224 for "
            "the real lesson)",
            "image_size",
        )
    for name in ("seed", "split_seed"):
        if not 0 <= getattr(s, name) <= MAX_SEED:
            raise _refuse(
                f"Setting {name}={getattr(s, name)} must be a whole number from 0 to {MAX_SEED} "
                "(2**32 - 1), the seeds every random generator accepts",
                name,
            )
    for name in ("train_per_class", "valid_per_class"):
        value = getattr(s, name)
        if value is not None and value < 1:
            raise _refuse(f"Setting {name}={value} must be at least 1, or None for all", name)
    for name in ("lr", "fine_tune_lr", "head_lr_multiplier"):
        value = getattr(s, name)
        if not (math.isfinite(value) and value > 0):
            raise _refuse(f"Setting {name}={value} must be a number above 0", name)
    if not 0.0 < s.lr_gamma <= 1.0:
        raise _refuse(
            f"Setting lr_gamma={s.lr_gamma} must be above 0 and at most 1: StepLR multiplies "
            "the LR by it",
            "lr_gamma",
        )
    if s.resize_size < s.image_size:
        raise SettingsError(
            f"resize_size={s.resize_size} is smaller than image_size={s.image_size}: the centre "
            f"crop would not fit. Set {ENV_PREFIX}RESIZE_SIZE to at least {s.image_size}."
        )
    if not 0.0 < s.validation_split < 1.0:
        raise _refuse(
            f"validation_split={s.validation_split} must be between 0 and 1", "validation_split"
        )
    if not s.arch.strip():
        raise _refuse("Setting arch is empty: name a torchvision model such as resnet18", "arch")
    _check_weights(s.arch, s.weights)
    if s.device not in ("auto", "cpu", "cuda", "mps") and not s.device.startswith("cuda:"):
        raise _refuse(
            f"device={s.device!r} is not known. Use auto, cpu, cuda, cuda:N or mps", "device"
        )


def _weights_versions(arch: str) -> list[str] | None:
    """The weights versions torchvision has for ``arch``, or None when it knows no such model.

    >>> _weights_versions("resnet18")
    ['IMAGENET1K_V1', 'DEFAULT']
    """
    import torchvision  # here, not at the top: most settings never need it

    try:
        return list(torchvision.models.get_model_weights(arch).__members__)
    except (KeyError, ValueError):
        return None


def _check_weights(arch: str, weights: str) -> None:
    """Refuse a weights version ``arch`` does not have, naming the ones it has."""
    versions = _weights_versions(arch.strip())
    if versions is None:  # an unknown arch: models.pretrained names the fix for that
        return
    member = weights.strip().rsplit(".", 1)[-1]  # "ResNet18_Weights.IMAGENET1K_V1" works too
    if member not in versions:
        raise _refuse(
            f"Setting weights={weights!r} is not a weights version of {arch}. Choose one of: "
            f"{', '.join(versions)}",
            "weights",
        )


def describe_overrides() -> str:
    """The environment variables that override settings, with the lessons' defaults.

    >>> describe_overrides().splitlines()[0]
    'COURSE_IMAGE_SIZE (default: 224)'
    """
    full = Settings.for_mode("full")
    rows = []
    for f in fields(Settings):
        if f.name != "mode":
            rows.append(f"{ENV_PREFIX}{f.name.upper()} (default: {getattr(full, f.name)})")
    return "\n".join(rows)


def default_num_workers() -> int:
    """DataLoader workers that are safe and pay off here: up to 2 with ``fork`` and 3+ cores.

    A worker started with ``spawn`` or ``forkserver`` (Windows, macOS, Linux from Python
    3.14) must re-import the code it runs, which fails for functions defined in notebook
    cells; a ``fork``-ed worker is a copy of the notebook's process. Workers overlap image
    decoding with training only on cores the training threads leave free: on 2 cores they
    take time from those threads and start again every epoch: a 224 px epoch on a 2-core CPU
    took 1.3-1.6x the compute alone with 2 workers, about 1x with none (bench/fit_vs_bound.py
    measures it).

    >>> default_num_workers() in (0, 1, 2)
    True
    """
    if _start_method() != "fork":
        return 0
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(2, cores // 2)


def _start_method() -> str:
    """The multiprocessing start method DataLoader workers will use here."""
    if sys.platform.startswith("win") or platform.system() == "Darwin":
        return "spawn"  # the default there, whatever has been set in this process
    return multiprocessing.get_start_method(allow_none=True) or (
        multiprocessing.get_context().get_start_method()
    )


def pick_device(preference: str = "auto") -> torch.device:
    """The device to train on: ``preference``, or for "auto" cuda, then mps, then cpu.

    >>> pick_device("cpu")
    device(type='cpu')
    """
    import torch  # here: `python -m data_scripts` reads settings without loading torch

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

    >>> import torch; seed_everything(0); a = torch.rand(1); seed_everything(0)
    >>> bool(a == torch.rand(1))
    True
    """
    import torch  # here: `python -m data_scripts` reads settings without loading torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


#: The start of a deprecation message about torch or torchvision, from whatever module it is
#: reported: torch often blames the CALLER's line (a lesson's cell), not its own module.
_TORCH_DEPRECATION_MESSAGE = r"(?s)(?=.*(torch|\bnn\.|\btensors?\b)).*(deprecat|will be removed)"


def strict_warnings() -> None:
    """Turn deprecation warnings of torch and torchvision into errors.

    ``make test`` sets ``COURSE_STRICT_WARNINGS=1`` so that a lesson using a deprecated API
    (such as ``pretrained=True`` instead of the weights API, or ``torch.cuda.amp.autocast``)
    fails CI instead of rotting. A warning counts when torch's modules raise it, or when its
    message names torch, ``nn.`` or tensors and says "deprecated" or "will be removed";
    other libraries' deprecations (matplotlib, Jupyter) stay warnings. pyproject.toml's
    ``filterwarnings`` applies the same rules to the tests.

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
    for category in (DeprecationWarning, FutureWarning, UserWarning):
        warnings.filterwarnings("error", message=_TORCH_DEPRECATION_MESSAGE, category=category)


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
