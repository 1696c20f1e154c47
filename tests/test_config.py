"""Run modes and settings: the single source of every size a lesson uses."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

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
    ],
)
def test_bad_values_name_the_setting(monkeypatch, key, value, needle):
    monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        get_settings("full")
    assert needle in str(info.value)


def test_describe_overrides_lists_every_field():
    text = config.describe_overrides()
    for field in ("COURSE_MODE", "COURSE_IMAGE_SIZE", "COURSE_EPOCHS", "COURSE_DATA_ROOT"):
        assert field in text


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
    assert 1 <= config.default_num_workers() <= 2


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
