"""Lesson 02 exercises: the reference solutions pass, typical mistakes fail with their message,
and the untouched template counts as not attempted."""

from __future__ import annotations

import pytest
import torch
from torchvision import transforms

from coursekit import IMAGENET_MEAN, IMAGENET_STD
from coursekit.exercises import (
    ____,
    assert_fails,
    assert_not_attempted,
    assert_passes,
    core,
    lesson02,
)


@pytest.fixture(autouse=True)
def plain_text(monkeypatch):
    monkeypatch.setattr(core, "_in_ipython", lambda: False)


def to_normalized_tensor():
    return [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


# ----------------------------------------------------------------------------- q1


def test_q1_solution_passes():
    def make_eval_pipeline(image_size, resize_size):
        return transforms.Compose(
            [
                transforms.Resize(resize_size),
                transforms.CenterCrop(image_size),
                *to_normalized_tensor(),
            ]
        )

    assert_passes(lesson02.q1, make_eval_pipeline)


def test_q1_the_course_helper_passes_too():
    from coursekit import eval_transforms

    assert_passes(lesson02.q1, eval_transforms)


def test_q1_augmentation_in_eval_is_caught():
    def augmented(image_size, resize_size):
        return transforms.Compose(
            [
                transforms.Resize(resize_size),
                transforms.RandomRotation(45),
                transforms.CenterCrop(image_size),
                *to_normalized_tensor(),
            ]
        )

    before = torch.get_rng_state()
    assert_fails(lesson02.q1, augmented, message_contains="random transform")
    assert torch.equal(before, torch.get_rng_state()), "the check must not move the learner's RNG"


def test_q1_squash_missing_crop_and_missing_normalize():
    def squashed(image_size, resize_size):
        return transforms.Compose(
            [transforms.Resize((image_size, image_size)), *to_normalized_tensor()]
        )

    def no_crop(image_size, resize_size):
        return transforms.Compose([transforms.Resize(resize_size), *to_normalized_tensor()])

    def not_normalized(image_size, resize_size):
        return transforms.Compose(
            [
                transforms.Resize(resize_size),
                transforms.CenterCrop(image_size),
                transforms.ToTensor(),
            ]
        )

    def no_tensor(image_size, resize_size):
        return transforms.Compose(
            [transforms.Resize(resize_size), transforms.CenterCrop(image_size)]
        )

    assert_fails(lesson02.q1, squashed, message_contains="squashes")
    assert_fails(lesson02.q1, no_crop, message_contains="not cropped")
    assert_fails(lesson02.q1, not_normalized, message_contains="not normalized")
    assert_fails(lesson02.q1, no_tensor, message_contains="not a tensor")


def test_q1_swapped_sizes_are_named():
    def swapped_inside(image_size, resize_size):
        return transforms.Compose(
            [
                transforms.Resize(image_size),
                transforms.CenterCrop(resize_size),
                *to_normalized_tensor(),
            ]
        )

    def swapped_parameters(resize_size, image_size):  # right body, parameters in the wrong order
        return transforms.Compose(
            [
                transforms.Resize(resize_size),
                transforms.CenterCrop(image_size),
                *to_normalized_tensor(),
            ]
        )

    def crops_resize_size(image_size, resize_size):
        return transforms.Compose(
            [
                transforms.Resize(resize_size),
                transforms.CenterCrop(resize_size),
                *to_normalized_tensor(),
            ]
        )

    assert_fails(lesson02.q1, swapped_inside, message_contains="are swapped")
    assert_fails(lesson02.q1, swapped_parameters, message_contains="are swapped")
    assert_fails(lesson02.q1, crops_resize_size, message_contains="CenterCrop(image_size)")


def test_q1_blank_is_not_attempted():
    def make_eval_pipeline(image_size, resize_size):
        return ____

    assert_not_attempted(lesson02.q1, make_eval_pipeline)


# ----------------------------------------------------------------------------- q2


def test_q2_solution_passes_in_any_spelling():
    assert_passes(
        lesson02.q2,
        {
            "RandomRotation",
            "RandomResizedCrop",
            "RandomHorizontalFlip",
            "ColorJitter",
            "RandomGrayscale",
        },
    )
    assert_passes(
        lesson02.q2,
        [
            "transforms.RandomRotation",
            transforms.RandomResizedCrop,
            transforms.RandomHorizontalFlip(),
            "ColorJitter()",
            "RandomGrayscale",
        ],
    )


def test_q2_typical_mistakes():
    only_random_names = {
        "RandomRotation",
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "RandomGrayscale",
    }
    assert_fails(lesson02.q2, only_random_names, message_contains="ColorJitter is missing")
    assert_fails(
        lesson02.q2,
        only_random_names | {"ColorJitter", "Normalize"},
        message_contains="Keep Normalize",
    )
    assert_fails(lesson02.q2, {"RandomFlip"}, message_contains="not one of the names")
    assert_fails(lesson02.q2, "RandomRotation", message_contains="set (or list)")


def test_q2_blank_is_not_attempted():
    assert_not_attempted(lesson02.q2, ____)
    assert_not_attempted(lesson02.q2, {"RandomRotation", ____})


# ----------------------------------------------------------------------------- q3


def test_q3_solution_passes():
    def channel_mean(batches):
        total = torch.zeros(3, dtype=torch.float64)
        pixels = 0
        for batch in batches:
            total += batch.sum(dim=(0, 2, 3)).double()
            pixels += batch.shape[0] * batch.shape[2] * batch.shape[3]
        return total / pixels

    assert_passes(lesson02.q3, channel_mean)
    assert_passes(lesson02.q3, lambda batches: torch.cat(batches).mean(dim=(0, 2, 3)).tolist())


def test_q3_mean_of_batch_means_is_the_trap():
    def mean_of_means(batches):
        return torch.stack([batch.mean(dim=(0, 2, 3)) for batch in batches]).mean(0)

    assert_fails(lesson02.q3, mean_of_means, message_contains="averaged the batch means")


def test_q3_wrong_reductions():
    def everything(batches):
        return torch.cat(batches).mean()

    def per_image(batches):
        return torch.cat(batches).mean(dim=(1, 2, 3))

    def divided_by_images(batches):
        images = torch.cat(batches)
        return images.sum(dim=(0, 2, 3)) / images.shape[0]

    assert_fails(lesson02.q3, everything, message_contains="one number")
    assert_fails(lesson02.q3, per_image, message_contains="shape (3,)")
    assert_fails(lesson02.q3, divided_by_images, message_contains="number of pixels")


def test_q3_blank_is_not_attempted():
    def channel_mean(batches):
        return ____

    assert_not_attempted(lesson02.q3, channel_mean)
