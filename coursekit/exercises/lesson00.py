"""Exercises of lesson 00: settings, the device, and which datasets are still missing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from coursekit.exercises.core import (
    Question,
    call_answer,
    expect,
    expect_callable,
    expect_equal,
    safe_repr,
)


class SmokeSettingsWithThreeEpochs(Question):
    title = "Settings for a smoke run of 3 epochs"
    hints = [
        "`ck.get_settings` takes the mode first, then any setting as a keyword argument.",
        "Something like `ck.get_settings(<mode>, epochs=<number>)`.",
    ]
    solution_code = 'my_settings = ck.get_settings("smoke", epochs=3)'

    def _check(self, my_settings):
        expect(
            hasattr(my_settings, "mode") and hasattr(my_settings, "epochs"),
            "Expected a Settings object (what `ck.get_settings(...)` returns), "
            f"not a {type(my_settings).__name__}.",
        )
        expect_equal(my_settings.mode, "smoke", "the run mode")
        expect_equal(my_settings.epochs, 3, "the number of epochs")


class ChooseDevice(Question):
    title = "Choose the device: CUDA, then MPS, then the CPU"
    hints = [
        "`torch.cuda.is_available()` and `torch.backends.mps.is_available()` answer True or False.",
        "Check CUDA first: if/elif/else, returning `torch.device(...)` in each branch.",
    ]
    solution_code = """
        def choose_device():
            if torch.cuda.is_available():
                return torch.device("cuda")
            if torch.backends.mps.is_available():
                return torch.device("mps")
            return torch.device("cpu")
    """

    #: (CUDA available, MPS available) -> the device a good choice returns.
    cases = {
        (True, True): "cuda",
        (True, False): "cuda",
        (False, True): "mps",
        (False, False): "cpu",
    }

    def _check(self, choose_device):
        expect_callable(choose_device, "choose_device")
        for (cuda, mps), wanted in self.cases.items():
            with (
                mock.patch.object(torch.cuda, "is_available", return_value=cuda),
                mock.patch.object(torch.backends.mps, "is_available", return_value=mps),
            ):
                device = call_answer(choose_device)
            expect(
                isinstance(device, torch.device),
                f"Return a torch.device, e.g. torch.device({wanted!r}), not {device!r}.",
            )
            situation = f"with CUDA {'on' if cuda else 'off'} and MPS {'on' if mps else 'off'}"
            if wanted == "cuda" and device.type == "mps":
                expect(False, f"{situation}, prefer CUDA: test it before MPS.")
            expect_equal(device.type, wanted, f"the device {situation}")


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


q1 = SmokeSettingsWithThreeEpochs()
q2 = ChooseDevice()
q3 = MissingDatasets()
