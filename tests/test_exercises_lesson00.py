"""Lesson 00's exercises: the reference answers pass, typical mistakes fail with a reason."""

from __future__ import annotations

import torch

from coursekit import get_settings
from coursekit.exercises import ____, assert_fails, assert_not_attempted, assert_passes
from coursekit.exercises import lesson00 as ex


def test_q1_settings():
    assert_passes(ex.q1, get_settings("smoke", epochs=3))
    assert_fails(ex.q1, get_settings("full", epochs=3), message_contains="run mode")
    assert_fails(ex.q1, get_settings("smoke"), message_contains="number of epochs")
    assert_fails(ex.q1, {"mode": "smoke", "epochs": 3}, message_contains="Settings object")
    assert_not_attempted(ex.q1, ____)


def good_choice():
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def mps_first():
    if torch.backends.mps.is_available():
        return torch.device("mps")
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def returns_strings():
    return "cuda" if torch.cuda.is_available() else "cpu"


def only_cpu():
    return torch.device("cpu")


def not_written_yet():
    return ____


def test_q2_choose_device():
    assert_passes(ex.q2, good_choice)
    assert_fails(ex.q2, mps_first, message_contains="prefer CUDA")
    assert_fails(ex.q2, returns_strings, message_contains="Return a torch.device")
    assert_fails(ex.q2, only_cpu, message_contains="CUDA on")
    assert_fails(
        ex.q2, good_choice(), message_contains="Pass your function itself (`choose_device`)"
    )
    assert_not_attempted(ex.q2, not_written_yet)


def test_q2_leaves_torch_untouched():
    before = torch.cuda.is_available()
    ex.q2.evaluate(good_choice)
    assert torch.cuda.is_available() is before


def test_q3_command():
    assert_passes(ex.q3, "python -m data_scripts get hymenoptera")
    assert_passes(ex.q3, "  Python -m data_scripts get hymenoptera ")
    assert_fails(ex.q3, "python -m data_scripts get flowers102", message_contains="flowers")
    assert_fails(ex.q3, "python -m data_scripts hymenoptera", message_contains="get")
    assert_not_attempted(ex.q3, ____)
