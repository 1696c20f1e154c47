"""Lesson 00's exercises: the reference answers pass, typical mistakes fail with a reason."""

from __future__ import annotations

from dataclasses import astuple, fields
from pathlib import Path

import torch

from coursekit import DatasetStatus, dataset_status, get_settings
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


def missing_names(statuses):
    return [status.name for status in statuses if not status.present]


def test_q3_missing_datasets_passes_in_several_spellings():
    assert_passes(ex.q3, missing_names)
    assert_passes(ex.q3, lambda statuses: (s.name for s in statuses if s.present is False))
    assert_passes(ex.q3, lambda statuses: [s.name for s in statuses if "missing" in str(s)])


def test_q3_stand_in_matches_the_real_status():
    """The checker's made-up statuses must look like what ck.dataset_status returns."""
    assert [f.name for f in fields(ex._Status)] == [f.name for f in fields(DatasetStatus)]
    for present, word in ((True, "present"), (False, "missing")):
        real = DatasetStatus(
            "hymenoptera", Path("data/hymenoptera"), present, 120 * present,
            "python -m data_scripts get hymenoptera",
        )  # fmt: skip
        stand_in = ex._Status(*astuple(real))
        assert word in str(real) and word in str(stand_in)
    statuses = dataset_status(get_settings("smoke"))
    assert missing_names(statuses) == [s.name for s in statuses if not s.present]


def test_q3_typical_mistakes():
    assert_fails(
        ex.q3,
        lambda statuses: [s.name for s in statuses if s.present],
        message_contains="ARE present",
    )
    assert_fails(ex.q3, lambda statuses: [s.name for s in statuses], message_contains="every")
    assert_fails(
        ex.q3,
        lambda statuses: [s for s in statuses if not s.present],
        message_contains="status objects",
    )
    assert_fails(
        ex.q3,
        lambda statuses: [s.fetch_command for s in statuses if not s.present],
        message_contains="fetch commands",
    )
    assert_fails(ex.q3, lambda statuses: ["hymenoptera"], message_contains="use its argument")
    assert_fails(
        ex.q3,
        lambda statuses: [s.name for s in statuses if s.present == "missing"],
        message_contains="should be ['hymenoptera'], but it is []",
    )
    assert_fails(
        ex.q3,
        lambda statuses: ", ".join(s.name for s in statuses if not s.present),
        message_contains="string",
    )
    assert_fails(ex.q3, lambda statuses: None, message_contains="returns None")

    def first_missing_only(statuses):
        for status in statuses:
            if not status.present:
                return [status.name]
        return []

    assert_fails(ex.q3, first_missing_only, message_contains="the missing datasets")
    assert_fails(
        ex.q3,
        lambda statuses: missing_names(statuses) * 2,
        message_contains="appear twice",
    )
    assert_fails(
        ex.q3, missing_names(dataset_status(get_settings("smoke"))), message_contains="function"
    )


def test_q3_blank_is_not_attempted():
    def missing_datasets(statuses):
        return ____

    assert_not_attempted(ex.q3, missing_datasets)
    assert_not_attempted(ex.q3, ____)
