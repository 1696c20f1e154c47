"""The checkers of lesson 08 accept the solutions and reject the common mistakes."""

from __future__ import annotations

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


def fastest_setup(speeds):
    pairs = [(size, layout) for layout, row in speeds.items() for size in row]
    return max(pairs, key=lambda pair: speeds[pair[1]][pair[0]])


def fastest_by_loop(speeds):
    best, best_speed = None, -1.0
    for layout, row in speeds.items():
        for batch_size, images_per_second in row.items():
            if images_per_second > best_speed:
                best, best_speed = [batch_size, layout], images_per_second
    return best  # a list is a pair too


def fastest_with_min(speeds):
    # min of the negated speed is the max: correct, and must be accepted
    return min(
        ((size, layout) for layout, row in speeds.items() for size in row),
        key=lambda pair: -speeds[pair[1]][pair[0]],
    )


def test_q3_accepts_every_correct_way():
    assert_passes(ex.q3, fastest_setup)
    assert_passes(ex.q3, fastest_by_loop)
    assert_passes(ex.q3, fastest_with_min)
    assert_passes(
        ex.q3, lambda s: sorted((v, b, lay) for lay, r in s.items() for b, v in r.items())[-1][1:]
    )


def test_q3_rejects_the_largest_batch_one_layout_and_the_slowest():
    largest = lambda s: (max(s["channels-last"]), "channels-last")  # noqa: E731
    assert_fails(ex.q3, largest, message_contains="largest batch")
    only_nchw = lambda s: (max(s["NCHW"], key=s["NCHW"].get), "NCHW")  # noqa: E731
    assert_fails(ex.q3, only_nchw, message_contains="NCHW row only")
    slowest = lambda s: min(  # noqa: E731
        ((b, lay) for lay, r in s.items() for b in r), key=lambda p: s[p[1]][p[0]]
    )
    assert_fails(ex.q3, slowest, message_contains="SLOWEST")


def test_q3_rejects_a_reversed_pair_a_speed_and_a_wrong_pair():
    assert_fails(ex.q3, lambda s: fastest_setup(s)[::-1], message_contains="wrong order")
    assert_fails(
        ex.q3,
        lambda s: max(v for r in s.values() for v in r.values()),
        message_contains="should return a pair",
    )
    assert_fails(ex.q3, lambda s: (16, "NCHW"), message_contains="the fastest pair is")


def test_q3_blank_is_not_attempted():
    assert_not_attempted(ex.q3, ____)
    assert_not_attempted(ex.q3, lambda s: ____)
