"""The training loop: honest metrics, schedulers, safe checkpoints, resume, cached features."""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import CyclicLR, OneCycleLR, ReduceLROnPlateau, StepLR
from torch.utils.data import DataLoader, TensorDataset

from coursekit import train
from coursekit.train import (
    CheckpointError,
    CheckpointMismatchError,
    History,
    evaluate,
    extract_features,
    feature_loaders,
    fit,
    fit_on_features,
    last_checkpoint_path,
    load_checkpoint,
    load_or_train,
    save_checkpoint,
    train_one_epoch,
)

N_CLASSES = 3
REQUIRED_KEYS = {
    "model_state",
    "optimizer_state",
    "optimizer_type",
    "scheduler_state",
    "epoch",
    "history",
    "rng_state",
    "metadata",
    "format_version",
}


def random_dataset(n: int = 40, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, 2, 3, generator=generator)
    return TensorDataset(inputs, torch.randint(0, N_CLASSES, (n,), generator=generator))


def tiny_model(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(6, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, N_CLASSES)
    )


def tiny_loaders(batch_size: int = 8, generator: torch.Generator | None = None) -> dict:
    return {
        "train": DataLoader(
            random_dataset(40, seed=1), batch_size=batch_size, shuffle=True, generator=generator
        ),
        "valid": DataLoader(random_dataset(20, seed=2), batch_size=batch_size),
    }


def quiet_fit(model: nn.Module, optimizer=None, loaders=None, **kwargs) -> History:
    """fit on CPU with SGD and tiny loaders unless told otherwise; silent by default."""
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.1)
    kwargs.setdefault("epochs", 2)
    kwargs.setdefault("progress", False)
    return fit(
        model,
        loaders or tiny_loaders(),
        nn.CrossEntropyLoss(),
        optimizer,
        device="cpu",
        **kwargs,
    )


#: Metadata as lessons store it: what the model is and how its inputs were prepared.
TRAINED_AS = {
    "class_names": ["ants", "bees", "wasps"],
    "arch": "tiny",
    "num_classes": N_CLASSES,
    "image_size": 3,
    "resize_size": 4,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
}


def without_times(history: History) -> dict:
    data = history.to_dict()
    del data["seconds"]
    return data


# --------------------------------------------------------------------------- metrics


def argmax_model() -> nn.Module:
    """Predicts the index of the larger of its two inputs."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(2))
        model[1].bias.zero_()
    return model


def test_metrics_are_weighted_by_samples_not_by_batches():
    # Batch 1: four samples, one right (25%). Batch 2: one sample, right (100%).
    inputs = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]])
    targets = torch.tensor([0, 1, 1, 1, 1])
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=4)
    model = argmax_model()
    exact_acc = 2 / 5
    exact_loss = F.cross_entropy(model(inputs), targets).item()
    mean_of_batch_accs = (1 / 4 + 1 / 1) / 2
    assert mean_of_batch_accs != pytest.approx(exact_acc)  # the data tells the two apart

    loss, acc = evaluate(model, loader, nn.CrossEntropyLoss(), "cpu")
    assert acc == exact_acc
    assert loss == pytest.approx(exact_loss, rel=1e-6)

    frozen = torch.optim.SGD(model.parameters(), lr=0.0)
    loss, acc = train_one_epoch(model, loader, nn.CrossEntropyLoss(), frozen, "cpu")
    assert acc == exact_acc
    assert loss == pytest.approx(exact_loss, rel=1e-6)


def test_single_batch_epoch_reports_the_outputs_before_the_step():
    inputs, targets = random_dataset(6)[:]
    model = tiny_model()
    before = model(inputs)
    expected_loss = F.cross_entropy(before, targets).item()
    expected_acc = (before.argmax(1) == targets).float().mean().item()
    weights_before = model[1].weight.detach().clone()

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss, acc = train_one_epoch(model, [(inputs, targets)], nn.CrossEntropyLoss(), optimizer, "cpu")
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    assert acc == pytest.approx(expected_acc)
    assert not torch.equal(model[1].weight, weights_before)


class Probe(nn.Module):
    """Records whether gradients were on and the module was training at each forward."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, N_CLASSES)
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((torch.is_grad_enabled(), self.training))
        return self.linear(x.flatten(1))


def test_evaluate_runs_in_eval_mode_without_gradients():
    probe, loaders = Probe(), tiny_loaders()
    optimizer = torch.optim.SGD(probe.parameters(), lr=0.1)
    train_one_epoch(probe, loaders["train"], nn.CrossEntropyLoss(), optimizer, "cpu")
    assert set(probe.calls) == {(True, True)}

    probe.calls.clear()
    weights = probe.linear.weight.detach().clone()
    evaluate(probe, loaders["valid"], nn.CrossEntropyLoss(), "cpu")
    assert set(probe.calls) == {(False, False)}
    assert probe.training is False  # documented: evaluate restores nothing
    assert torch.equal(probe.linear.weight, weights)


def test_an_empty_loader_is_a_clear_error():
    with pytest.raises(ValueError, match="no batches"):
        evaluate(tiny_model(), [], nn.CrossEntropyLoss(), "cpu")


# --------------------------------------------------------------------------- history


def test_history_records_best_epoch_keeping_the_first_of_ties():
    history = History()
    accs = [0.5, 0.7, 0.7, 0.6]
    improved = [
        history.record((1.0, 0.5), (1.0, acc), lrs=[0.1, 0.01], seconds=1.0) for acc in accs
    ]
    assert improved == [True, True, False, False]
    assert (history.best_epoch, history.best_acc, history.epochs_done) == (2, 0.7, 4)
    assert history.lr == [0.1] * 4 and history.lrs == [[0.1, 0.01]] * 4


def test_history_round_trips_through_plain_types():
    history = History()
    history.record((0.9, 0.25), (1.1, 0.5), lrs=[0.1], seconds=0.3)
    data = history.to_dict()
    assert json.loads(json.dumps(data)) == data
    restored = History.from_dict(data)
    assert restored == history and restored.epochs_done == 1
    restored.train_loss.append(0.0)
    assert history.train_loss == [0.9]  # from_dict copies, never shares lists


# --------------------------------------------------------------------------- fit and schedulers


def test_fit_history_and_learning_rates_with_step_lr_and_two_groups():
    model = tiny_model()
    optimizer = torch.optim.SGD(
        [
            {"params": model[1].parameters(), "lr": 0.1},
            {"params": model[4].parameters(), "lr": 1.0},
        ]
    )
    scheduler = StepLR(optimizer, step_size=2, gamma=0.1)
    history = quiet_fit(model, optimizer, epochs=4, scheduler=scheduler)

    assert history.epochs_done == 4
    for name in ("train_loss", "train_acc", "valid_loss", "valid_acc", "lr", "lrs", "seconds"):
        assert len(getattr(history, name)) == 4, name
    assert history.lr == pytest.approx([0.1, 0.1, 0.01, 0.01])
    assert [pytest.approx(lrs) for lrs in history.lrs] == [
        [0.1, 1.0],
        [0.1, 1.0],
        [0.01, 0.1],
        [0.01, 0.1],
    ]
    assert all(s > 0 for s in history.seconds)
    assert history.best_acc == max(history.valid_acc)
    assert history.best_epoch == history.valid_acc.index(max(history.valid_acc)) + 1
    for acc in history.train_acc:
        assert (acc * 40) == pytest.approx(round(acc * 40))  # correct/total, 40 samples


def test_a_scheduler_on_the_old_optimizer_is_refused():
    model = tiny_model()
    old = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = StepLR(old, step_size=1)
    new = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(ValueError, match="OLD optimizer") as error:
        quiet_fit(model, new, scheduler=scheduler)
    assert "after the new optimizer" in str(error.value)


def test_reduce_lr_on_plateau_gets_the_valid_loss():
    model = tiny_model()
    # The optimizer drives a parameter outside the model, so the model never changes,
    # the valid loss stays flat and the plateau scheduler must halve the LR.
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
    history = quiet_fit(model, optimizer, epochs=3, scheduler=scheduler)
    assert history.lr == pytest.approx([0.1, 0.1, 0.05])
    assert scheduler.best == pytest.approx(history.valid_loss[0])
    assert history.valid_loss[0] != pytest.approx(history.train_loss[0])


def test_reduce_lr_on_plateau_in_max_mode_watches_the_valid_accuracy(monkeypatch):
    # Accuracy rises every epoch while the loss stays flat: fed the loss, mode="max" would
    # see no progress and cut the LR; fed the accuracy, it keeps it.
    monkeypatch.setattr(train, "evaluate", scripted_evaluate([0.5, 0.6, 0.7, 0.8], []))
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=0)
    history = quiet_fit(model, optimizer, epochs=4, scheduler=scheduler)
    assert history.lr == pytest.approx([0.1] * 4)
    assert scheduler.best == pytest.approx(0.8)


def test_one_cycle_lr_steps_after_every_batch_and_ends_at_its_final_rate():
    epochs, loaders = 3, tiny_loaders()
    steps_per_epoch = len(loaders["train"])  # 40 samples in batches of 8: 5
    total_steps = epochs * steps_per_epoch
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    rates_used: list[float] = []  # the learning rate of every optimizer step
    optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: rates_used.append(opt.param_groups[0]["lr"])
    )
    scheduler = OneCycleLR(
        optimizer,
        max_lr=1.0,
        total_steps=total_steps,
        pct_start=0.2,  # the peak falls on step 0.2 * 15 - 1 = 2
        div_factor=25.0,
        final_div_factor=1e4,
    )
    history = quiet_fit(model, optimizer, loaders=loaders, epochs=epochs, scheduler=scheduler)

    assert scheduler.last_epoch == total_steps == len(rates_used)  # one step per batch
    assert rates_used[0] == pytest.approx(1.0 / 25.0)  # max_lr / div_factor
    assert max(rates_used) == pytest.approx(1.0)
    assert rates_used[-1] == pytest.approx(1.0 / 25.0 / 1e4)  # ... / final_div_factor
    # The history's rate per epoch is the one its first batch used.
    assert history.lr == pytest.approx(rates_used[::steps_per_epoch])


def test_cyclic_lr_steps_after_every_batch_and_step_lr_after_every_epoch():
    loaders = tiny_loaders()
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    cyclic = CyclicLR(optimizer, base_lr=0.01, max_lr=0.1, step_size_up=4, cycle_momentum=False)
    quiet_fit(model, optimizer, loaders=loaders, epochs=2, scheduler=cyclic)
    assert cyclic.last_epoch == 2 * len(loaders["train"])

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    step = StepLR(optimizer, step_size=1)
    quiet_fit(model, optimizer, loaders=loaders, epochs=2, scheduler=step)
    assert step.last_epoch == 2


def test_fit_needs_train_and_valid_loaders():
    with pytest.raises(ValueError, match="'valid'"):
        quiet_fit(tiny_model(), loaders={"train": tiny_loaders()["train"]})


def test_fit_is_reproducible_with_a_seed():
    def run(seed: int) -> History:
        return quiet_fit(tiny_model(dropout=0.3), epochs=2, seed=seed)

    first, again, other = run(0), run(0), run(1)
    assert without_times(first) == without_times(again)
    assert first.train_loss != other.train_loss  # the seed drives shuffling and dropout


def test_a_seed_reseeds_the_loaders_own_generator_so_a_rerun_repeats():
    # make_loaders gives the train loader its own generator: fit(seed=...) must reset it, or
    # running the same fit cell twice would shuffle differently the second time.
    loaders = tiny_loaders(generator=torch.Generator().manual_seed(0))
    start = tiny_model(dropout=0.3)
    first, again = (
        quiet_fit(copy.deepcopy(start), loaders=loaders, epochs=2, seed=0) for _ in range(2)
    )
    assert without_times(first) == without_times(again)


def test_a_model_that_returns_a_tuple_in_train_mode_gets_a_clear_message():
    class WithAuxiliaryOutput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = tiny_model()

        def forward(self, x):
            logits = self.body(x)
            return (logits, logits) if self.training else logits

    with pytest.raises(TypeError, match="returned a tuple in train mode.*aux_logits=False"):
        quiet_fit(WithAuxiliaryOutput())


def test_amp_is_never_used_on_cpu():
    runs = [quiet_fit(tiny_model(), epochs=1, seed=0, amp=amp) for amp in (True, False)]
    assert without_times(runs[0]) == without_times(runs[1])


def test_grad_scaler_only_on_cuda_unless_amp_is_switched_off(monkeypatch):
    # Without a GPU, GradScaler warns and disables itself: pretend CUDA is there.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for amp in (None, True):
        scaler = train._grad_scaler(torch.device("cuda"), amp)
        assert isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled()
    assert train._grad_scaler(torch.device("cuda"), False) is None
    for device in ("cpu", "mps"):
        for amp in (None, True, False):
            assert train._grad_scaler(torch.device(device), amp) is None, (device, amp)


def test_autocast_is_float16_on_cuda_and_does_nothing_elsewhere(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    on_gpu = train._autocast(torch.device("cuda"), enabled=True)
    assert isinstance(on_gpu, torch.autocast)
    assert (on_gpu.device, on_gpu.fast_dtype, on_gpu._enabled) == ("cuda", torch.float16, True)
    for device, enabled in [("cpu", True), ("mps", True), ("cuda", False)]:
        assert isinstance(train._autocast(torch.device(device), enabled), contextlib.nullcontext)


def test_progress_false_prints_nothing_and_true_shows_bars(capsys):
    quiet_fit(tiny_model(), epochs=1)
    assert capsys.readouterr() == ("", "")
    quiet_fit(tiny_model(), epochs=1, progress=True)
    assert "epochs" in capsys.readouterr().err


# --------------------------------------------------------------------------- checkpoints


def scripted_evaluate(accs: list[float], snapshots: list[dict]):
    """An evaluate() that returns the given accuracies and remembers the weights it saw."""
    scores = iter(accs)

    def fake(model, loader, criterion, device, progress=None):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return 1.0, next(scores)

    return fake


def test_best_checkpoint_is_written_only_when_valid_accuracy_improves(tmp_path, monkeypatch):
    snapshots: list[dict] = []
    monkeypatch.setattr(train, "evaluate", scripted_evaluate([0.5, 0.7, 0.7, 0.6], snapshots))
    path = tmp_path / "best.pt"
    quiet_fit(tiny_model(), epochs=4, checkpoint_path=path)

    best = torch.load(path, weights_only=True)
    assert best["epoch"] == 2  # the tie at epoch 3 and the drop at epoch 4 keep epoch 2
    assert History.from_dict(best["history"]).epochs_done == 2
    torch.testing.assert_close(best["model_state"], snapshots[1])
    last = torch.load(last_checkpoint_path(path), weights_only=True)
    assert last["epoch"] == 4
    torch.testing.assert_close(last["model_state"], snapshots[3])


def test_checkpoint_holds_everything_and_loads_with_weights_only(tmp_path):
    metadata = {**TRAINED_AS, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}  # tuples too
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    path = tmp_path / "runs" / "best.pt"
    history = quiet_fit(
        model,
        optimizer,
        epochs=2,
        scheduler=StepLR(optimizer, step_size=1),
        checkpoint_path=path,
        metadata=metadata,
    )
    state = torch.load(path, weights_only=True)
    assert set(state) == REQUIRED_KEYS
    assert state["format_version"] == 1
    assert state["metadata"] == metadata
    assert state["epoch"] == history.best_epoch
    assert state["scheduler_state"]["last_epoch"] == history.best_epoch
    assert state["optimizer_state"]["state"]  # Adam moments are there
    assert set(state["rng_state"]) == {"torch", "cuda", "python", "numpy", "generators"}
    assert History.from_dict(state["history"]).valid_acc == history.valid_acc[: state["epoch"]]
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.last.pt", "best.pt"]


def test_metadata_that_weights_only_cannot_load_is_refused_at_save(tmp_path):
    with pytest.raises(TypeError, match=r"metadata\['root'\] is a (Posix|Windows)Path"):
        save_checkpoint(tmp_path / "m.pt", model=tiny_model(), epoch=1, metadata={"root": tmp_path})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failure):
    path = tmp_path / "best.pt"
    save_checkpoint(path, model=tiny_model(seed=0), epoch=1)
    previous = path.read_bytes()

    def save_half_then_fail(obj, file, *args, **kwargs):
        file.write(previous[: len(previous) // 2])
        raise failure

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(type(failure)):
        save_checkpoint(path, model=tiny_model(seed=1), epoch=2)
    monkeypatch.undo()

    assert path.read_bytes() == previous
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # no temp file left
    assert load_checkpoint(path)["epoch"] == 1


@pytest.mark.parametrize("own_generator", [True, False], ids=["loader-generator", "global-rng"])
def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, own_generator):
    def run(epochs: int, path: Path, resume_from: Path | None = None):
        # A resumed model starts from other weights: everything must come from the file.
        model = tiny_model(seed=99 if resume_from else 0, dropout=0.3)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        generator = torch.Generator().manual_seed(0) if own_generator else None
        history = quiet_fit(
            model,
            optimizer,
            loaders=tiny_loaders(generator=generator),
            epochs=epochs,
            scheduler=StepLR(optimizer, step_size=3, gamma=0.5),
            checkpoint_path=path,
            resume_from=resume_from,
            seed=None if resume_from else 0,
        )
        return model, history

    full_model, full = run(4, tmp_path / "full.pt")
    _, first_half = run(2, tmp_path / "half.pt")
    assert first_half.epochs_done == 2
    resumed_model, resumed = run(
        4, tmp_path / "half.pt", last_checkpoint_path(tmp_path / "half.pt")
    )

    # The decay after epoch 3 needs the scheduler's step count from the checkpoint.
    assert resumed.lr == pytest.approx([0.01, 0.01, 0.01, 0.005])
    assert resumed.lr == full.lr
    assert without_times(resumed) == without_times(full)
    torch.testing.assert_close(resumed_model.state_dict(), full_model.state_dict())


def first_run_then_resume(tmp_path: Path, monkeypatch, **resume_kwargs) -> Path:
    """One epoch with TRAINED_AS, then a resume to 3 epochs whose every epoch is a new best."""
    monkeypatch.setattr(train, "evaluate", scripted_evaluate([0.5, 0.6, 0.7], []))
    path = tmp_path / "best.pt"
    quiet_fit(tiny_model(), epochs=1, checkpoint_path=path, metadata=TRAINED_AS)
    quiet_fit(
        tiny_model(seed=1),
        epochs=3,
        checkpoint_path=path,
        resume_from=last_checkpoint_path(path),
        **resume_kwargs,
    )
    return path


def test_resume_without_metadata_keeps_the_stored_metadata(tmp_path, monkeypatch):
    path = first_run_then_resume(tmp_path, monkeypatch)
    for written in (path, last_checkpoint_path(path)):
        state = load_checkpoint(written)
        assert state["epoch"] == 3  # both files were written again by the resumed run
        assert state["metadata"] == TRAINED_AS


def test_resume_with_matching_metadata_stores_it_as_given(tmp_path, monkeypatch):
    given = {**TRAINED_AS, "note": "resumed"}
    path = first_run_then_resume(tmp_path, monkeypatch, metadata=given)
    assert load_checkpoint(path)["metadata"] == given


@pytest.mark.parametrize(("key", "value"), [("arch", "resnet18"), ("num_classes", 5)])
def test_resume_refuses_metadata_of_another_model_before_touching_anything(tmp_path, key, value):
    path = tmp_path / "best.pt"
    quiet_fit(tiny_model(), epochs=1, checkpoint_path=path, metadata=TRAINED_AS)
    model = tiny_model(seed=1)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(CheckpointMismatchError, match=f"{key}: stored"):
        quiet_fit(
            model,
            epochs=2,
            checkpoint_path=path,
            resume_from=last_checkpoint_path(path),
            metadata={**TRAINED_AS, key: value},
        )
    torch.testing.assert_close(model.state_dict(), before)
    assert load_checkpoint(path)["metadata"] == TRAINED_AS


class InterruptingLoader:
    """Yields ``batches`` each epoch, but raises KeyboardInterrupt at one batch of one epoch."""

    def __init__(self, batches: list, stop_epoch: int, stop_batch: int) -> None:
        self.batches, self.stop_epoch, self.stop_batch = batches, stop_epoch, stop_batch
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        self.epoch += 1
        for index, batch in enumerate(self.batches):
            if (self.epoch, index) == (self.stop_epoch, self.stop_batch):
                raise KeyboardInterrupt
            yield batch


def test_ctrl_c_stops_cleanly_and_keeps_the_best_checkpoint(tmp_path, capsys):
    loaders = tiny_loaders()
    loaders["train"] = InterruptingLoader(list(loaders["train"]), stop_epoch=2, stop_batch=2)
    path = tmp_path / "best.pt"
    history = quiet_fit(tiny_model(), loaders=loaders, epochs=5, checkpoint_path=path)

    assert history.epochs_done == 1 and history.best_epoch == 1 and history.interrupted
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.last.pt", "best.pt"]
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    assert "epoch 2 of 5" in out and str(path) in out and f"{history.best_acc:.4f}" in out


@pytest.mark.parametrize(
    ("interrupted_save", "best_on_disk"), [(3, 1), (4, 2)], ids=["best-write", "latest-write"]
)
def test_ctrl_c_while_a_checkpoint_is_written_reports_what_the_files_hold(
    tmp_path, monkeypatch, capsys, interrupted_save, best_on_disk
):
    # Epochs 1 and 2 both improve, so each writes the best then the latest checkpoint:
    # save 3 is epoch 2's best checkpoint, save 4 its latest one.
    monkeypatch.setattr(train, "evaluate", scripted_evaluate([0.5, 0.7, 0.8], []))
    real_save, saves = torch.save, []

    def save(obj, file, *args, **kwargs):
        saves.append(file)
        if len(saves) == interrupted_save:
            raise KeyboardInterrupt
        real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    path = tmp_path / "best.pt"
    history = quiet_fit(tiny_model(), epochs=3, checkpoint_path=path)
    monkeypatch.undo()

    assert history.interrupted and history.epochs_done == 2
    assert load_checkpoint(path)["epoch"] == best_on_disk
    assert load_checkpoint(last_checkpoint_path(path))["epoch"] == 1
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    best_acc = [0.5, 0.7][best_on_disk - 1]
    assert f"Best checkpoint (epoch {best_on_disk}, valid acc {best_acc:.4f})" in out
    assert "the latest checkpoint holds epoch 1" in out
    assert "To continue after epoch 1" in out


# --------------------------------------------------------------------------- loading errors


def saved_checkpoint(tmp_path: Path, model: nn.Module, **kwargs) -> Path:
    metadata = {"arch": "tiny", "num_classes": N_CLASSES, "mean": (0.5, 0.5, 0.5)}
    return save_checkpoint(tmp_path / "model.pt", model=model, epoch=1, metadata=metadata, **kwargs)


def test_other_class_count_gives_a_readable_mismatch(tmp_path):
    path = saved_checkpoint(tmp_path, tiny_model())
    five_classes = nn.Sequential(
        nn.Flatten(), nn.Linear(6, 16), nn.ReLU(), nn.Dropout(), nn.Linear(16, 5)
    )
    with pytest.raises(CheckpointMismatchError) as error:
        load_checkpoint(path, five_classes)
    message = str(error.value)
    assert isinstance(error.value, ValueError)
    assert str(path) in message and "4.weight" in message
    assert "(3, 16)" in message and "(5, 16)" in message and "num_classes=3" in message


def test_other_architecture_in_metadata_gives_a_mismatch_before_loading(tmp_path):
    path = saved_checkpoint(tmp_path, tiny_model(seed=0))
    model = tiny_model(seed=1)
    weights = model[1].weight.detach().clone()
    with pytest.raises(CheckpointMismatchError) as error:
        load_checkpoint(path, model, expected={"arch": "resnet18", "num_classes": N_CLASSES})
    assert "'tiny'" in str(error.value) and "'resnet18'" in str(error.value)
    assert str(path) in str(error.value)
    assert torch.equal(model[1].weight, weights)

    expected = {"arch": "tiny", "num_classes": N_CLASSES, "mean": [0.5, 0.5, 0.5]}
    load_checkpoint(path, model, expected=expected)
    torch.testing.assert_close(model.state_dict(), tiny_model(seed=0).state_dict())


def test_optimizer_with_other_groups_gives_a_mismatch(tmp_path):
    model = tiny_model()
    path = saved_checkpoint(tmp_path, model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    two_groups = torch.optim.SGD(
        [{"params": model[1].parameters()}, {"params": model[4].parameters()}], lr=0.1
    )
    with pytest.raises(CheckpointMismatchError, match="optimizer"):
        load_checkpoint(path, model, two_groups)


@pytest.mark.parametrize(
    ("map_location", "device_type"),
    [("cpu", "cpu"), (torch.device("cpu"), "cpu"), ("meta", "meta"), ({"cpu": "meta"}, "meta")],
)
def test_map_location_is_honoured(tmp_path, map_location, device_type):
    path = saved_checkpoint(tmp_path, tiny_model())
    state = load_checkpoint(path, map_location=map_location)
    assert {t.device.type for t in state["model_state"].values()} == {device_type}


def test_missing_checkpoint_names_the_file_and_how_to_make_it(tmp_path):
    path = tmp_path / "nowhere.pt"
    with pytest.raises(FileNotFoundError) as error:
        load_checkpoint(path)
    assert str(path) in str(error.value) and "checkpoint_path" in str(error.value)


@pytest.mark.parametrize("damage", ["truncated", "empty", "text"])
def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path, damage):
    path = saved_checkpoint(tmp_path, tiny_model())
    contents = {"truncated": path.read_bytes()[:200], "empty": b"", "text": b"not a model"}
    path.write_bytes(contents[damage])
    with pytest.raises(CheckpointError, match="corrupt") as error:
        load_checkpoint(path, tiny_model())
    assert str(path) in str(error.value)


def test_a_bare_state_dict_is_not_mistaken_for_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(tiny_model().state_dict(), path)
    with pytest.raises(CheckpointError, match="not a coursekit checkpoint"):
        load_checkpoint(path, tiny_model())


# --------------------------------------------------------------------------- reuse or train

RECIPE = {"arch": "tiny", "class_names": ["a", "b", "c"], "epochs": 2}


def must_not_train() -> History:
    raise AssertionError("trained although a model made the same way was saved")


def test_load_or_train_trains_and_saves_once_then_reuses(tmp_path, capsys):
    path = tmp_path / "head.pt"
    model = tiny_model(seed=0)
    history = load_or_train(path, model, lambda: quiet_fit(model), metadata=RECIPE)
    assert history.epochs_done == 2 and "Saved the trained model" in capsys.readouterr().out

    fresh = tiny_model(seed=1)
    reused = load_or_train(path, fresh, must_not_train, metadata=RECIPE)

    assert reused == history
    torch.testing.assert_close(fresh.state_dict(), model.state_dict())
    assert "Reusing the model saved in" in capsys.readouterr().out


def test_load_or_train_does_not_save_an_interrupted_training(tmp_path, capsys):
    path = tmp_path / "head.pt"
    model = tiny_model(seed=0)
    loaders = tiny_loaders()
    loaders["train"] = InterruptingLoader(list(loaders["train"]), stop_epoch=2, stop_batch=0)

    history = load_or_train(path, model, lambda: quiet_fit(model, loaders=loaders), metadata=RECIPE)

    assert history.interrupted and not path.exists()
    assert "nothing was saved" in capsys.readouterr().out
    trained = load_or_train(path, model, lambda: quiet_fit(model), metadata=RECIPE)
    assert not trained.interrupted and path.exists()


def other_class_count() -> nn.Module:
    torch.manual_seed(0)  # same layer names as tiny_model, a head with 5 outputs
    return nn.Sequential(
        nn.Flatten(), nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.0), nn.Linear(16, 5)
    )


@pytest.mark.parametrize(
    ("stale", "reason"),
    [
        ("other recipe", "made another way"),
        ("other model", "does not fit this model"),
        ("no history", "holds no training history"),
        ("corrupt file", "cannot be read"),
    ],
)
def test_load_or_train_trains_again_when_the_saved_model_cannot_be_reused(
    tmp_path, capsys, stale, reason
):
    path = tmp_path / "head.pt"
    if stale == "corrupt file":
        path.write_bytes(b"half a checkpoint")
    else:
        saved_model = other_class_count() if stale == "other model" else tiny_model(seed=3)
        metadata = {**RECIPE, "epochs": 1} if stale == "other recipe" else RECIPE
        history = None if stale == "no history" else History()
        save_checkpoint(path, model=saved_model, epoch=1, history=history, metadata=metadata)
    model = tiny_model(seed=0)
    untouched = copy.deepcopy(model.state_dict())

    def train_model() -> History:
        # Nothing of the stale checkpoint may have been loaded before training starts.
        torch.testing.assert_close(model.state_dict(), untouched)
        return quiet_fit(model)

    history = load_or_train(path, model, train_model, metadata=RECIPE)

    assert reason in capsys.readouterr().out
    state = load_checkpoint(path, expected=RECIPE)
    assert state["history"] == history.to_dict() and state["epoch"] == history.epochs_done == 2
    torch.testing.assert_close(state["model_state"], model.state_dict())


# --------------------------------------------------------------------------- callbacks


def test_callbacks_get_the_history_after_every_epoch():
    seen = []
    history = quiet_fit(tiny_model(), epochs=3, callbacks=[lambda h: seen.append(h.epochs_done)])
    assert seen == [1, 2, 3] and history.epochs_done == 3


# --------------------------------------------------------------------------- cached features


def tiny_backbone() -> nn.Module:
    torch.manual_seed(0)
    # Dropout makes a forward pass in train mode differ from eval mode.
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(2)
    )


def image_loader(n: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 8, 8, generator=generator)
    labels = torch.randint(0, N_CLASSES, (n,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=5)


def test_extract_features_gives_flat_cpu_features_in_eval_mode():
    backbone, loader = tiny_backbone(), image_loader(12, seed=0)
    features = extract_features(backbone, loader, "cpu")
    images, labels = loader.dataset.tensors

    cached, cached_labels = features.tensors
    assert cached.shape == (12, 4 * 2 * 2) and cached.device.type == "cpu"
    assert backbone.training is False
    torch.testing.assert_close(cached, backbone(images).flatten(1))
    assert torch.equal(cached_labels, labels)
    assert not cached.is_inference() and not cached.requires_grad


def test_a_head_trains_on_cached_features_with_the_same_history():
    backbone = tiny_backbone()
    train_features = extract_features(backbone, image_loader(14, seed=1), "cpu")
    valid_features = extract_features(backbone, image_loader(7, seed=2), "cpu")
    loaders = feature_loaders(train_features, valid_features, batch_size=4, seed=0)
    head = nn.Linear(16, N_CLASSES)
    weights = head.weight.detach().clone()

    history = quiet_fit(head, loaders=loaders, epochs=2)
    assert set(history.to_dict()) == set(History().to_dict())
    assert history.epochs_done == 2 and not torch.equal(head.weight, weights)
    for acc in history.valid_acc:
        assert (acc * 7) == pytest.approx(round(acc * 7))  # correct/total over 7 samples


def test_feature_loaders_shuffle_train_reproducibly_and_keep_valid_order():
    data = TensorDataset(torch.arange(20.0).unsqueeze(1), torch.zeros(20, dtype=torch.long))

    def first_batches(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        loaders = feature_loaders(data, data, batch_size=20, seed=seed)
        return next(iter(loaders["train"]))[0], next(iter(loaders["valid"]))[0]

    (train_a, valid_a), (train_b, _), (train_c, _) = (
        first_batches(0),
        first_batches(0),
        first_batches(1),
    )
    assert torch.equal(train_a, train_b) and not torch.equal(train_a, train_c)
    assert torch.equal(valid_a, data.tensors[0])


def test_fit_on_features_trains_only_the_head_exactly_like_the_manual_recipe():
    backbone = tiny_backbone()
    loaders = {"train": image_loader(14, seed=1), "valid": image_loader(7, seed=2)}
    backbone_before = copy.deepcopy(backbone.state_dict())
    torch.manual_seed(0)
    head = nn.Linear(16, N_CLASSES)
    manual_head = copy.deepcopy(head)
    head_before = copy.deepcopy(head.state_dict())

    def sgd(module: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(module.parameters(), lr=0.1)

    history = fit_on_features(
        backbone, head, loaders, nn.CrossEntropyLoss(), sgd(head),
        epochs=3, device="cpu", seed=5, progress=False,
    )  # fmt: skip

    # The manual sequence, with the train loader's batch size (5) and the same seed.
    train_features = extract_features(backbone, loaders["train"], "cpu")
    valid_features = extract_features(backbone, loaders["valid"], "cpu")
    manual = fit(
        manual_head,
        feature_loaders(train_features, valid_features, batch_size=5, seed=5),
        nn.CrossEntropyLoss(),
        sgd(manual_head),
        epochs=3,
        device="cpu",
        progress=False,
    )
    assert history.epochs_done == 3 and without_times(history) == without_times(manual)
    torch.testing.assert_close(head.state_dict(), manual_head.state_dict())
    assert not torch.equal(head.weight, head_before["weight"])
    torch.testing.assert_close(backbone.state_dict(), backbone_before)


def test_fit_on_features_asks_for_a_batch_size_it_cannot_read():
    batches = [next(iter(image_loader(5, seed=1)))]  # a plain list of batches has no batch_size
    head = nn.Linear(16, N_CLASSES)
    with pytest.raises(ValueError, match="batch_size=settings.batch_size"):
        fit_on_features(
            tiny_backbone(), head, {"train": batches, "valid": batches}, nn.CrossEntropyLoss(),
            torch.optim.SGD(head.parameters(), lr=0.1), epochs=1, device="cpu", progress=False,
        )  # fmt: skip
