"""Exercises of lesson 04 (the training loop): honest epoch metrics, the scheduler's place and
a snapshot of the best weights.

>>> from coursekit.exercises import lesson04 as ex  # doctest: +SKIP
>>> ex.q1.check(epoch_accuracy)                     # doctest: +SKIP
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from coursekit.exercises.core import (
    Incorrect,
    Question,
    call_answer,
    expect,
    expect_callable,
    safe_repr,
)


def _as_float(value: Any) -> float | None:
    """A plain number or a one-element tensor as a float; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach().item())
    return None


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


# ----------------------------------------------------------------------------- q1


class EpochAccuracy(Question):
    title = "The accuracy of an epoch from its batches"
    hints = [
        "An epoch's accuracy is the fraction of ALL its samples that were right, whatever "
        "the batches were.",
        "Add up the correct predictions over the batches, add up the batch sizes, then "
        "divide once. Averaging the batch accuracies gives a small last batch as much weight "
        "as a full one.",
        "`return sum(c for c, _ in batches) / sum(n for _, n in batches)`",
    ]
    solution_code = """
        def epoch_accuracy(batches):
            total_correct = sum(correct for correct, size in batches)
            total_seen = sum(size for correct, size in batches)
            return total_correct / total_seen
    """

    cases: tuple[tuple[tuple[int, int], ...], ...] = (
        ((8, 8), (8, 8), (0, 1)),
        ((3, 4), (1, 4), (2, 2)),
        ((5, 5),),
        ((0, 3), (2, 2)),
    )

    mistakes: tuple[tuple[Callable[[tuple[tuple[int, int], ...]], float], str], ...] = (
        (
            lambda b: sum(c / n for c, n in b) / len(b),
            "You averaged the batch accuracies. That gives a small last batch as much weight "
            "as a full one: add up the correct predictions and the sizes, then divide once.",
        ),
        (
            lambda b: sum(c for c, _ in b),
            "You returned the number of correct predictions: divide it by the number of samples.",
        ),
        (
            lambda b: sum(c for c, _ in b) / len(b),
            "You divided by the number of batches: divide by the number of samples (the sum "
            "of the batch sizes).",
        ),
        (
            lambda b: sum(c for c, _ in b) / (b[0][1] * len(b)),
            "You assumed every batch is as big as the first one: the last batch is often "
            "smaller. Add up the real sizes.",
        ),
        (
            lambda b: 100 * sum(c for c, _ in b) / sum(n for _, n in b),
            "That is a percentage: return the fraction between 0 and 1.",
        ),
    )

    def _check(self, epoch_accuracy: Any) -> None:
        expect_callable(epoch_accuracy, "epoch_accuracy")
        results = []
        for batches in self.cases:
            result = call_answer(epoch_accuracy, [tuple(pair) for pair in batches])
            number = _as_float(result)
            expect(
                number is not None,
                f"For batches {list(batches)} your function returned {safe_repr(result)}: "
                "return the accuracy as one number.",
            )
            results.append(number)
        for wrong, message in self.mistakes:
            if all(_close(r, wrong(b)) for r, b in zip(results, self.cases, strict=True)):
                raise Incorrect(message)
        for result, batches in zip(results, self.cases, strict=True):
            expected = sum(c for c, _ in batches) / sum(n for _, n in batches)
            expect(
                _close(result, expected),
                f"For (correct, size) batches {list(batches)} the accuracy should be "
                f"{expected:.4f}, but it is {result:.4f}.",
            )


q1 = EpochAccuracy()


# ----------------------------------------------------------------------------- q2


class _Probe(nn.Module):
    """A fixed tiny classifier that records how it was called."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        generator = torch.Generator().manual_seed(4)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(3, 4, generator=generator))
            self.linear.bias.copy_(torch.randn(3, generator=generator))
        self.grad_enabled: list[bool] = []
        self.training_mode: list[bool] = []
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grad_enabled.append(torch.is_grad_enabled())
        self.training_mode.append(self.training)
        self.batch_sizes.append(int(x.shape[0]))
        return self.linear(x)


def _probe_data() -> tuple[torch.Tensor, torch.Tensor]:
    """9 samples: with batches of 4 the last batch holds one sample, which the model gets
    badly wrong, so that a mean of batch means differs clearly from the true mean."""
    generator = torch.Generator().manual_seed(5)
    inputs = torch.randn(9, 4, generator=generator)
    probe = _Probe()
    with torch.no_grad():
        predictions = probe(inputs).argmax(dim=1)
    labels = predictions.clone()
    labels[[1, 6]] = (predictions[[1, 6]] + 1) % 3  # two mistakes in full batches
    labels[8] = (predictions[8] + 2) % 3  # the single sample of the last batch is wrong
    return inputs, labels


class EvaluateEpoch(Question):
    title = "An honest validation epoch: eval mode, no gradients, sample-weighted"
    hints = [
        "Two switches come before the loop: `model.eval()` (BatchNorm and Dropout behave as "
        "at test time) and `with torch.no_grad():` around the loop (no graph is recorded, "
        "which saves memory and time).",
        "`criterion` returns the MEAN loss of the batch. Multiply it by the batch size to "
        "get the batch's SUM, add those sums up, and divide by the number of samples at the "
        "end. Do the same with the correct predictions.",
        "`total_loss += loss.item() * labels.size(0)`, "
        "`total_correct += (outputs.argmax(dim=1) == labels).sum().item()`, "
        "`total_seen += labels.size(0)`.",
    ]
    solution_code = """
        def evaluate_epoch(model, loader, criterion):
            model.eval()
            total_loss, total_correct, total_seen = 0.0, 0, 0
            with torch.no_grad():
                for images, labels in loader:
                    outputs = model(images)
                    loss = criterion(outputs, labels)
                    total_loss += loss.item() * labels.size(0)
                    total_correct += (outputs.argmax(dim=1) == labels).sum().item()
                    total_seen += labels.size(0)
            return total_loss / total_seen, total_correct / total_seen
    """

    batch_size = 4

    def _check(self, evaluate_epoch: Any) -> None:
        expect_callable(evaluate_epoch, "evaluate_epoch")
        inputs, labels = _probe_data()
        loader = DataLoader(TensorDataset(inputs, labels), batch_size=self.batch_size)
        model = _Probe()
        model.train()  # a training loop leaves the model like this
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        criterion = nn.CrossEntropyLoss()

        result = call_answer(evaluate_epoch, model, loader, criterion)
        expect(
            isinstance(result, tuple | list) and len(result) == 2,
            f"Your function returned {safe_repr(result)}: return two numbers, `(loss, accuracy)`.",
        )
        loss, accuracy = _as_float(result[0]), _as_float(result[1])
        expect(
            loss is not None and accuracy is not None,
            f"Your function returned {safe_repr(result)}: both the loss and the accuracy "
            "should be numbers (use `.item()` to turn a one-element tensor into a float).",
        )
        changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
        expect(
            not changed,
            "Your function changed the model's weights: validation only measures. No "
            "`backward()` or `optimizer.step()` here.",
        )
        expect(model.batch_sizes, "Your function never ran the model on the loader's batches.")
        expect(
            model.batch_sizes == [4, 4, 1],
            f"The model saw batches of sizes {model.batch_sizes}; it should see each batch of "
            "the loader once (sizes [4, 4, 1]).",
        )
        expect(
            not any(model.training_mode),
            "The model was still in training mode: call `model.eval()` before the loop, so "
            "that BatchNorm uses its stored statistics and Dropout keeps every unit.",
        )
        expect(
            not any(model.grad_enabled),
            "Gradients were switched on during validation: autograd recorded a graph for "
            "every batch, which costs memory and time for nothing. Wrap the loop in "
            "`with torch.no_grad():`.",
        )
        self._check_numbers(loss, accuracy, inputs, labels)

    def _check_numbers(
        self, loss: float, accuracy: float, inputs: torch.Tensor, labels: torch.Tensor
    ) -> None:
        with torch.no_grad():
            outputs = _Probe()(inputs)
        per_sample = nn.functional.cross_entropy(outputs, labels, reduction="none")
        right = (outputs.argmax(dim=1) == labels).float()
        batches = [slice(0, 4), slice(4, 8), slice(8, 9)]
        true_loss, true_accuracy = per_sample.mean().item(), right.mean().item()
        mean_of_mean_losses = sum(per_sample[b].mean().item() for b in batches) / len(batches)
        mean_of_accuracies = sum(right[b].mean().item() for b in batches) / len(batches)
        total_loss = per_sample.sum().item()

        expect(
            not _close(loss, mean_of_mean_losses),
            "The loss is a mean of batch means: the last batch (1 sample) counts as much as "
            "a full one. Add `loss.item() * batch_size` per batch and divide by the number "
            "of samples at the end.",
        )
        expect(
            not _close(loss, total_loss),
            "The loss is the sum over all samples: divide it by the number of samples.",
        )
        expect(
            not _close(loss, total_loss / len(batches)),
            "You divided the summed loss by the number of batches: divide by the number of "
            "samples.",
        )
        expect(
            _close(loss, true_loss),
            f"The loss should be the mean over all 9 samples, {true_loss:.4f}, but it is "
            f"{loss:.4f}.",
        )
        expect(
            not _close(accuracy, mean_of_accuracies),
            "The accuracy is a mean of batch accuracies: count the correct predictions and "
            "the samples over the whole epoch, then divide once.",
        )
        expect(
            not _close(accuracy, right.sum().item()),
            "The accuracy is a count of correct predictions: divide it by the number of samples.",
        )
        expect(
            _close(accuracy, true_accuracy),
            f"The accuracy should be {true_accuracy:.4f} ({int(right.sum())} of 9 right), but it is "
            f"{accuracy:.4f}.",
        )


q2 = EvaluateEpoch()


# ----------------------------------------------------------------------------- q3


class SchedulerPlacement(Question):
    title = "Where scheduler.step() goes"
    hints = [
        "StepLR counts EPOCHS: `step_size=7` means 'decay every 7 epochs', so it must be "
        "stepped once per epoch, not once per batch.",
        "The first epoch should train at the initial learning rate, so the scheduler steps "
        "after the epoch's optimizer steps, not before them.",
        "Put `scheduler.step()` at C (after the inner loop, inside the epoch loop) and "
        "`pass` at A and B.",
    ]
    solution_code = """
        def run_schedule(optimizer, scheduler, epochs, batches_per_epoch):
            for epoch in range(epochs):
                pass  # A
                for batch in range(batches_per_epoch):
                    optimizer.step()
                    pass  # B
                scheduler.step()  # C: once per epoch, after its optimizer steps
    """

    #: (initial lr, step_size, gamma, epochs, batches per epoch)
    schedules: tuple[tuple[float, int, float, int, int], ...] = (
        (1.0, 2, 0.1, 5, 3),
        (0.8, 1, 0.5, 3, 2),
    )

    def _check(self, run_schedule: Any) -> None:
        expect_callable(run_schedule, "run_schedule")
        for lr, step_size, gamma, epochs, batches in self.schedules:
            used = self._record(run_schedule, lr, step_size, gamma, epochs, batches)
            expect(
                len(used) == epochs * batches,
                f"With {epochs} epochs of {batches} batches the optimizer should step "
                f"{epochs * batches} times, but it stepped {len(used)} times. Keep the "
                "`optimizer.step()` line inside the batch loop.",
            )
            per_epoch = [lr * gamma ** (e // step_size) for e in range(epochs)]
            expected = [rate for rate in per_epoch for _ in range(batches)]
            if all(_close(a, b) for a, b in zip(used, expected, strict=True)):
                continue
            epoch_rates = used[::batches]
            early = [lr * gamma ** ((e + 1) // step_size) for e in range(epochs)]
            expect(
                not all(_close(u, lr) for u in used),
                "The learning rate never changed: call `scheduler.step()` (once per epoch).",
            )
            expect(
                not all(_close(a, b) for a, b in zip(epoch_rates, early, strict=True)),
                "The learning rate drops one epoch too early: the scheduler stepped before "
                "the epoch's batches (and PyTorch warns about stepping it before the "
                "optimizer). Step it AFTER the epoch's optimizer steps.",
            )
            steps_inside = any(
                not _close(used[e * batches], used[e * batches + batches - 1])
                for e in range(epochs)
            )
            expect(
                not steps_inside,
                "The learning rate changes inside an epoch: you step the scheduler after "
                "every batch. StepLR counts epochs, so step it once per epoch, after the "
                "batch loop.",
            )
            raise Incorrect(
                f"The learning rates used per epoch were {[round(r, 6) for r in epoch_rates]}, "
                f"but StepLR(step_size={step_size}, gamma={gamma}) should give "
                f"{[round(r, 6) for r in per_epoch]}. Call `scheduler.step()` exactly once "
                "per epoch, after the batch loop."
            )

    @staticmethod
    def _record(
        run_schedule: Callable[..., Any],
        lr: float,
        step_size: int,
        gamma: float,
        epochs: int,
        batches: int,
    ) -> list[float]:
        """The learning rate in force at each optimizer step of the learner's schedule."""
        weight = nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.SGD([weight], lr=lr)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
        used: list[float] = []
        step = optimizer.step

        def recording_step(*args: Any, **kwargs: Any) -> Any:
            used.append(optimizer.param_groups[0]["lr"])
            return step(*args, **kwargs)

        optimizer.step = recording_step  # type: ignore[method-assign]
        with warnings.catch_warnings():
            # Stepping the scheduler first makes PyTorch warn; the check explains it instead.
            warnings.simplefilter("ignore")
            call_answer(run_schedule, optimizer, scheduler, epochs, batches)
        return used


q3 = SchedulerPlacement()


# ----------------------------------------------------------------------------- q4


class _TinyNet(nn.Module):
    """A small model with fixed weights and a BatchNorm, whose running statistics are buffers
    (in ``state_dict()``, not in ``parameters()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.norm = nn.BatchNorm1d(3)
        self.head = nn.Linear(3, 2)
        generator = torch.Generator().manual_seed(6)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.norm(self.linear(x))))


def _train_one_step(model: nn.Module) -> None:
    """One optimizer step in train mode: every weight and BatchNorm statistic changes."""
    generator = torch.Generator().manual_seed(7)
    inputs = torch.randn(8, 4, generator=generator)
    labels = torch.randint(0, 2, (8,), generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(inputs), labels).backward()
    optimizer.step()


class WeightsSnapshot(Question):
    title = "A snapshot of the weights that training leaves alone"
    hints = [
        "`model.state_dict()` does not copy anything: its tensors ARE the model's weights, so "
        "the next `optimizer.step()` changes them in place, and your 'best weights' with them.",
        "A new dict is not enough either: `dict(model.state_dict())` or `.copy()` hold the same "
        "tensors. Copy the tensors themselves, and keep every entry of the state_dict (BatchNorm's "
        "running statistics are in it, not in `model.parameters()`).",
        "`return copy.deepcopy(model.state_dict())`",
    ]
    solution_code = """
        def weights_snapshot(model):
            return copy.deepcopy(model.state_dict())
    """

    def _check(self, weights_snapshot: Any) -> None:
        expect_callable(weights_snapshot, "weights_snapshot")
        model = _TinyNet()
        reference = {name: value.clone() for name, value in model.state_dict().items()}
        snapshot = call_answer(weights_snapshot, model)
        expect(
            all(torch.equal(value, reference[name]) for name, value in model.state_dict().items()),
            "Your function changed the model's weights: a snapshot only copies them.",
        )
        self._check_contents(snapshot, reference, {name for name, _ in model.named_buffers()})
        _train_one_step(model)
        followed = [name for name in reference if not torch.equal(snapshot[name], reference[name])]
        expect(
            not followed,
            f"Your snapshot changed when the model trained one step ({', '.join(followed[:3])} "
            "changed), so it would end up holding the LAST weights instead of the best ones. "
            "`model.state_dict()` returns the model's own tensors, not copies (and so do "
            "`dict(...)`, `.copy()` and `.detach()` of it): copy them with "
            "`copy.deepcopy(model.state_dict())`.",
        )
        model.load_state_dict(snapshot)
        expect(
            all(torch.equal(value, reference[name]) for name, value in model.state_dict().items()),
            "Loading your snapshot back with `model.load_state_dict(...)` did not restore the "
            "weights it was taken from.",
        )

    @staticmethod
    def _check_contents(
        snapshot: Any, reference: Mapping[str, torch.Tensor], buffer_names: set[str]
    ) -> None:
        """The snapshot is a state_dict: the same names, holding the model's current values."""
        expect(
            not isinstance(snapshot, nn.Module),
            "You returned a model: return its weights, the dict of name -> tensor that "
            "`model.state_dict()` gives and `model.load_state_dict(...)` loads back.",
        )
        expect(
            isinstance(snapshot, Mapping),
            f"Your function returned {safe_repr(snapshot)}: return a dict of name -> tensor, "
            "like `model.state_dict()` (`model.parameters()` has no names and misses "
            "BatchNorm's running statistics).",
        )
        missing = [name for name in reference if name not in snapshot]
        buffers = [name for name in missing if name in buffer_names]
        expect(
            not buffers,
            f"Your snapshot lacks {', '.join(buffers)}: BatchNorm's running statistics are "
            "buffers, not parameters, so `model.parameters()` and `named_parameters()` miss "
            "them. `model.state_dict()` holds both.",
        )
        expect(
            not missing,
            f"Your snapshot lacks {', '.join(missing[:3])}: keep every entry of "
            "`model.state_dict()`.",
        )
        extra = [str(name) for name in snapshot if name not in reference]
        expect(
            not extra,
            f"Your snapshot has entries the model does not have ({', '.join(extra[:3])}): "
            "keep exactly the entries of `model.state_dict()`.",
        )
        wrong = [
            name
            for name, value in reference.items()
            if not isinstance(snapshot[name], torch.Tensor)
            or snapshot[name].shape != value.shape
            or not torch.equal(snapshot[name], value)
        ]
        expect(
            not wrong,
            f"Your snapshot does not hold the model's current values ({', '.join(wrong[:3])} "
            "differ): copy them as they are.",
        )


q4 = WeightsSnapshot()
