"""Exercises of lesson 08 (inference).

q1: ``preprocess(image, image_size, resize_size)``, the evaluation pipeline written by hand.
q2: fix a ``predict(model, batch)`` that forgets eval mode and no-grad.
q3: the fastest (batch size, memory layout) in a table of measured speeds.

The checks run the learner's functions on a fixed generated image, a tiny probe model with
BatchNorm and Dropout, and fixed speed tables, so they are fast and need no data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms

from coursekit.exercises.core import (
    Incorrect,
    Question,
    call_answer,
    expect,
    expect_callable,
    safe_repr,
)

__all__ = ["q1", "q2", "q3"]

#: The ImageNet statistics the pretrained weights (and the course) normalize with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- q1


def _test_image() -> Image.Image:
    """A fixed 60 x 44 RGB picture: smooth gradients, a red block on the left, a blue one on
    the right, so that size, crop, channel order and normalization all change the tensor."""
    height, width = 44, 60
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack(
        [x * 255 / (width - 1), y * 255 / (height - 1), (x + y) * 255 / (width + height - 2)],
        axis=-1,
    )
    pixels[10:30, 4:14] = (230, 20, 20)
    pixels[14:34, 44:56] = (20, 30, 220)
    return Image.fromarray(pixels.round().astype(np.uint8), mode="RGB")


Q1_SIZES = ((32, 40), (24, 28))  # (image_size, resize_size) pairs the checker tries


def _pipeline(image_size: int, resize_size: int, *steps: str) -> transforms.Compose:
    """The eval pipeline, or one of its common wrong variants."""
    if "squash" in steps:
        resize = transforms.Resize((resize_size, resize_size))
    elif "resize_to_crop" in steps:
        resize = transforms.Resize(image_size)
    else:
        resize = transforms.Resize(resize_size)
    parts: list[Any] = [resize, transforms.CenterCrop(image_size), transforms.ToTensor()]
    if "no_normalize" not in steps:
        parts.append(transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return transforms.Compose(parts)


class Preprocess(Question):
    title = "Preprocess one image exactly like validation"
    hints = [
        "Four steps, in this order: resize the SHORTER side to `resize_size`, crop the "
        "`image_size` x `image_size` center, turn the PIL image into a float tensor in [0, 1], "
        "normalize each channel with the ImageNet mean and std.",
        "torchvision has one transform per step: `transforms.Resize(resize_size)` (ONE number "
        "keeps the aspect ratio), `transforms.CenterCrop(image_size)`, `transforms.ToTensor()`, "
        "`transforms.Normalize(ck.IMAGENET_MEAN, ck.IMAGENET_STD)`. Chain them with "
        "`transforms.Compose([...])`.",
        "Build the Compose inside the function from the `image_size` and `resize_size` "
        "arguments and return `pipeline(image)`: one tensor of shape (3, image_size, "
        "image_size), no batch dimension.",
    ]
    solution_code = """
        from torchvision import transforms

        def preprocess(image, image_size=settings.image_size, resize_size=settings.resize_size):
            pipeline = transforms.Compose([
                transforms.Resize(resize_size),      # shorter side -> resize_size, keeps the shape
                transforms.CenterCrop(image_size),   # the central square the model was validated on
                transforms.ToTensor(),               # H x W x C uint8 -> C x H x W float in [0, 1]
                transforms.Normalize(ck.IMAGENET_MEAN, ck.IMAGENET_STD),
            ])
            return pipeline(image)
    """
    correct_message = (
        "this is `ck.eval_transforms(image_size, resize_size)`, the pipeline the validation "
        "set used, so the model sees new images exactly as it saw validation images."
    )

    def _check(self, preprocess: Any) -> None:
        expect_callable(preprocess, "preprocess")
        for image_size, resize_size in Q1_SIZES:
            self._check_one(preprocess, image_size, resize_size)

    def _check_one(self, preprocess: Any, image_size: int, resize_size: int) -> None:
        call = f"preprocess(image, image_size={image_size}, resize_size={resize_size})"
        image = _test_image()
        result = call_answer(
            preprocess, image.copy(), image_size=image_size, resize_size=resize_size
        )
        expect(
            isinstance(result, torch.Tensor),
            f"{call} should return a tensor, but it returned {safe_repr(result)}. End the "
            "pipeline with `transforms.ToTensor()` and `transforms.Normalize(...)`.",
        )
        wanted = (3, image_size, image_size)
        if tuple(result.shape) == (1, *wanted):
            raise Incorrect(
                f"{call} returned a batch of shape {tuple(result.shape)}. Return ONE image of "
                f"shape {wanted}: the batch dimension is added when predicting "
                "(`.unsqueeze(0)`)."
            )
        if tuple(result.shape) != wanted:
            raise Incorrect(
                f"{call} should have shape {wanted}, but it has shape {tuple(result.shape)}. "
                "Use the `image_size` and `resize_size` arguments (not fixed numbers or "
                "`settings`), and end the geometry with `CenterCrop(image_size)`."
            )
        expect(
            result.is_floating_point(),
            f"{call} should be a float tensor, but its dtype is {result.dtype}: use "
            "`transforms.ToTensor()`.",
        )
        again = call_answer(
            preprocess, image.copy(), image_size=image_size, resize_size=resize_size
        )
        if not (isinstance(again, torch.Tensor) and torch.equal(again, result)):
            raise Incorrect(
                f"{call} gave a different tensor the second time. Evaluation preprocessing "
                "must be deterministic: no `RandomResizedCrop`, `RandomHorizontalFlip` or other "
                "random transforms (those belong to the TRAIN pipeline)."
            )
        result = result.detach().float().cpu()
        expected = _pipeline(image_size, resize_size)(image)
        if torch.allclose(result, expected, atol=1e-4):
            return
        if torch.allclose(result, expected.flip(0), atol=1e-4):
            raise Incorrect(
                "The channels are in the wrong order (BGR instead of RGB). Keep the channels "
                "as PIL gives them: R, G, B."
            )
        if torch.allclose(
            result, _pipeline(image_size, resize_size, "no_normalize")(image), atol=1e-4
        ):
            raise Incorrect(
                "The values are in [0, 1]: the `Normalize` step is missing. The pretrained "
                "network expects each channel normalized with the ImageNet mean and std, "
                "`transforms.Normalize(ck.IMAGENET_MEAN, ck.IMAGENET_STD)`."
            )
        for variant, message in [
            (
                "squash",
                "`Resize((size, size))` with a PAIR squashes the image to a square. Validation "
                "used `Resize(resize_size)` with ONE number: the shorter side becomes "
                "`resize_size` and the aspect ratio is kept.",
            ),
            (
                "resize_to_crop",
                "You resized to `image_size` and cropped nothing. Resize to the LARGER "
                "`resize_size` first, then `CenterCrop(image_size)`: validation images lost "
                "their border that way, so new images must too.",
            ),
        ]:
            if torch.allclose(
                result, _pipeline(image_size, resize_size, variant)(image), atol=1e-4
            ):
                raise Incorrect(message)
        if torch.allclose(result.mean(dim=(1, 2)), expected.mean(dim=(1, 2)), atol=0.05):
            raise Incorrect(
                f"{call} is close but not equal to the validation pipeline's output. Check the "
                "order of the steps: Resize and CenterCrop on the PIL image, then ToTensor, "
                "then Normalize."
            )
        raise Incorrect(
            f"{call} does not match the validation pipeline (Resize(resize_size) -> "
            "CenterCrop(image_size) -> ToTensor() -> Normalize(ImageNet mean, std)). Check "
            "each step and the mean/std values."
        )


q1 = Preprocess()

# ----------------------------------------------------------------------------- q2


class _ProbeModel(nn.Module):
    """A tiny classifier with BatchNorm and Dropout that records how it was called."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.norm = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(p=0.5)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            # Running statistics far from any batch's own: eval and train mode disagree.
            self.norm.running_mean.copy_(torch.tensor([2.0, -1.0, 0.5, 3.0]))
            self.norm.running_var.copy_(torch.tensor([4.0, 0.25, 1.0, 9.0]))
            self.fc.weight.copy_(torch.randn(3, 4, generator=generator))
            self.fc.bias.copy_(torch.randn(3, generator=generator))
        self.calls: list[tuple[bool, bool]] = []  # (training, grad enabled) of every forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.fc(self.drop(self.norm(x)))


Q2_BATCH = torch.tensor(
    [
        [1.0, 0.0, 2.0, 1.0],
        [3.0, -2.0, 0.0, 4.0],
        [0.5, 1.0, 1.0, 2.0],
        [2.5, -0.5, -1.0, 6.0],
        [1.5, 0.5, 0.5, 3.5],
    ]
)


def _call_predict(predict: Any, probe: _ProbeModel) -> Any:
    """The learner's ``predict(probe, batch)``; the two typos of this exercise, which crash
    inside it, get their own messages."""
    try:
        return call_answer(predict, probe, Q2_BATCH.clone())
    except (TypeError, AttributeError) as error:
        text = str(error)
        if "eval()" in text and "positional argument" in text:
            raise Incorrect(
                "`model = model.eval` (without parentheses) stores the METHOD, not the model, "
                f"so `model(batch)` called `eval(batch)` and failed (`{text}`). Call the "
                "method: `model = model.eval()`, which switches the model and returns it."
            ) from None
        if "context manager" in text or "__enter__" in text:
            raise Incorrect(
                "`with torch.no_grad:` or `with torch.inference_mode:` (without parentheses) "
                f"hands `with` a class, which is not a context manager (`{text}`). Create "
                "one by calling it: `with torch.inference_mode():` (or `torch.no_grad()`)."
            ) from None
        raise


class FixPredict(Question):
    title = "Fix a predict function that forgets eval mode and no-grad"
    hints = [
        "Two rules of inference are missing. One is a METHOD of the model that switches "
        "dropout off and makes BatchNorm use its running statistics. The other is a context "
        "manager from `torch` that stops autograd from recording the forward pass.",
        "`model.eval()` returns the model itself, so `model = model.eval()` fills the first "
        "blank. `torch.inference_mode()` (or `torch.no_grad()`) fills the second.",
    ]
    solution_code = """
        def predict(model, batch):
            model = model.eval()                # dropout off, BatchNorm uses running statistics
            with torch.inference_mode():         # no autograd graph: less memory, faster
                logits = model(batch)
            return torch.softmax(logits, dim=1)
    """
    correct_message = (
        "the same batch now gives the same probabilities every time, whatever else is in the "
        "batch, and no autograd graph is built. (`ck.predict_image` and friends also give every "
        "layer its previous mode back afterwards.)"
    )

    def _check(self, predict: Any) -> None:
        expect_callable(predict, "predict")
        probe = _ProbeModel().train()  # as a model is right after training
        stats_before = probe.norm.running_mean.clone()
        probs = _call_predict(predict, probe)
        expect(probe.calls, "`predict` never called the model: run `model(batch)`.")
        if any(training for training, _ in probe.calls):
            changed = not torch.equal(probe.norm.running_mean, stats_before)
            raise Incorrect(
                "The model ran in TRAINING mode: dropout dropped random features and "
                "BatchNorm normalized with this batch's statistics"
                + (" (and even updated its running statistics)" if changed else "")
                + ", so the same image can get different predictions. Call `model.eval()` "
                "before the forward pass, with the parentheses: `model.eval` alone only "
                "names the method and switches nothing."
            )
        if any(grad for _, grad in probe.calls):
            raise Incorrect(
                "Autograd was still recording the forward pass (`torch.is_grad_enabled()` was "
                "True), which costs memory and time for gradients nobody needs. Run the model "
                "inside `with torch.inference_mode():` (or `torch.no_grad()`)."
            )
        expect(
            isinstance(probs, torch.Tensor),
            f"`predict` should return a tensor of probabilities, not {safe_repr(probs)}.",
        )
        expect(
            tuple(probs.shape) == (len(Q2_BATCH), 3),
            f"For a batch of {len(Q2_BATCH)} images and 3 classes the probabilities should "
            f"have shape ({len(Q2_BATCH)}, 3), not {tuple(probs.shape)}.",
        )
        reference = _ProbeModel().eval()
        with torch.no_grad():
            expected = torch.softmax(reference(Q2_BATCH), dim=1)
        probs = probs.detach().float()
        if torch.allclose(probs, expected, atol=1e-5):
            return
        if torch.allclose(probs.sum(dim=0), torch.ones(3), atol=1e-4):
            raise Incorrect(
                "The softmax runs over the wrong dimension: each ROW (one image) must sum to 1, "
                "so use `torch.softmax(logits, dim=1)`."
            )
        raise Incorrect(
            "Return the class probabilities, `torch.softmax(logits, dim=1)`, of the model's "
            "output for the batch."
        )


q2 = FixPredict()

# ----------------------------------------------------------------------------- q3

#: Measured-looking tables (layout -> batch size -> images/s) and their fastest setup. The
#: first is a CPU (a middle batch in channels-last wins), the second a GPU (the largest batch
#: wins), the third a machine where NCHW at batch 8 wins, so that every shortcut fails once.
Q3_CASES = (
    (
        {
            "NCHW": {1: 64.0, 4: 82.0, 8: 54.0, 16: 54.0, 32: 44.0, 64: 40.0},
            "channels-last": {1: 94.0, 4: 124.0, 8: 102.0, 16: 84.0, 32: 75.0, 64: 65.0},
        },
        (4, "channels-last"),
    ),
    (
        {
            "NCHW": {1: 310.0, 4: 1150.0, 8: 2100.0, 16: 3400.0, 32: 4600.0, 64: 5200.0},
            "channels-last": {1: 280.0, 4: 1020.0, 8: 1900.0, 16: 3100.0, 32: 4300.0, 64: 4900.0},
        },
        (64, "NCHW"),
    ),
    (
        {
            "NCHW": {1: 44.0, 4: 56.0, 8: 79.0, 16: 55.0, 32: 50.0, 64: 46.0},
            "channels-last": {1: 53.0, 4: 70.0, 8: 77.0, 16: 71.0, 32: 68.0, 64: 60.0},
        },
        (8, "NCHW"),
    ),
)


def _shortcuts(speeds: dict[str, dict[int, float]]) -> list[tuple[tuple[int, str], str]]:
    """Answers of common shortcuts for one table, each with the message that explains it."""
    pairs = [(size, layout) for layout, row in speeds.items() for size in row]
    slowest = min(pairs, key=lambda pair: speeds[pair[1]][pair[0]])
    largest = {layout: (max(row), layout) for layout, row in speeds.items()}
    found = [
        (
            slowest,
            "You picked the SLOWEST setup: the best one has the MOST images per second.",
        ),
        *[
            (
                answer,
                "You picked the largest batch. On a CPU a single image already keeps the "
                "cores busy and big batches fall out of the caches, so a middle batch size "
                "is often fastest: compare the speeds, not the batch sizes.",
            )
            for answer in largest.values()
        ],
    ]
    for layout, row in speeds.items():
        best_in_layout = max(row, key=row.get)
        found.append(
            (
                (best_in_layout, layout),
                f"You looked at the {layout} row only. The memory layout matters too: compare "
                "every (batch size, layout) pair of both rows.",
            )
        )
    return found


class FastestSetup(Question):
    title = "Pick the fastest batch size and memory layout from a measured table"
    hints = [
        "The table has two levels: `speeds[layout][batch_size]` is images per second. The "
        "answer is the PAIR with the most images per second, over both layouts and every "
        "batch size, not the largest batch and not one layout alone.",
        "Visit every pair: `for layout, row in speeds.items():` then "
        "`for batch_size, images_per_second in row.items():`, and keep the best pair seen so "
        "far (or give `max` a `key=` function that looks the speed of a pair up).",
        "Return a tuple with the batch size FIRST and the layout name second, e.g. "
        '`(16, "NCHW")`; a different order or only one of the two is not the answer.',
    ]
    solution_code = """
        def fastest_setup(speeds):
            pairs = [(size, layout) for layout, row in speeds.items() for size in row]
            return max(pairs, key=lambda pair: speeds[pair[1]][pair[0]])
    """
    correct_message = (
        "this is the choice `ck.predict_folder` makes with the speeds `ck.measure_batch_speeds` "
        "measured: on a CPU a middle batch, on a GPU usually the largest."
    )

    def _check(self, fastest_setup: Any) -> None:
        expect_callable(fastest_setup, "fastest_setup")
        for speeds, expected in Q3_CASES:
            table = {layout: dict(row) for layout, row in speeds.items()}
            answer = call_answer(fastest_setup, table)
            if isinstance(answer, list):
                answer = tuple(answer)
            call = f"fastest_setup(speeds) for {speeds!r}"
            if answer == expected:
                continue
            if answer == expected[::-1]:
                raise Incorrect(
                    f"{call} returned {answer!r}: the right pair, in the wrong order. Return "
                    "the batch size first, then the layout."
                )
            expect(
                isinstance(answer, tuple) and len(answer) == 2,
                f"{call} should return a pair (batch_size, layout), but it returned "
                f"{safe_repr(answer)}.",
            )
            for wrong, message in _shortcuts(speeds):
                if answer == wrong:
                    raise Incorrect(f"{call} returned {answer!r}. {message}")
            raise Incorrect(
                f"{call} returned {answer!r}, but the fastest pair is {expected!r} "
                f"({speeds[expected[1]][expected[0]]:.0f} images/s)."
            )


q3 = FastestSetup()
