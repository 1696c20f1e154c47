"""The checkers of lesson 08 accept the solutions and reject the common mistakes."""

from __future__ import annotations

import statistics

import torch
from torchvision import transforms

from coursekit import IMAGENET_MEAN, IMAGENET_STD, eval_transforms
from coursekit.exercises import ____, assert_fails, assert_not_attempted, assert_passes
from coursekit.exercises import lesson08 as ex

# ----------------------------------------------------------------------------- q1


def preprocess(image, image_size=64, resize_size=72):
    pipeline = transforms.Compose(
        [
            transforms.Resize(resize_size),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return pipeline(image)


def test_q1_accepts_the_solution_and_coursekits_pipeline():
    assert_passes(ex.q1, preprocess)
    assert_passes(
        ex.q1,
        lambda image, image_size, resize_size: eval_transforms(image_size, resize_size)(image),
    )


def test_q1_rejects_a_missing_normalize():
    def no_normalize(image, image_size=64, resize_size=72):
        steps = [
            transforms.Resize(resize_size),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
        ]
        return transforms.Compose(steps)(image)

    assert_fails(ex.q1, no_normalize, message_contains="Normalize")


def test_q1_rejects_bgr():
    assert_fails(
        ex.q1, lambda image, **sizes: preprocess(image, **sizes).flip(0), message_contains="BGR"
    )


def test_q1_rejects_a_squashing_resize():
    def squash(image, image_size=64, resize_size=72):
        squashed = transforms.Resize((resize_size, resize_size))(image)
        return preprocess(squashed, image_size, resize_size)

    assert_fails(ex.q1, squash, message_contains="squashes")


def test_q1_rejects_a_batch_and_fixed_sizes():
    assert_fails(
        ex.q1,
        lambda image, **sizes: preprocess(image, **sizes).unsqueeze(0),
        message_contains="ONE image",
    )
    assert_fails(ex.q1, lambda image, **sizes: preprocess(image), message_contains="arguments")


def test_q1_rejects_random_transforms():
    def augmented(image, image_size=64, resize_size=72):
        pipeline = transforms.Compose(
            [
                transforms.RandomResizedCrop(image_size),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )
        return pipeline(image)

    torch.manual_seed(0)
    assert_fails(ex.q1, augmented, message_contains="deterministic")


def test_q1_blank_is_not_attempted():
    assert_not_attempted(ex.q1, ____)

    def template(image, image_size=64, resize_size=72):
        return ____

    assert_not_attempted(ex.q1, template)


# ----------------------------------------------------------------------------- q2


def predict(model, batch):
    model = model.eval()
    with torch.inference_mode():
        logits = model(batch)
    return torch.softmax(logits, dim=1)


def test_q2_accepts_the_solution_and_no_grad():
    assert_passes(ex.q2, predict)

    def with_no_grad(model, batch):
        model.eval()
        with torch.no_grad():
            return model(batch).softmax(dim=1)

    assert_passes(ex.q2, with_no_grad)


def test_q2_rejects_train_mode():
    def buggy(model, batch):
        logits = model(batch)
        return torch.softmax(logits, dim=1)

    assert_fails(ex.q2, buggy, message_contains="model.eval()")

    def no_grad_only(model, batch):
        with torch.no_grad():
            return torch.softmax(model(batch), dim=1)

    assert_fails(ex.q2, no_grad_only, message_contains="TRAINING")


def test_q2_rejects_grad_recording():
    def eval_only(model, batch):
        model.eval()
        return torch.softmax(model(batch), dim=1)

    assert_fails(ex.q2, eval_only, message_contains="inference_mode")


def test_q2_names_model_eval_without_parentheses():
    def method_not_called(model, batch):
        model = model.eval
        with torch.inference_mode():
            logits = model(batch)
        return torch.softmax(logits, dim=1)

    assert_fails(ex.q2, method_not_called, message_contains="`model = model.eval()`")

    def statement_without_call(model, batch):
        model.eval  # noqa: B018 - the typo under test
        with torch.inference_mode():
            return torch.softmax(model(batch), dim=1)

    assert_fails(ex.q2, statement_without_call, message_contains="switches nothing")


def test_q2_names_no_grad_without_parentheses():
    def class_not_called(model, batch):
        model = model.eval()
        with torch.no_grad:
            logits = model(batch)
        return torch.softmax(logits, dim=1)

    assert_fails(ex.q2, class_not_called, message_contains="`with torch.inference_mode():`")


def test_q2_an_unrelated_type_error_keeps_the_plain_crash_message():
    def wrong_call(model, batch):
        model = model.eval()
        with torch.inference_mode():
            logits = model(batch, batch)
        return torch.softmax(logits, dim=1)

    assert_fails(ex.q2, wrong_call, message_contains="Your code raised `TypeError")


def test_q2_rejects_a_wrong_softmax_dimension():
    def dim0(model, batch):
        model.eval()
        with torch.no_grad():
            return torch.softmax(model(batch), dim=0)

    assert_fails(ex.q2, dim0, message_contains="dim=1")


def test_q2_blank_is_not_attempted():
    assert_not_attempted(ex.q2, ____)

    def template(model, batch):
        model = ____
        with ____:
            logits = model(batch)
        return torch.softmax(logits, dim=1)

    assert_not_attempted(ex.q2, template)


# ----------------------------------------------------------------------------- q3


def images_per_second(run_seconds, images_per_run):
    return images_per_run / statistics.median(run_seconds)


def test_q3_accepts_the_solution():
    assert_passes(ex.q3, images_per_second)
    assert_passes(ex.q3, lambda s, n: n / torch.tensor(s).median())


def test_q3_rejects_the_mean_the_min_and_the_inverse():
    assert_fails(ex.q3, lambda s, n: n / statistics.fmean(s), message_contains="MEAN")
    assert_fails(ex.q3, lambda s, n: n / min(s), message_contains="FASTEST")
    assert_fails(ex.q3, lambda s, n: statistics.median(s) / n, message_contains="seconds per image")
    assert_fails(ex.q3, lambda s, n: 1 / statistics.median(s), message_contains="runs per second")


def test_q3_blank_is_not_attempted():
    assert_not_attempted(ex.q3, ____)
    assert_not_attempted(ex.q3, lambda s, n: ____)
