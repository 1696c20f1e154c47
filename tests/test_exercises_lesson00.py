"""Lesson 00's exercises: the reference answers pass, typical mistakes fail with a reason."""

from __future__ import annotations

from dataclasses import astuple, fields
from pathlib import Path

import torch
import torchvision

from coursekit import DatasetStatus, dataset_status, get_settings
from coursekit.exercises import ____, assert_fails, assert_not_attempted, assert_passes
from coursekit.exercises import lesson00 as ex


def test_q1_weights_api_passes_in_every_spelling():
    weights_list = torchvision.models.ResNet18_Weights
    for answer in (weights_list.DEFAULT, weights_list.IMAGENET1K_V1, "DEFAULT", "IMAGENET1K_V1"):
        assert_passes(ex.q1, answer)


def test_q1_weights_api_typical_mistakes():
    assert_fails(ex.q1, True, message_contains="old `pretrained=`")
    assert_fails(ex.q1, None, message_contains="random weights")
    assert_fails(ex.q1, torchvision.models.ResNet18_Weights, message_contains="pick one entry")
    assert_fails(
        ex.q1, torchvision.models.ResNet50_Weights.DEFAULT, message_contains="ResNet50_Weights"
    )
    assert_fails(ex.q1, "resnet18", message_contains="is neither")
    assert_fails(ex.q1, torchvision.models.resnet18, message_contains="is a function")
    assert_fails(
        ex.q1, torchvision.models.resnet18(weights=None), message_contains="built the network"
    )
    assert_not_attempted(ex.q1, ____)


def to_device(images, labels, device):
    return images.to(device), labels.to(device)


def forgets_to_keep_the_copies(images, labels, device):
    images.to(device)
    labels.to(device)
    return images, labels


def moves_only_images(images, labels, device):
    return images.to(device), labels


def moves_only_labels(images, labels, device):
    return images, labels.to(device)


def uses_cuda(images, labels, device):
    return images.cuda(), labels.cuda()


def test_q2_to_device():
    assert_passes(ex.q2, to_device)
    assert_passes(ex.q2, lambda images, labels, device: [images.to(device), labels.to(device)])
    assert_fails(ex.q2, forgets_to_keep_the_copies, message_contains="returns a moved copy")
    assert_fails(ex.q2, moves_only_images, message_contains="labels are still on the CPU")
    assert_fails(ex.q2, moves_only_labels, message_contains="images are still on the CPU")
    # Without a GPU .cuda() raises; with one it lands on cuda, not on the device given.
    assert_fails(ex.q2, uses_cuda, message_contains="`.to(device)`")
    assert_fails(
        ex.q2, lambda images, labels, device: images.to(device), message_contains="one tensor"
    )
    assert_fails(
        ex.q2,
        lambda images, labels, device: (labels.to(device), images.to(device)),
        message_contains="other way round",
    )
    assert_fails(
        ex.q2,
        lambda images, labels, device: (images.to(device), labels.float().to(device)),
        message_contains="dtype",
    )
    assert_fails(
        ex.q2,
        lambda images, labels, device: (str(device), str(device)),
        message_contains="tensors themselves",
    )
    assert_fails(
        ex.q2, to_device(torch.zeros(1), torch.zeros(1), "cpu"), message_contains="function itself"
    )

    def not_written_yet(images, labels, device):
        return ____

    assert_not_attempted(ex.q2, not_written_yet)


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
