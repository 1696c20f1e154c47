"""Exercises of lesson 00: settings, the device, and where the data comes from."""

from __future__ import annotations

from unittest import mock

import torch

from coursekit.exercises.core import (
    Question,
    ValueQuestion,
    call_answer,
    expect,
    expect_callable,
    expect_equal,
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


q1 = SmokeSettingsWithThreeEpochs()
q2 = ChooseDevice()
q3 = ValueQuestion(
    title="The command that fetches the ants-vs-bees dataset",
    expected="python -m data_scripts get hymenoptera",
    wrong_answers={
        "python -m data_scripts get flowers102": "That fetches the flowers; ants and bees "
        "are the `hymenoptera` dataset.",
        "python -m data_scripts synthetic": "That generates the offline synthetic set; "
        "the ants-vs-bees photos are fetched with `get`.",
        "python -m data_scripts hymenoptera": "Almost: the subcommand `get` comes before "
        "the dataset name.",
    },
    hints=[
        "The datasets table in section 4 printed the command for every missing dataset.",
        "It is `python -m data_scripts get <name>`; the ants-vs-bees dataset is `hymenoptera`.",
    ],
    solution_code='command = "python -m data_scripts get hymenoptera"',
)
