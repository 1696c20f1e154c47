"""Exercises of lesson 02 (transforms): an eval pipeline, what stays out of eval, a channel mean.

>>> from coursekit.exercises import lesson02 as ex  # doctest: +SKIP
>>> ex.q1.check(make_eval_pipeline)                  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from coursekit.exercises.core import (
    Incorrect,
    Question,
    call_answer,
    expect,
    expect_callable,
    safe_repr,
)

#: ImageNet's statistics (repeated here: the exercises import nothing from coursekit).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- q1


def _fixed_image() -> Image.Image:
    """A wide RGB test card (60 x 40) with a different color in every region."""
    rows, cols = np.mgrid[0:40, 0:60]
    pixels = np.stack([cols * 4, rows * 6, (cols + rows) * 2 % 256], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8))


def _pipeline(*steps: Any, normalize: bool = True) -> transforms.Compose:
    tail = [transforms.ToTensor()]
    if normalize:
        tail.append(transforms.Normalize(_IMAGENET_MEAN, _IMAGENET_STD))
    return transforms.Compose([*steps, *tail])


class EvalPipeline(Question):
    title = "An evaluation pipeline"
    hints = [
        "Four steps, none of them random: resize, crop the center, convert to a tensor, normalize.",
        "`transforms.Resize(resize_size)` with ONE number scales the shorter side and keeps "
        "the aspect ratio; `transforms.CenterCrop(image_size)` then cuts the middle square.",
        "`transforms.Compose([transforms.Resize(resize_size), transforms.CenterCrop(image_size), "
        "transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])`",
    ]
    solution_code = """
        def make_eval_pipeline(image_size, resize_size):
            return transforms.Compose([
                transforms.Resize(resize_size),        # shorter side -> resize_size
                transforms.CenterCrop(image_size),     # the middle image_size square
                transforms.ToTensor(),                 # 0..255 HWC -> 0..1 CHW
                transforms.Normalize(ck.IMAGENET_MEAN, ck.IMAGENET_STD),
            ])
    """

    sizes: tuple[tuple[int, int], ...] = ((32, 36), (24, 28))

    def _check(self, make_eval_pipeline: Any) -> None:
        expect_callable(make_eval_pipeline, "make_eval_pipeline")
        image = _fixed_image()
        for image_size, resize_size in self.sizes:
            pipeline = call_answer(make_eval_pipeline, image_size, resize_size)
            expect(
                callable(pipeline),
                f"make_eval_pipeline({image_size}, {resize_size}) returned "
                f"{safe_repr(pipeline)}: return a transform such as a `transforms.Compose([...])`.",
            )
            outputs = _run_with_seeds(pipeline, image)
            output = outputs[0]
            expect(
                isinstance(output, torch.Tensor),
                f"The pipeline returns {safe_repr(output)}, not a tensor: end it with "
                "`transforms.ToTensor()` and `transforms.Normalize(...)`.",
            )
            shape = tuple(output.shape)
            expect(
                shape != (3, resize_size, round(resize_size * image.width / image.height)),
                f"The output is {shape}: the image is resized but not cropped. Add "
                f"`transforms.CenterCrop(image_size)` after the Resize.",
            )
            if shape == (3, resize_size, resize_size):
                _explain_crop_to_resize_size(output, image, image_size, resize_size)
            expect(
                shape == (3, image_size, image_size),
                f"For image_size={image_size} the output should have shape "
                f"(3, {image_size}, {image_size}), but it has shape {shape}.",
            )
            expect(
                all(torch.equal(output, other) for other in outputs[1:]),
                "The pipeline gives a different tensor each time it sees the same image: it "
                "contains a random transform (RandomRotation, a flip, ColorJitter, "
                "RandomResizedCrop, ...). Evaluation must be deterministic: remove them.",
            )
            _compare_with_reference(output, image, image_size, resize_size)


def _explain_crop_to_resize_size(
    output: torch.Tensor, image: Image.Image, image_size: int, resize_size: int
) -> None:
    """An output of resize_size x resize_size: the two sizes swapped, or the wrong crop size."""
    swapped = _pipeline(transforms.Resize(image_size), transforms.CenterCrop(resize_size))
    if torch.allclose(output.float(), swapped(image), atol=1e-4):
        raise Incorrect(
            f"The output is {resize_size} x {resize_size}: `image_size` and `resize_size` are "
            f"swapped. The checker calls make_eval_pipeline(image_size={image_size}, "
            f"resize_size={resize_size}), in that order; Resize takes `resize_size` (the larger "
            "one) and CenterCrop takes `image_size`."
        )
    raise Incorrect(
        f"The output is {resize_size} x {resize_size}, the size of `resize_size`: crop with "
        f"`transforms.CenterCrop(image_size)`, so the network gets {image_size} x {image_size}."
    )


def _run_with_seeds(pipeline: Callable[[Image.Image], Any], image: Image.Image) -> list[Any]:
    """The pipeline's output under three different seeds; the learner's RNG is left alone."""
    outputs = []
    with torch.random.fork_rng(devices=[]):
        for seed in (0, 1, 2):
            torch.manual_seed(seed)
            outputs.append(pipeline(image.copy()))
    return outputs


def _compare_with_reference(
    output: torch.Tensor, image: Image.Image, image_size: int, resize_size: int
) -> None:
    reference = _pipeline(transforms.Resize(resize_size), transforms.CenterCrop(image_size))
    if torch.allclose(output.float(), reference(image), atol=1e-4):
        return
    mistakes = [
        (
            _pipeline(
                transforms.Resize(resize_size),
                transforms.CenterCrop(image_size),
                normalize=False,
            ),
            "The values lie in [0, 1]: the tensor is not normalized. Add "
            "`transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)` after `ToTensor()`.",
        ),
        (
            _pipeline(
                transforms.Resize((resize_size, resize_size)),
                transforms.CenterCrop(image_size),
            ),
            "`Resize((size, size))` with two numbers squashes the image into a square and "
            "distorts its shapes. Give Resize ONE number: it scales the shorter side and "
            "keeps the aspect ratio.",
        ),
        (
            _pipeline(transforms.Resize((image_size, image_size))),
            "`Resize((image_size, image_size))` squashes the whole image into the square. "
            "Resize the shorter side to `resize_size` (one number), then `CenterCrop(image_size)`.",
        ),
        (
            _pipeline(transforms.Resize(image_size), transforms.CenterCrop(image_size)),
            "You resized to `image_size` before cropping. Resize to `resize_size` (a bit "
            "larger), THEN crop `image_size`: that is the framing used in training.",
        ),
        (
            _pipeline(transforms.CenterCrop(image_size)),
            "The image is cropped but never resized: add `transforms.Resize(resize_size)` "
            "first, so every photo is scaled the same way whatever its size.",
        ),
    ]
    for wrong, message in mistakes:
        if torch.allclose(output.float(), wrong(image), atol=1e-4):
            raise Incorrect(message)
    raise Incorrect(
        "The shape is right but the values differ from Resize(resize_size) -> "
        "CenterCrop(image_size) -> ToTensor() -> Normalize(ImageNet mean, ImageNet std). "
        "Check the order of the steps and the mean and std you normalize with."
    )


q1 = EvalPipeline()


# ----------------------------------------------------------------------------- q2

#: The transforms the learner chooses from.
TRANSFORM_NAMES: tuple[str, ...] = (
    "Resize",
    "RandomRotation",
    "CenterCrop",
    "RandomResizedCrop",
    "RandomHorizontalFlip",
    "ColorJitter",
    "RandomGrayscale",
    "ToTensor",
    "Normalize",
)
_RANDOM = {
    "RandomRotation": "turns the image by a random angle",
    "RandomResizedCrop": "cuts a random area with a random aspect ratio",
    "RandomHorizontalFlip": "mirrors the image half of the time",
    "ColorJitter": "changes brightness, contrast, saturation and hue by random amounts "
    "(no 'Random' in its name, but random all the same)",
    "RandomGrayscale": "turns some images gray at random",
}
_KEEP = {
    "Resize": "it is deterministic and brings every image to the same scale",
    "CenterCrop": "it is deterministic and gives every image the same size",
    "ToTensor": "the model takes tensors, not PIL images",
    "Normalize": "the model learned on inputs normalized exactly this way",
}


class NotInEval(Question):
    title = "Which transforms must stay out of evaluation?"
    hints = [
        "Ask of each transform: does it give the same output every time it sees the same image?",
        "Anything random (a random angle, a random crop, a coin-flip, random color changes) "
        "belongs to training only. One of them has no 'Random' in its name.",
        'Five of them: `{"RandomRotation", "RandomResizedCrop", "RandomHorizontalFlip", '
        '"ColorJitter", "RandomGrayscale"}`.',
    ]
    solution_code = """
        not_in_eval = {"RandomRotation", "RandomResizedCrop", "RandomHorizontalFlip",
                       "ColorJitter", "RandomGrayscale"}
    """

    def _check(self, not_in_eval: Any) -> None:
        expect(
            isinstance(not_in_eval, Iterable) and not isinstance(not_in_eval, str | bytes),
            f"Give a set (or list) of names, like {{'Resize', 'CenterCrop'}}, not "
            f"{safe_repr(not_in_eval)}.",
        )
        chosen = {_short_name(item) for item in not_in_eval}
        unknown = sorted(chosen - set(TRANSFORM_NAMES))
        expect(
            not unknown,
            f"{', '.join(map(repr, unknown))} is not one of the names to choose from: "
            f"{', '.join(TRANSFORM_NAMES)}.",
        )
        for name in TRANSFORM_NAMES:
            if name in _KEEP:
                expect(name not in chosen, f"Keep {name} in evaluation: {_KEEP[name]}.")
        for name, why in _RANDOM.items():
            expect(name in chosen, f"{name} is missing: it {why}, so it must stay out of eval.")


def _short_name(item: Any) -> str:
    """'transforms.ColorJitter', 'ColorJitter()' or a transform class/object -> 'ColorJitter'."""
    if not isinstance(item, str):
        item = item.__name__ if isinstance(item, type) else type(item).__name__
    return item.strip().split(".")[-1].removesuffix("()")


q2 = NotInEval()


# ----------------------------------------------------------------------------- q3


def _fixed_batches() -> list[torch.Tensor]:
    """Three full batches of darker images and a last batch of one bright image."""
    dark = [torch.linspace(0.0, 0.4, 4 * 3 * 2 * 2).reshape(4, 3, 2, 2) + 0.1 * k for k in range(3)]
    bright = torch.linspace(0.9, 1.0, 1 * 3 * 2 * 2).reshape(1, 3, 2, 2)
    return [*dark, bright]


class ChannelMean(Question):
    title = "The per-channel mean of a dataset, batch by batch"
    hints = [
        "The mean over the dataset is (sum of all pixel values) / (number of pixels), per "
        "channel. Keep running sums; do not average the batch means, because the last batch "
        "is smaller.",
        "For a batch of shape N x C x H x W, `batch.sum(dim=(0, 2, 3))` gives one sum per "
        "channel, and it holds `N * H * W` pixels per channel.",
        "`total += batch.sum(dim=(0, 2, 3))`, `pixels += batch.shape[0] * batch.shape[2] * "
        "batch.shape[3]`, and at the end `return total / pixels`.",
    ]
    solution_code = """
        def channel_mean(batches):
            total = torch.zeros(3, dtype=torch.float64)
            pixels = 0
            for batch in batches:                              # N x 3 x H x W
                total += batch.sum(dim=(0, 2, 3)).double()     # one sum per channel
                pixels += batch.shape[0] * batch.shape[2] * batch.shape[3]
            return total / pixels
    """

    def _check(self, channel_mean: Any) -> None:
        expect_callable(channel_mean, "channel_mean")
        batches = _fixed_batches()
        result = call_answer(channel_mean, [batch.clone() for batch in batches])
        expect(result is not None, "Your function returns None: end it with `return`.")
        try:
            values = torch.as_tensor(
                result.detach().cpu() if isinstance(result, torch.Tensor) else result,
                dtype=torch.float64,
            )
        except (TypeError, ValueError, RuntimeError):
            raise Incorrect(
                f"Return the 3 channel means as a tensor (or a list), not {safe_repr(result)}."
            ) from None
        expect(
            values.numel() != 1,
            "You got one number: that averages over the channels too. Keep one mean per "
            "channel (reduce dims 0, 2 and 3, not dim 1).",
        )
        expect(
            tuple(values.shape) == (3,),
            f"Return one mean per channel, shape (3,), but the result has shape "
            f"{tuple(values.shape)}. Reduce over images, height and width (dims 0, 2, 3).",
        )
        everything = torch.cat(batches).double()
        expected = everything.mean(dim=(0, 2, 3))
        if torch.allclose(values, expected, atol=1e-6):
            return
        mean_of_means = torch.stack([b.double().mean(dim=(0, 2, 3)) for b in batches]).mean(0)
        expect(
            not torch.allclose(values, mean_of_means, atol=1e-6),
            "You averaged the batch means. The last batch holds one image but counts as much "
            "as a full batch of four, so the bright image weighs four times too much. Sum the "
            "pixel values and count the pixels instead.",
        )
        height, width = everything.shape[2:]
        expect(
            not torch.allclose(values, expected * height * width, atol=1e-6),
            "You divided by the number of images; divide by the number of pixels "
            "(images x height x width) per channel.",
        )
        raise Incorrect(
            f"The channel means should be {[round(v, 4) for v in expected.tolist()]}, but they "
            f"are {[round(v, 4) for v in values.tolist()]}."
        )


q3 = ChannelMean()
