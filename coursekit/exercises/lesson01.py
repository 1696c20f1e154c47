"""Exercises of lesson 01 (data loading): class order, im_convert, label lookup.

>>> from coursekit.exercises import lesson01 as ex  # doctest: +SKIP
>>> ex.q1.check(imagefolder_class_to_idx)           # doctest: +SKIP
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from coursekit.exercises.core import (
    Incorrect,
    Question,
    call_answer,
    expect,
    expect_callable,
    expect_equal,
    safe_repr,
)

# ----------------------------------------------------------------------------- q1


class ClassToIdx(Question):
    title = "The class_to_idx an ImageFolder builds"
    hints = [
        "ImageFolder lists the class folders, sorts their names, and numbers them from 0.",
        "The names are strings, and strings sort character by character: '10' < '2' "
        "because '1' < '2'. Python's `sorted()` does exactly that.",
        "`{name: index for index, name in enumerate(sorted(folder_names))}`",
    ]
    solution_code = """
        def imagefolder_class_to_idx(folder_names):
            return {name: index for index, name in enumerate(sorted(folder_names))}
    """

    cases: tuple[tuple[str, ...], ...] = (
        ("2", "10", "1"),
        ("bees", "ants"),
        ("3", "12", "1", "102", "2", "11"),
    )

    def _check(self, imagefolder_class_to_idx: Any) -> None:
        expect_callable(imagefolder_class_to_idx, "imagefolder_class_to_idx")
        for names in self.cases:
            result = call_answer(imagefolder_class_to_idx, list(names))
            expect(
                isinstance(result, Mapping),
                f"For {list(names)} your function returned {safe_repr(result)}: return a dict "
                "that maps each folder name to its index.",
            )
            result = dict(result)
            expect(
                all(isinstance(key, str) for key in result),
                "The keys should be the folder names as strings (like '10'), exactly as they "
                "appear on disk.",
            )
            expected = {name: index for index, name in enumerate(sorted(names))}
            as_given = {name: index for index, name in enumerate(names)}
            numeric = {n: i for i, n in enumerate(sorted(names, key=_number_or_text))}
            one_based = {name: index + 1 for name, index in expected.items()}
            if result == expected:
                continue
            expect(
                result != as_given,
                f"For {list(names)} you numbered the folders in the order they were listed. "
                "ImageFolder sorts the names first (the order a folder listing returns is "
                "not reliable).",
            )
            expect(
                result != numeric,
                f"For {list(names)} you sorted the names as numbers. ImageFolder sorts them as "
                "strings, so '10' comes before '2'.",
            )
            expect(result != one_based, "Class indices start at 0, not 1.")
            expect_equal(result, expected, f"class_to_idx for folders {list(names)}")


def _number_or_text(name: str) -> tuple[int, int | str]:
    return (0, int(name)) if name.isdigit() else (1, name)


q1 = ClassToIdx()


# ----------------------------------------------------------------------------- q2

_MEAN = (0.5, 0.4, 0.3)
_STD = (0.2, 0.25, 0.3)


def _fixed_images() -> list[torch.Tensor]:
    """Normalized-looking CHW tensors with H != W, so a reshape cannot pass for a permute."""
    return [
        torch.linspace(-2.5, 2.5, 3 * 2 * 4).reshape(3, 2, 4),
        torch.linspace(3.0, -3.0, 3 * 3 * 5).reshape(3, 3, 5),
    ]


def _per_channel(values: Sequence[float]) -> torch.Tensor:
    return torch.tensor(values).view(3, 1, 1)


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


class ImConvert(Question):
    title = "im_convert by hand"
    hints = [
        "Three steps: undo Normalize, move the channels last, clip to [0, 1].",
        "Normalize computed `(x - mean) / std` per channel, so undo it with `x * std + mean`. "
        "Make `mean` and `std` broadcast over a C x H x W tensor: "
        "`torch.tensor(std).view(3, 1, 1)`.",
        "`tensor.permute(1, 2, 0)` turns C x H x W into H x W x C (do not use reshape or "
        "view: they keep the memory order and scramble the pixels). Then `.clamp(0, 1)`.",
    ]
    solution_code = """
        def my_im_convert(tensor, mean, std):
            image = tensor.detach().cpu()
            image = image * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
            image = image.permute(1, 2, 0)        # C x H x W -> H x W x C
            return image.clamp(0, 1).numpy()
    """

    def _check(self, my_im_convert: Any) -> None:
        expect_callable(my_im_convert, "my_im_convert")
        mean, std = _per_channel(_MEAN), _per_channel(_STD)
        for image in _fixed_images():
            result = call_answer(my_im_convert, image.clone(), _MEAN, _STD)
            expect(
                result is not None,
                "Your function returns None: end it with `return` and the image.",
            )
            array = _as_numpy(result)
            channels, height, width = image.shape
            expect(
                array.shape != (channels, height, width),
                f"The result has shape {array.shape}: the channels are still first. "
                "matplotlib wants H x W x C, so use `.permute(1, 2, 0)`.",
            )
            expect(
                array.shape == (height, width, channels),
                f"For a {channels} x {height} x {width} tensor the result should have shape "
                f"{(height, width, channels)}, but it has shape {array.shape}.",
            )
            restored = image * std + mean
            expected = restored.clamp(0, 1).permute(1, 2, 0).numpy()
            if np.allclose(array, expected, atol=1e-5):
                continue
            mistakes = [
                (
                    restored.clamp(0, 1).reshape(height, width, channels),
                    "The values are scrambled: `reshape`/`view` keep the memory order, so "
                    "they do not move the channels. Use `.permute(1, 2, 0)`.",
                ),
                (
                    ((image - mean) / std).clamp(0, 1).permute(1, 2, 0),
                    "You applied Normalize again, `(x - mean) / std`. To undo it, compute "
                    "`x * std + mean`.",
                ),
                (
                    (image * mean + std).clamp(0, 1).permute(1, 2, 0),
                    "Mean and std are swapped: multiply by `std`, then add `mean`.",
                ),
                (
                    ((image + mean) * std).clamp(0, 1).permute(1, 2, 0),
                    "The order is wrong: multiply by `std` first, THEN add `mean` (the "
                    "reverse of subtract-then-divide).",
                ),
                (
                    restored.permute(1, 2, 0),
                    "Some values lie outside [0, 1]: clip them with `.clamp(0, 1)` (or "
                    "`np.clip(image, 0, 1)`), or matplotlib will complain and clip them itself.",
                ),
                (
                    image.clamp(0, 1).permute(1, 2, 0),
                    "The channels are in the right place, but Normalize is not undone: "
                    "compute `x * std + mean` before clipping.",
                ),
            ]
            for wrong, message in mistakes:
                if np.allclose(array, wrong.numpy(), atol=1e-5):
                    raise Incorrect(message)
            raise Incorrect(
                "The shape is right but the pixel values are not: undo Normalize with "
                "`x * std + mean` per channel, move the channels last, then clip to [0, 1]."
            )


q2 = ImConvert()


# ----------------------------------------------------------------------------- q3

#: The first twelve flowers of Oxford 102, keyed by folder name (a slice of cat_to_name.json).
FLOWER_NAMES: dict[str, str] = {
    "1": "pink primrose",
    "2": "hard-leaved pocket orchid",
    "3": "canterbury bells",
    "4": "sweet pea",
    "5": "english marigold",
    "6": "tiger lily",
    "7": "moon orchid",
    "8": "bird of paradise",
    "9": "monkshood",
    "10": "globe thistle",
    "11": "snapdragon",
    "12": "colt's foot",
}


class IndexOfLabel(Question):
    title = "From a flower's name to its class index"
    hints = [
        "Two lookups: the name gives a folder (through `cat_to_name`), the folder gives an "
        "index (through `class_to_idx`).",
        "`cat_to_name` maps folder -> name, so search it backwards: find the `folder` whose "
        "`cat_to_name[folder] == label_name`.",
        "`folder = next(f for f, name in cat_to_name.items() if name == label_name)`, then "
        "`return class_to_idx[folder]`.",
    ]
    solution_code = """
        def index_of(label_name, cat_to_name, class_to_idx):
            folder = next(f for f, name in cat_to_name.items() if name == label_name)
            return class_to_idx[folder]
    """

    asked: tuple[str, ...] = ("canterbury bells", "globe thistle", "pink primrose", "monkshood")

    def _check(self, index_of: Any) -> None:
        expect_callable(index_of, "index_of")
        folders = list(FLOWER_NAMES)
        image_folder_order = {name: i for i, name in enumerate(sorted(folders))}
        # Another valid mapping (e.g. from a checkpoint): the answer must use the one given.
        other_order = {name: i for i, name in enumerate(reversed(sorted(folders)))}
        for class_to_idx in (image_folder_order, other_order):
            for label_name in self.asked:
                folder = next(f for f, name in FLOWER_NAMES.items() if name == label_name)
                result = call_answer(index_of, label_name, dict(FLOWER_NAMES), dict(class_to_idx))
                expect(
                    result != folder,
                    f"For {label_name!r} you returned the folder name {folder!r}. That is "
                    "halfway: now look the folder up in `class_to_idx`.",
                )
                expect(
                    isinstance(result, numbers.Integral) and not isinstance(result, bool),
                    f"For {label_name!r} you returned {safe_repr(result)}: return the class "
                    "index, an int.",
                )
                expected = class_to_idx[folder]
                if result == expected:
                    continue
                expect(
                    result != int(folder) - 1,
                    f"For {label_name!r} you returned {result}, the folder number minus one. "
                    "Indices follow the SORTED folder names ('1', '10', '11', '12', '2', ...), "
                    "not the numbers: look the folder up in `class_to_idx`.",
                )
                expect(
                    result != int(folder),
                    f"For {label_name!r} you returned {result}, the folder number. The index "
                    "is the folder's position in class order: look it up in `class_to_idx`.",
                )
                expect(
                    class_to_idx is not other_order or result != image_folder_order[folder],
                    "You rebuilt the class order yourself. Use the `class_to_idx` you are "
                    "given: a checkpoint or another split may order classes differently.",
                )
                expect_equal(result, expected, f"the index of {label_name!r}")


q3 = IndexOfLabel()
