"""Exercises of lesson 00: the weights API, a batch on the device, and the missing datasets."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision

from coursekit.exercises.core import (
    Incorrect,
    Question,
    call_answer,
    expect,
    expect_callable,
    expect_equal,
    expect_shape,
    safe_repr,
)


class WeightsInsteadOfPretrained(Question):
    title = "resnet18(pretrained=True) in today's torchvision: the weights API"
    hints = [
        "Each architecture has its own list of weights: `torchvision.models.ResNet18_Weights` "
        "for a ResNet-18.",
        "Pick one entry of that list: `.DEFAULT` is the best one available, and for a ResNet-18 "
        "it is the ImageNet weights `pretrained=True` used to load.",
    ]
    solution_code = """
        weights = torchvision.models.ResNet18_Weights.DEFAULT
        # or, the same weights: ResNet18_Weights.IMAGENET1K_V1, "DEFAULT", "IMAGENET1K_V1"
        # model = torchvision.models.resnet18(weights=weights)  # (this line downloads them)
    """

    def _check(self, weights: Any) -> None:
        enum_type = torchvision.models.ResNet18_Weights
        expect(
            weights is not None,
            "`weights=None` builds the network with random weights: the opposite of "
            "`pretrained=True`. Pick an entry of `torchvision.models.ResNet18_Weights`.",
        )
        expect(
            not isinstance(weights, bool),
            f"`{weights}` was a value for the old `pretrained=` argument; `weights=` wants an "
            "entry of the ResNet-18 weights list, `torchvision.models.ResNet18_Weights`.",
        )
        expect(
            not isinstance(weights, torch.nn.Module),
            "You built the network; this exercise wants only the value you pass to `weights=` "
            "(building it would download the weights).",
        )
        expect(
            weights is not enum_type,
            "`ResNet18_Weights` is the whole list of ResNet-18 weights: pick one entry, "
            "for example `.DEFAULT`.",
        )
        expect(
            not callable(weights) or isinstance(weights, enum.Enum),
            f"{safe_repr(weights)} is a function: the answer is the value you pass as "
            "`weights=...`, an entry of `torchvision.models.ResNet18_Weights`.",
        )
        if isinstance(weights, enum.Enum) and not isinstance(weights, enum_type):
            raise Incorrect(
                f"{type(weights).__name__} are weights for another architecture: a ResNet-18 "
                "needs an entry of `ResNet18_Weights` (its tensors have other shapes)."
            )
        try:
            chosen = enum_type.verify(weights)
        except (KeyError, TypeError, ValueError):
            raise Incorrect(
                f"`weights=` accepts an entry of `ResNet18_Weights` or its name as a string "
                f"(like 'DEFAULT'); {safe_repr(weights)} is neither."
            ) from None
        expect_equal(chosen, enum_type.IMAGENET1K_V1, "the weights")


class MoveBatchToDevice(Question):
    title = "A batch on the model's device"
    hints = [
        "`.to(device)` works for any device. It does not move a tensor in place: it returns "
        "a moved copy, which you must keep.",
        "`images = images.to(device)`, the same for `labels`, then `return images, labels`.",
    ]
    solution_code = """
        def to_device(images, labels, device):
            return images.to(device), labels.to(device)
    """

    def _check(self, to_device: Any) -> None:
        expect_callable(to_device, "to_device")
        images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 2, 1, 2])
        device = torch.device("meta")
        try:
            result = call_answer(to_device, images, labels, device)
        except (RuntimeError, AssertionError) as error:
            if "cuda" in str(error).lower() or "nvidia" in str(error).lower():
                raise Incorrect(
                    "Your function asked for a GPU that is not there (`.cuda()`?): use "
                    "`.to(device)`, which moves to whatever device it is given."
                ) from None
            raise
        expect(
            not isinstance(result, torch.Tensor),
            "You returned one tensor: return both, `return images, labels`.",
        )
        expect(
            isinstance(result, tuple | list) and len(result) == 2,
            f"Return two tensors, `return images, labels`, not {safe_repr(result)}.",
        )
        moved_images, moved_labels = result
        expect(
            isinstance(moved_images, torch.Tensor) and isinstance(moved_labels, torch.Tensor),
            f"Return the two tensors themselves, not {safe_repr(result)}.",
        )
        expect(
            not (moved_images.shape == labels.shape and moved_labels.shape == images.shape),
            "You returned them the other way round: images first, then labels.",
        )
        kinds = (moved_images.device.type, moved_labels.device.type)
        expect(
            kinds != ("cpu", "cpu"),
            "Both tensors are still on the CPU. `.to(device)` does not move a tensor in place: "
            "it returns a moved copy, which you must keep (`images = images.to(device)`).",
        )
        expect(
            kinds != ("meta", "cpu"),
            "The labels are still on the CPU: the loss compares the model's outputs with the "
            "labels, so they must be on the same device as the images.",
        )
        expect(
            kinds != ("cpu", "meta"),
            "The images are still on the CPU: the model can only compute on tensors that are "
            "on its own device.",
        )
        expect(
            kinds == ("meta", "meta"),
            f"The tensors are on {kinds[0]} and {kinds[1]}, but the device asked for was "
            f"{device}: use `.to(device)` with the `device` your function is given.",
        )
        expect_shape(moved_images, tuple(images.shape), "the images")
        expect_equal(moved_labels.dtype, labels.dtype, "the labels' dtype (class indices)")


@dataclass(frozen=True)
class _Status:
    """A stand-in for ``coursekit.DatasetStatus``, with the same fields: the exercises import
    nothing from coursekit, and the checker needs machines that no learner has."""

    name: str
    folder: Path
    present: bool
    images: int
    fetch_command: str

    def __str__(self) -> str:  # says "present" or "missing", as the real status does
        return f"{self.name}: {'present' if self.present else 'missing'} ({self.folder})"


def _status(name: str, present: bool) -> _Status:
    return _Status(
        name=name,
        folder=Path("data") / name,
        present=present,
        images=120 if present else 0,
        fetch_command=f"python -m data_scripts get {name}",
    )


class MissingDatasets(Question):
    title = "The datasets still missing on this machine"
    hints = [
        "Look at one status first: `ck.dataset_status(settings)[0]` shows its fields. "
        "`status.present` is True or False, `status.name` is the dataset's name.",
        "Loop over `statuses` and keep `status.name` when the dataset is not present.",
        "`return [status.name for status in statuses if not status.present]`",
    ]
    solution_code = """
        def missing_datasets(statuses):
            return [status.name for status in statuses if not status.present]

        missing_datasets(ck.dataset_status(settings))  # on this machine
    """

    #: Which datasets are present, in a few made-up machines (one with a dataset of your own).
    machines: tuple[tuple[tuple[str, bool], ...], ...] = (
        (("synthetic", True), ("hymenoptera", False), ("flowers102", True)),
        (("synthetic", True), ("hymenoptera", True), ("flowers102", False)),
        (("synthetic", False), ("hymenoptera", False), ("flowers102", False)),
        (("synthetic", True), ("hymenoptera", True), ("flowers102", True)),
        (("my_photos", False), ("synthetic", True)),
    )

    def _check(self, missing_datasets: Any) -> None:
        expect_callable(missing_datasets, "missing_datasets")
        answers = []
        for machine in self.machines:
            statuses = [_status(name, present) for name, present in machine]
            names = self._names(call_answer(missing_datasets, list(statuses)), statuses)
            answers.append((names, statuses))
        always_the_same = len({safe_repr(names) for names, _ in answers}) == 1
        expect(
            not (always_the_same and answers[0][0]),  # an empty list is checked case by case
            f"Your function returns {safe_repr(answers[0][0])} whatever it is given: use its "
            "argument `statuses` (not `ck.dataset_status()` or names typed in).",
        )
        for names, statuses in answers:
            self._check_one(names, statuses)

    @staticmethod
    def _situation(statuses: list[_Status]) -> str:
        return ", ".join(f"{s.name} {'present' if s.present else 'missing'}" for s in statuses)

    def _names(self, result: Any, statuses: list[_Status]) -> list[Any]:
        """The answer as a list, or a message if it is not a collection of names."""
        situation = self._situation(statuses)
        expect(result is not None, "Your function returns None: end it with `return` and the list.")
        expect(
            not isinstance(result, str),
            f"With {situation} you returned the string {safe_repr(result)}: return a list of "
            "names, like ['hymenoptera'].",
        )
        expect(
            isinstance(result, Iterable),
            f"With {situation} you returned {safe_repr(result)}: return a list of names.",
        )
        return list(result)

    def _check_one(self, names: list[Any], statuses: list[_Status]) -> None:
        situation = self._situation(statuses)
        expect(
            not any(isinstance(item, _Status) for item in names),
            "You returned the status objects: return their names (`status.name`).",
        )
        commands = [s.fetch_command for s in statuses]
        expect(
            not any(item in commands for item in names),
            "You returned the fetch commands: return the names (`status.name`).",
        )
        given = [s.name for s in statuses]
        strangers = [item for item in names if item not in given]
        expect(
            not strangers,
            f"With {situation} you returned {safe_repr(strangers)}, which is not in the list "
            "your function was given: use its argument `statuses` (not `ck.dataset_status()` "
            "or names typed in).",
        )
        missing = [s.name for s in statuses if not s.present]
        present = [s.name for s in statuses if s.present]
        if sorted(names) == sorted(missing):
            return
        expect(
            not (present and sorted(names) == sorted(present)),
            f"With {situation} you returned the datasets that ARE present: keep the ones "
            "whose `present` is False.",
        )
        expect(
            not (present and sorted(names) == sorted(given)),
            f"With {situation} you returned every dataset: keep only those whose `present` "
            "is False.",
        )
        expect(
            len(names) == len(set(names)),
            f"With {situation} some names appear twice in {safe_repr(names)}: list each once.",
        )
        expect_equal(sorted(names), sorted(missing), f"the missing datasets with {situation}")


q1 = WeightsInsteadOfPretrained()
q2 = MoveBatchToDevice()
q3 = MissingDatasets()
