"""Run modes and settings: the single source of every size a lesson uses."""

from __future__ import annotations

import random
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _pytest.config import parse_warning_filter
from matplotlib import MatplotlibDeprecationWarning

from coursekit import config
from coursekit.config import Settings, SettingsError, get_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("COURSE_"):
            monkeypatch.delenv(key)


def test_default_mode_is_full():
    assert get_settings().mode == "full"
    assert get_settings().image_size == 224


def test_smoke_mode_is_smaller_in_every_size():
    smoke, full = Settings.for_mode("smoke"), Settings.for_mode("full")
    for name in ("image_size", "resize_size", "batch_size", "epochs", "fine_tune_epochs"):
        assert getattr(smoke, name) <= getattr(full, name), name
    assert smoke.image_size < full.image_size
    assert smoke.train_per_class is not None and full.train_per_class is None
    assert smoke.dataset == "synthetic" and full.dataset is None


def test_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "smoke")
    assert get_settings().is_smoke
    assert "SMOKE RUN" in get_settings().banner()
    assert "SMOKE" not in get_settings("full").banner()


def test_unknown_mode_names_the_variable_and_the_choices():
    with pytest.raises(SettingsError, match=r"COURSE_MODE='fast'.*smoke, full"):
        get_settings("fast")


def test_environment_overrides_are_typed(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_EPOCHS", "3")
    monkeypatch.setenv("COURSE_LR", "0.05")
    monkeypatch.setenv("COURSE_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("COURSE_TRAIN_PER_CLASS", "all")
    monkeypatch.setenv("COURSE_ARCH", "vgg11")
    s = get_settings("smoke")
    assert s.epochs == 3 and isinstance(s.epochs, int)
    assert s.lr == pytest.approx(0.05)
    assert s.data_root == Path(tmp_path)
    assert s.train_per_class is None
    assert s.arch == "vgg11"


def test_keyword_overrides_win_over_environment(monkeypatch):
    monkeypatch.setenv("COURSE_EPOCHS", "3")
    assert get_settings("full", epochs=7).epochs == 7


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("COURSE_EPOCHS", "ten", "COURSE_EPOCHS='ten' is not an integer"),
        ("COURSE_LR", "fast", "COURSE_LR='fast' is not a number"),
        ("COURSE_BATCH_SIZE", "0", "batch_size=0 must be at least 1"),
        ("COURSE_DEVICE", "tpu", "device='tpu' is not known"),
        ("COURSE_VALIDATION_SPLIT", "1.5", "validation_split=1.5"),
        ("COURSE_RESIZE_SIZE", "100", "resize_size=100 is smaller than image_size=224"),
        ("COURSE_NUM_WORKERS", "-1", "num_workers=-1 must be at least 0"),
        ("COURSE_TRAIN_PER_CLASS", "0", "train_per_class=0 must be at least 1, or None"),
        ("COURSE_VALID_PER_CLASS", "-2", "valid_per_class=-2 must be at least 1, or None"),
        ("COURSE_TOP_K", "0", "top_k=0 must be at least 1"),
        ("COURSE_GALLERY_SIZE", "0", "gallery_size=0 must be at least 1"),
        ("COURSE_TIMING_RUNS", "0", "timing_runs=0 must be at least 1"),
        ("COURSE_WARMUP_RUNS", "-1", "warmup_runs=-1 must be at least 0"),
        ("COURSE_IMAGE_CACHE_MIB", "-1", "image_cache_mib=-1 must be at least 0"),
        ("COURSE_IMAGE_CACHE_MIB", "1.5", "COURSE_IMAGE_CACHE_MIB='1.5' is not an integer"),
        ("COURSE_LR", "0", "lr=0.0 must be a number above 0"),
        ("COURSE_LR", "nan", "lr=nan must be a number above 0"),
        ("COURSE_FINE_TUNE_LR", "-1e-4", "fine_tune_lr=-0.0001 must be a number above 0"),
        ("COURSE_HEAD_LR_MULTIPLIER", "0", "head_lr_multiplier=0.0 must be a number above 0"),
        ("COURSE_LR_GAMMA", "0", "lr_gamma=0.0 must be above 0 and at most 1"),
        ("COURSE_LR_GAMMA", "1.5", "lr_gamma=1.5 must be above 0 and at most 1"),
        ("COURSE_VALIDATION_SPLIT", "0", "validation_split=0.0 must be between 0 and 1"),
        ("COURSE_ARCH", " ", "arch is empty"),
        ("COURSE_DATA_ROOT", "", "COURSE_DATA_ROOT is set but empty"),
        ("COURSE_RUNS_DIR", "  ", "COURSE_RUNS_DIR is set but empty"),
    ],
)
def test_bad_values_name_the_setting(monkeypatch, key, value, needle):
    monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        get_settings("full")
    assert needle in str(info.value) and key in str(info.value)


def test_describe_overrides_lists_every_field():
    text = config.describe_overrides()
    for field in ("COURSE_IMAGE_SIZE", "COURSE_EPOCHS", "COURSE_DATA_ROOT"):
        assert field in text
    assert "smoke" not in text  # lesson 00 prints it: the run mode is the course's machinery


def test_pick_device_auto_on_this_machine_matches_torch():
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert config.pick_device("auto").type == expected
    assert config.pick_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_missing_cuda_says_what_to_do():
    with pytest.raises(SettingsError, match="COURSE_DEVICE=auto"):
        config.pick_device("cuda")


def test_seed_everything_repeats_all_generators():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    config.seed_everything(7)
    first = draw()
    config.seed_everything(7)
    assert draw() == first
    config.seed_everything(8)
    assert draw() != first


def test_num_workers_default_is_safe_for_the_platform(monkeypatch):
    monkeypatch.setattr(config.sys, "platform", "win32")
    assert config.default_num_workers() == 0
    monkeypatch.setattr(config.sys, "platform", "linux")
    monkeypatch.setattr(config.platform, "system", lambda: "Darwin")
    assert config.default_num_workers() == 0
    monkeypatch.setattr(config.platform, "system", lambda: "Linux")
    monkeypatch.setattr(config.multiprocessing, "get_start_method", lambda allow_none: "fork")
    # Workers only where the training threads leave cores free (bench/fit_vs_bound.py).
    for cores, workers in ((1, 0), (2, 0), (3, 1), (4, 2), (64, 2)):
        monkeypatch.setattr(config.os, "cpu_count", lambda cores=cores: cores)
        assert config.default_num_workers() == workers
    # Linux from Python 3.14 starts workers with forkserver: cell-defined code breaks there too.
    monkeypatch.setattr(
        config.multiprocessing, "get_start_method", lambda allow_none: "forkserver"
    )
    assert config.default_num_workers() == 0


def test_start_lesson_prints_one_line_and_seeds(capsys):
    settings = config.start_lesson("smoke")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("SMOKE RUN")
    assert torch.initial_seed() == settings.seed


def test_strict_warnings_turns_torch_deprecations_into_errors(monkeypatch):
    monkeypatch.setenv("COURSE_STRICT_WARNINGS", "1")
    import torchvision

    with warnings.catch_warnings():
        warnings.resetwarnings()  # only the filters start_lesson installs count here
        config.start_lesson("smoke")
        with pytest.raises(UserWarning, match="deprecated"):
            torchvision.models.resnet18(pretrained=False)
        torchvision.models.resnet18(weights=None)  # the weights API stays quiet


# --------------------------------------------------------------------------- strict warnings


def third_party_deprecation(module: str, category: type[Warning], message: str) -> None:
    """A deprecation warning that ``module`` (not torch) reports against its own line."""
    warnings.warn_explicit(message, category, f"{module.replace('.', '/')}.py", 1, module=module)


#: Deprecated torch calls that torch reports against the CALLER's line (this test file).
TORCH_DEPRECATIONS = {
    "cuda-amp-autocast": (FutureWarning, lambda: torch.cuda.amp.autocast(enabled=False)),
    "F.upsample": (UserWarning, lambda: F.upsample(torch.zeros(1, 1, 2, 2), scale_factor=2)),
    "torch.range": (UserWarning, lambda: torch.range(1, 3)),
}
OTHER_DEPRECATIONS = {
    "matplotlib": (
        "matplotlib.cbook",
        MatplotlibDeprecationWarning,
        "The foo function was deprecated in Matplotlib 3.9 and will be removed in 3.11.",
    ),
    "jupyter": ("jupyter_client.session", DeprecationWarning, "Session.key is deprecated"),
}


def install_filters(how: str, monkeypatch) -> None:
    """The strict filters of a lesson (start_lesson in CI) or of pytest (pyproject.toml)."""
    warnings.resetwarnings()  # only the filters under test count
    warnings.simplefilter("always", append=True)  # what no filter matches is shown, every time
    if how == "start_lesson":
        monkeypatch.setenv("COURSE_STRICT_WARNINGS", "1")
        config.start_lesson("smoke")
        return
    ini = tomllib.loads((config.REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for entry in ini["tool"]["pytest"]["ini_options"]["filterwarnings"]:
        warnings.filterwarnings(*parse_warning_filter(entry, escape=False))  # as pytest does


@pytest.mark.parametrize("how", ["start_lesson", "pyproject"])
@pytest.mark.parametrize("call", TORCH_DEPRECATIONS)
def test_torch_deprecations_reported_at_the_callers_line_are_errors(monkeypatch, how, call):
    category, deprecated_call = TORCH_DEPRECATIONS[call]
    with warnings.catch_warnings():
        install_filters(how, monkeypatch)
        with pytest.raises(category, match="deprecated"):
            deprecated_call()


@pytest.mark.parametrize("how", ["start_lesson", "pyproject"])
@pytest.mark.parametrize("library", OTHER_DEPRECATIONS)
def test_other_libraries_deprecations_stay_warnings(monkeypatch, how, library):
    module, category, message = OTHER_DEPRECATIONS[library]
    with warnings.catch_warnings(record=True) as caught:
        install_filters(how, monkeypatch)
        third_party_deprecation(module, category, message)
    assert [(type(w.message), str(w.message)) for w in caught] == [(category, message)]


def test_pyproject_uses_the_same_message_pattern_as_strict_warnings():
    ini = (config.REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for category in ("DeprecationWarning", "FutureWarning", "UserWarning"):
        assert f"'error:{config._TORCH_DEPRECATION_MESSAGE}:{category}'" in ini


# --------------------------------------------------------------------------- overrides and ranges


def test_keyword_overrides_given_as_text_are_read_like_environment_variables(tmp_path):
    s = get_settings("smoke", epochs="3", lr="0.5", data_root=str(tmp_path), train_per_class="all")
    assert (s.epochs, s.lr, s.data_root, s.train_per_class) == (3, 0.5, tmp_path, None)
    assert isinstance(s.epochs, int) and isinstance(s.lr, float)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"epochs": "three"}, "COURSE_EPOCHS='three' is not an integer"),
        ({"epochs": 2.5}, "epochs=2.5 must be an integer, not float"),
        ({"batch_size": True}, "batch_size=True must be an integer, not bool"),
        ({"arch": 18}, "arch=18 must be text, not int"),
        ({"data_root": 3}, "data_root=3 must be a folder path, not int"),
        ({"epoch": 3}, "'epoch' is not a setting: did you mean 'epochs'?"),
    ],
)
def test_keyword_overrides_of_the_wrong_type_name_the_setting(overrides, needle):
    with pytest.raises(SettingsError) as info:
        get_settings("smoke", **overrides)
    assert needle in str(info.value)


def test_edge_values_that_are_allowed():
    s = get_settings(
        "full", num_workers=0, warmup_runs=0, lr_gamma=1, valid_per_class=None, image_cache_mib=0
    )
    assert (s.num_workers, s.warmup_runs, s.lr_gamma, s.valid_per_class) == (0, 0, 1.0, None)
    assert s.image_cache_mib == 0  # the cache off


def test_an_unknown_course_variable_is_warned_about_with_the_close_match(monkeypatch):
    monkeypatch.setenv("COURSE_EPOCH", "3")
    with pytest.warns(UserWarning, match="COURSE_EPOCH is not a course setting") as caught:
        settings = get_settings("smoke")
    assert settings.epochs == Settings.for_mode("smoke").epochs  # the typo changes nothing
    assert len(caught) == 1 and "Did you mean COURSE_EPOCHS?" in str(caught[0].message)
    assert "\n" not in str(caught[0].message)


def test_course_variables_that_are_not_settings_are_not_warned_about(monkeypatch):
    for key in config.NON_SETTING_VARIABLES:
        monkeypatch.setenv(key, "smoke" if key == "COURSE_MODE" else "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_settings()


# --------------------------------------------------------------------------- the banner


def test_full_banner_names_the_device_auto_picks():
    banner = get_settings("full").banner()
    assert f"device {config.pick_device('auto')} (auto)" in banner and "device auto" not in banner
    assert "device cpu." in get_settings("full", device="cpu").banner()


def test_full_banner_says_when_the_chosen_device_is_missing(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    banner = get_settings("full", device="cuda").banner()
    assert "device cuda is NOT available here" in banner and "COURSE_DEVICE=auto" in banner


# ----------------------------------------------------------------- parsing from real types


def test_setting_types_are_real_types_not_text():
    from coursekit.config import _setting_types

    kinds = _setting_types()
    assert kinds["train_per_class"] == (int | None)
    assert kinds["data_root"] is Path
    assert kinds["lr"] is float


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", False), ("false", False), ("Off", False), ("1", True), ("yes", True), (" on ", True)],
)
def test_a_bool_setting_reads_zero_as_false(raw, expected):
    from coursekit.config import _parse

    assert _parse("flag", raw, bool) is expected


def test_a_bool_setting_refuses_other_text_naming_the_variable():
    from coursekit.config import SettingsError, _parse

    with pytest.raises(SettingsError, match="COURSE_FLAG='maybe' is not yes or no"):
        _parse("flag", "maybe", bool)


def test_optional_int_comes_back_as_an_int_or_none():
    import typing

    from coursekit.config import _parse

    assert _parse("cap", "7", typing.Optional[int]) == 7  # noqa: UP045 (the old spelling too)
    assert isinstance(_parse("cap", "7", int | None), int)
    assert _parse("cap", "none", int | None) is None


def test_a_bool_keyword_override_is_checked_not_a_key_error():
    from coursekit.config import SettingsError, _coerce

    assert _coerce("flag", False, bool) is False
    assert _coerce("flag", "yes", bool) is True
    with pytest.raises(SettingsError, match="flag=1 must be yes or no"):
        _coerce("flag", 1, bool)


def test_path_settings_accept_text_and_paths(tmp_path):
    from coursekit.config import _coerce, get_settings

    assert _coerce("data_root", str(tmp_path), Path) == tmp_path
    assert get_settings("smoke", data_root=tmp_path).data_root == tmp_path
    assert get_settings("smoke", train_per_class="none").train_per_class is None
