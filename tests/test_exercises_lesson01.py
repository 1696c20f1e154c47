"""Lesson 01 exercises: the reference solutions pass, typical mistakes fail with their message,
and the untouched template counts as not attempted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coursekit.exercises import (
    ____,
    assert_fails,
    assert_not_attempted,
    assert_passes,
    core,
    lesson01,
)


@pytest.fixture(autouse=True)
def plain_text(monkeypatch):
    monkeypatch.setattr(core, "_in_ipython", lambda: False)


# ----------------------------------------------------------------------------- q1


def test_q1_solution_passes():
    def imagefolder_class_to_idx(folder_names):
        return {name: index for index, name in enumerate(sorted(folder_names))}

    assert_passes(lesson01.q1, imagefolder_class_to_idx)


def test_q1_numeric_sort_is_the_pitfall():
    def numeric(folder_names):
        ordered = sorted(folder_names, key=lambda n: int(n) if n.isdigit() else 0)
        return {name: index for index, name in enumerate(ordered)}

    assert_fails(lesson01.q1, numeric, message_contains="sorted the names as numbers")


def test_q1_unsorted_and_one_based_mistakes():
    def as_listed(folder_names):
        return {name: index for index, name in enumerate(folder_names)}

    def one_based(folder_names):
        return {name: index + 1 for index, name in enumerate(sorted(folder_names))}

    assert_fails(lesson01.q1, as_listed, message_contains="order they were listed")
    assert_fails(lesson01.q1, one_based, message_contains="start at 0")
    assert_fails(lesson01.q1, sorted, message_contains="return a dict")


def test_q1_blank_is_not_attempted():
    def imagefolder_class_to_idx(folder_names):
        return ____

    assert_not_attempted(lesson01.q1, imagefolder_class_to_idx)
    assert_not_attempted(lesson01.q1, ____)


# ----------------------------------------------------------------------------- q2


def reference_im_convert(tensor, mean, std):
    image = tensor.detach().cpu()
    image = image * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    return image.permute(1, 2, 0).clamp(0, 1).numpy()


def test_q2_solution_passes_as_tensor_or_numpy():
    assert_passes(lesson01.q2, reference_im_convert)

    def numpy_version(tensor, mean, std):
        image = tensor.numpy().transpose(1, 2, 0)
        return np.clip(image * np.array(std) + np.array(mean), 0, 1)

    assert_passes(lesson01.q2, numpy_version)


def test_q2_typical_mistakes():
    def channels_first(tensor, mean, std):
        return reference_im_convert(tensor, mean, std).transpose(2, 0, 1)

    def reshaped(tensor, mean, std):
        image = tensor * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
        return image.clamp(0, 1).reshape(tensor.shape[1], tensor.shape[2], 3)

    def normalizes_again(tensor, mean, std):
        image = (tensor - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        return image.permute(1, 2, 0).clamp(0, 1)

    def no_clip(tensor, mean, std):
        image = tensor * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
        return image.permute(1, 2, 0)

    def no_return(tensor, mean, std):
        reference_im_convert(tensor, mean, std)

    assert_fails(lesson01.q2, channels_first, message_contains="channels are still first")
    assert_fails(lesson01.q2, reshaped, message_contains="permute")
    assert_fails(lesson01.q2, normalizes_again, message_contains="applied Normalize again")
    assert_fails(lesson01.q2, no_clip, message_contains="outside [0, 1]")
    assert_fails(lesson01.q2, no_return, message_contains="returns None")


def test_q2_blank_is_not_attempted():
    def my_im_convert(tensor, mean, std):
        return ____

    assert_not_attempted(lesson01.q2, my_im_convert)


# ----------------------------------------------------------------------------- q3


def test_q3_solution_passes():
    def index_of(label_name, cat_to_name, class_to_idx):
        folder = next(f for f, name in cat_to_name.items() if name == label_name)
        return class_to_idx[folder]

    assert_passes(lesson01.q3, index_of)


def test_q3_index_is_not_the_folder_number():
    def minus_one(label_name, cat_to_name, class_to_idx):
        folder = next(f for f, name in cat_to_name.items() if name == label_name)
        return int(folder) - 1

    def folder_name(label_name, cat_to_name, class_to_idx):
        return next(f for f, name in cat_to_name.items() if name == label_name)

    def own_order(label_name, cat_to_name, class_to_idx):
        folder = next(f for f, name in cat_to_name.items() if name == label_name)
        return sorted(cat_to_name).index(folder)

    assert_fails(lesson01.q3, minus_one, message_contains="folder number minus one")
    assert_fails(lesson01.q3, folder_name, message_contains="look the folder up")
    assert_fails(lesson01.q3, own_order, message_contains="rebuilt the class order")


def test_q3_blank_is_not_attempted():
    def index_of(label_name, cat_to_name, class_to_idx):
        return ____

    assert_not_attempted(lesson01.q3, index_of)
