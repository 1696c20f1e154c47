"""Training: one ``fit`` loop, honest metrics, safe checkpoints, resume and cached features.

This module knows nothing about datasets or architectures. It takes a model, loaders (any
iterables of ``(inputs, targets)`` batches), a loss, an optimizer and optionally an LR
scheduler:

    >>> history = fit(model, {"train": train_dl, "valid": valid_dl}, nn.CrossEntropyLoss(),
    ...               optimizer, epochs=5, checkpoint_path="runs/best.pt")  # doctest: +SKIP

What it does better than the usual tutorial loop:

* Loss and accuracy are weighted by samples over the whole epoch, so a smaller last batch
  counts for what it is (a mean of batch means over-weights it).
* Running sums stay on the device and are read once per epoch: no GPU sync per batch.
* Validation runs in ``eval`` mode without gradients.
* Checkpoints are written atomically (temp file + ``os.replace``), hold plain types only
  and load with ``torch.load(weights_only=True)``; loading a checkpoint into the wrong
  model gives a short message naming the layer and the fix.
* Ctrl-C stops training cleanly and keeps the best checkpoint.
* Schedulers are stepped when their schedule says: ``OneCycleLR`` and ``CyclicLR`` after
  every batch, the others after every epoch.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from coursekit import distributed as ddp
from coursekit._model_state import DeviceLike
from coursekit._safe_io import (
    NotWritableError,
    atomic_write,
    explained_write_errors,
    first_unsafe_value,
    refused_as_unsafe,
    stale_temporary_files,
)
from coursekit.config import pick_device, seed_everything

#: Bumped when the layout of the checkpoint dict changes.
CHECKPOINT_FORMAT_VERSION = 1

#: Schedulers whose schedule counts optimizer steps (batches), not epochs.
_PER_BATCH_SCHEDULERS = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR)

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
#: Called with the History after every epoch (see ``fit(callbacks=...)``).
EpochCallback = Callable[["History"], None]


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or is not a coursekit checkpoint."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint was written for another model (architecture, class count, optimizer)."""


class CheckpointInUseError(CheckpointError):
    """Another training run is writing to the same checkpoint path right now."""


#: When this process started using coursekit: temporary files older than this that no
#: running fit holds were left by a process that was killed.
_PROCESS_STARTED = time.time()


# --------------------------------------------------------------------------- history


@dataclass
class History:
    """What happened in each epoch of :func:`fit`; every list has one entry per epoch.

    ``lr[e]`` is the learning rate of parameter group 0 at the START of epoch ``e + 1``,
    i.e. the rate its optimizer steps used (an epoch scheduler steps after the epoch; with
    a per-batch scheduler such as ``OneCycleLR`` it is the rate of the epoch's first batch).
    ``lrs[e]`` lists the start-of-epoch rate of every parameter group, which matters
    with discriminative learning rates. ``best_epoch`` is 1-based; 0 means "no epoch yet".

    >>> h = History(); h.record((0.9, 0.5), (1.0, 0.4), lrs=[0.1], seconds=1.0)
    True
    >>> h.epochs_done, h.best_epoch, h.best_acc
    (1, 1, 0.4)
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    valid_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    lrs: list[list[float]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_acc: float = 0.0
    best_epoch: int = 0
    #: True when Ctrl-C stopped :func:`fit` before all its epochs were done.
    interrupted: bool = False

    @property
    def epochs_done(self) -> int:
        return len(self.valid_acc)

    def record(
        self,
        train: tuple[float, float],
        valid: tuple[float, float],
        *,
        lrs: list[float],
        seconds: float,
    ) -> bool:
        """Append one epoch's ``(loss, acc)`` pairs; True if its valid accuracy is a new best.

        Ties keep the earlier epoch: a later epoch must be strictly better.

        >>> History().record((1.0, 0.0), (1.0, 0.0), lrs=[0.1], seconds=0.5)
        True
        """
        self.train_loss.append(float(train[0]))
        self.train_acc.append(float(train[1]))
        self.valid_loss.append(float(valid[0]))
        self.valid_acc.append(float(valid[1]))
        self.lr.append(float(lrs[0]))
        self.lrs.append([float(lr) for lr in lrs])
        self.seconds.append(float(seconds))
        improved = self.best_epoch == 0 or self.valid_acc[-1] > self.best_acc
        if improved:
            self.best_acc, self.best_epoch = self.valid_acc[-1], self.epochs_done
        return improved

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers, safe to store in a ``weights_only`` checkpoint or JSON.

        >>> History().to_dict()["best_epoch"]
        0
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """The inverse of :meth:`to_dict`; keys it does not know are ignored.

        >>> History.from_dict(History().to_dict()) == History()
        True
        """
        return cls(**{f.name: copy.deepcopy(data[f.name]) for f in fields(cls) if f.name in data})


# --------------------------------------------------------------------------- one epoch


class _EpochTotals:
    """Sample-weighted loss and accuracy sums, kept on the device until the epoch ends.

    Calling ``.item()`` per batch would make the CPU wait for the GPU at every step.
    """

    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.seen = 0

    def add(self, loss: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        batch_size = targets.size(0)
        # The criterion averages over the batch, so this turns it back into a sum.
        self.loss_sum += loss.detach().float() * batch_size
        self.correct += (outputs.detach().argmax(dim=1) == targets).sum()
        self.seen += batch_size

    def result(self, what: str) -> tuple[float, float]:
        # Under torchrun each process saw its own shard: the epoch's numbers are the sums
        # over all of them (one collective call; outside a process group nothing happens).
        loss_sum, correct, seen = ddp.all_reduce_sums(self.loss_sum, self.correct, self.seen)
        if seen == 0:
            raise ValueError(
                f"The {what} loader produced no batches. Check that its dataset is not empty "
                "and that drop_last=True does not drop the only (smaller) batch."
            )
        return loss_sum / seen, correct / seen


def _to_device(
    batch: tuple[torch.Tensor, torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, targets = batch
    return inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)


def train_one_epoch(
    model: nn.Module,
    loader: Batches,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: DeviceLike,
    scaler: torch.amp.GradScaler | None = None,
    progress: tqdm | None = None,
    scheduler: Any | None = None,
) -> tuple[float, float]:
    """One pass over ``loader`` with an optimizer step per batch; returns ``(loss, acc)``.

    Both numbers are averages over all samples of the epoch, computed from the outputs
    seen before each step. ``criterion`` must average over the batch (the default
    ``reduction="mean"``). With a ``scaler`` (CUDA only) the forward pass runs under
    float16 autocast. ``progress`` is a bar advanced once per batch. ``scheduler`` is a
    per-batch scheduler (``OneCycleLR``, ``CyclicLR``) stepped after every optimizer step;
    leave it None for epoch schedulers such as ``StepLR``.

    >>> loss, acc = train_one_epoch(model, train_dl, nn.CrossEntropyLoss(),
    ...                             optimizer, "cpu")  # doctest: +SKIP
    """
    device = torch.device(device)
    model.train()
    totals = _EpochTotals(device)
    for batch in loader:
        inputs, targets = _to_device(batch, device)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, enabled=scaler is not None):
            outputs = model(inputs)
            _check_outputs(outputs)
            loss = criterion(outputs, targets)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        if scheduler is not None:
            scheduler.step()
        totals.add(loss, outputs, targets)
        if progress is not None:
            progress.update(1)
    return totals.result("train")


def _check_outputs(outputs: Any) -> None:
    if not isinstance(outputs, torch.Tensor):
        raise TypeError(
            f"The model returned a {type(outputs).__name__} in train mode, not a tensor of "
            "class scores the loss can take. GoogLeNet and Inception v3 do that when they have "
            "auxiliary heads: build them with aux_logits=False (coursekit.pretrained does)."
        )


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: Batches,
    criterion: nn.Module,
    device: DeviceLike,
    progress: tqdm | None = None,
) -> tuple[float, float]:
    """Sample-weighted ``(loss, acc)`` of ``model`` on ``loader``, in eval mode, without grad.

    The model is left in eval mode (nothing is restored): call ``model.train()`` before
    training again, as :func:`train_one_epoch` does.
    Under torchrun the totals are summed over all processes, so every process must call it
    (a call on rank 0 alone would wait for the others forever).

    >>> loss, acc = evaluate(model, valid_dl, nn.CrossEntropyLoss(), "cpu")  # doctest: +SKIP
    >>> model.training  # doctest: +SKIP
    False
    """
    device = torch.device(device)
    model.eval()
    totals = _EpochTotals(device)
    for batch in loader:
        inputs, targets = _to_device(batch, device)
        outputs = model(inputs)
        totals.add(criterion(outputs, targets), outputs, targets)
        if progress is not None:
            progress.update(1)
    return totals.result("valid")


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    # float16 needs the GradScaler; it runs on every CUDA GPU (bfloat16 needs Ampere+).
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _grad_scaler(device: torch.device, amp: bool | None) -> torch.amp.GradScaler | None:
    """A GradScaler when mixed precision is wanted and possible: on CUDA only, never CPU/MPS."""
    if device.type != "cuda" or amp is False:
        return None
    return torch.amp.GradScaler("cuda")


# --------------------------------------------------------------------------- fit


def fit(
    model: nn.Module,
    loaders: Mapping[str, Batches],
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    scheduler: Any | None = None,
    device: DeviceLike | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    resume_from: str | os.PathLike[str] | None = None,
    callbacks: Sequence[EpochCallback] = (),
    progress: bool = True,
    amp: bool | None = None,
    seed: int | None = None,
) -> History:
    """Train on ``loaders["train"]`` and validate on ``loaders["valid"]`` for ``epochs`` epochs.

    * ``scheduler`` must drive ``optimizer``. ``OneCycleLR`` and ``CyclicLR`` are stepped
      after every batch (create them with ``total_steps=epochs * len(loaders["train"])``);
      every other scheduler once per epoch, after the optimizer steps.
      ``ReduceLROnPlateau`` gets the valid loss, or the valid accuracy when it was
      created with ``mode="max"``.
    * ``checkpoint_path``: when valid accuracy improves (ties keep the first), the state is
      written there (the best checkpoint). After every epoch the state is also written to
      :func:`last_checkpoint_path` (``best.pt`` -> ``best.last.pt``): resuming needs the
      LAST epoch's optimizer and scheduler, not the best one's. ``metadata`` (class
      names, arch, num_classes, image sizes, mean/std...) is stored as given.
    * ``resume_from``: a checkpoint written by ``fit`` (normally the ``.last.pt`` one).
      Model, optimizer, scheduler, history and random states are restored and training
      continues at the next epoch until ``epochs`` epochs are done in total. Without
      ``metadata`` the checkpoint's own metadata is kept; metadata whose arch,
      num_classes or class_names differ from the checkpoint's is refused, and so is an
      optimizer of another type or with other settings, before anything is loaded.
    * Ctrl-C (KeyboardInterrupt) stops cleanly: one line is printed (even with
      ``progress=False``) and the history of the finished epochs is returned. The model
      keeps its mid-epoch weights; the best checkpoint on disk is intact, and the line
      names the epochs the files on disk really hold. A full disk or a read-only folder
      stops it the same way, with one line saying so.
    * One run at a time per ``checkpoint_path``: a second run is refused with a
      ``CheckpointInUseError`` naming the process that holds it. Temporary files that a
      run killed while saving left there are removed (and reported).
    * ``device=None`` picks cuda, then mps, then cpu. ``amp=None`` uses mixed precision on
      CUDA only; it is never used on CPU or MPS. ``seed`` seeds everything first, the
      loaders' own shuffling generators (``DataLoader(generator=...)``) included, so
      running a fit cell again on the same loaders repeats the run.
    * ``progress=False`` prints nothing. ``callbacks``: functions called with the
      ``History`` after every epoch, e.g. ``coursekit.LivePlot()`` (curves redrawn in a
      notebook) or ``coursekit.TensorBoardLogger("runs/tb")``.
    * Under ``torchrun`` (``torch.distributed`` initialised, see ``coursekit.distributed``)
      the same call trains data-parallel: DataLoaders are sharded per process (training
      reshuffled every epoch, validation split in order), the model is wrapped in
      ``DistributedDataParallel``, the device follows ``LOCAL_RANK``, epoch totals are
      summed over processes (every process gets the same History, best epoch and
      scheduler steps), and only rank 0 prints, writes checkpoints and runs callbacks.
      Checkpoints hold the plain model's keys. ``epochs`` and resuming work as usual.

    When ``fit`` returns, the model holds the LAST epoch's weights; the best ones are in
    ``checkpoint_path`` (see :func:`load_checkpoint`).

    >>> history = fit(model, loaders, nn.CrossEntropyLoss(), optimizer, epochs=3)  # doctest: +SKIP
    >>> history.best_acc, history.best_epoch  # doctest: +SKIP
    """
    _check_fit_arguments(loaders, optimizer, scheduler, epochs)
    loaders = ddp.shard_loaders(loaders, seed)  # unchanged outside torchrun
    generators = _loader_generators(loaders)
    if seed is not None:
        seed_everything(seed)
        for generator in generators.values():
            generator.manual_seed(seed)
    # Only the process that writes checkpoints (rank 0 under torchrun) holds their path.
    with _checkpoint_lock(checkpoint_path if ddp.is_main_process() else None):
        return _fit(
            model,
            loaders,
            criterion,
            optimizer,
            epochs=epochs,
            scheduler=scheduler,
            device=device,
            checkpoint_path=checkpoint_path,
            metadata=metadata,
            resume_from=resume_from,
            callbacks=callbacks,
            progress=progress,
            amp=amp,
            generators=generators,
        )


def _fit(
    model: nn.Module,
    loaders: Mapping[str, Batches],
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    scheduler: Any | None,
    device: DeviceLike | None,
    checkpoint_path: str | os.PathLike[str] | None,
    metadata: Mapping[str, Any] | None,
    resume_from: str | os.PathLike[str] | None,
    callbacks: Sequence[EpochCallback],
    progress: bool,
    amp: bool | None,
    generators: Mapping[str, torch.Generator],
) -> History:
    """The epochs of :func:`fit`, once its arguments are checked and its checkpoints locked."""
    device = ddp.default_device() if device is None else torch.device(device)
    model = ddp.unwrap(model)
    model.to(device)
    scaler = _grad_scaler(device, amp)
    progress = progress and ddp.is_main_process()
    history = History()
    saved = _SavedEpochs()
    if resume_from is not None:
        history, metadata = _resume(resume_from, model, optimizer, scheduler, generators, metadata)
        saved = _SavedEpochs.on_disk(checkpoint_path, history)
    batch_scheduler = scheduler if isinstance(scheduler, _PER_BATCH_SCHEDULERS) else None
    trained = ddp.wrap(model, device)  # DistributedDataParallel under torchrun, else model
    first = history.epochs_done + 1
    epoch_bar = tqdm(
        range(first, epochs + 1),
        total=epochs,
        initial=first - 1,
        desc="epochs",
        unit="epoch",
        disable=not progress,
    )
    epoch = first
    try:
        for epoch in epoch_bar:
            lrs = [group["lr"] for group in optimizer.param_groups]
            started = time.perf_counter()
            ddp.set_epoch(loaders["train"], epoch)  # a new shuffle of the shards every epoch
            with _batch_bar(loaders["train"], f"epoch {epoch} train", progress) as bar:
                train = train_one_epoch(
                    trained,
                    loaders["train"],
                    criterion,
                    optimizer,
                    device,
                    scaler,
                    bar,
                    scheduler=batch_scheduler,
                )
            with _batch_bar(loaders["valid"], f"epoch {epoch} valid", progress) as bar:
                valid = evaluate(model, loaders["valid"], criterion, device, bar)
            if batch_scheduler is None:
                _step_scheduler(scheduler, valid)
            improved = history.record(train, valid, lrs=lrs, seconds=time.perf_counter() - started)
            if checkpoint_path is not None and ddp.is_main_process():
                _save_fit_checkpoints(
                    checkpoint_path,
                    improved,
                    saved,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    epoch=epoch,
                    history=history,
                    metadata=metadata,
                    generators=generators,
                )
            epoch_bar.set_postfix_str(_epoch_summary(history))
            for callback in callbacks if ddp.is_main_process() else ():
                callback(history)
    # Ctrl-C, or a full disk: neither may cost the learner the epochs already trained.
    except (KeyboardInterrupt, NotWritableError) as stop:
        history.interrupted = True
        if ddp.is_main_process() or isinstance(stop, NotWritableError):
            print(_stop_message(stop, epoch, epochs, history, checkpoint_path, saved))
    finally:
        epoch_bar.close()
    return history


@contextlib.contextmanager
def _checkpoint_lock(checkpoint_path: str | os.PathLike[str] | None) -> Iterator[None]:
    """Hold the checkpoint path for this run: a second run writing there is refused.

    Two runs sharing a path would mix their files (the best of one, the latest of the
    other). Who holds the lock is written next to it, so the refusal can name that run.
    Temporary files that a killed run left at the path are removed once the lock is ours.
    """
    if checkpoint_path is None:
        yield
        return
    path = Path(checkpoint_path)
    lock_path = path.with_name(f".{path.name}.lock")
    owner_path = path.with_name(f".{path.name}.owner")
    fix = "pass another checkpoint_path, on a disk you can write to."
    with explained_write_errors(f"the checkpoint {path}", path.parent, fix):
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(lock_path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise CheckpointInUseError(
                f"Another training run is writing its checkpoints to {path} right now "
                f"({_lock_owner(owner_path)}). Two runs sharing one path would mix their "
                "files. Fix: wait until it has finished (or stop it), or give this run "
                "another checkpoint_path."
            ) from None
    try:
        with explained_write_errors(f"the checkpoint {path}", path.parent, fix):
            owner_path.write_text(
                f"process {os.getpid()} on {socket.gethostname()}, since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n",
                encoding="utf-8",
            )
        _remove_stale_temporary_files(path)
        yield
    finally:
        owner_path.unlink(missing_ok=True)
        lock.release()
        lock_path.unlink(missing_ok=True)  # leave runs/ holding only the checkpoints


def _lock_owner(owner_path: Path) -> str:
    try:
        return owner_path.read_text(encoding="utf-8").strip()
    except OSError:
        return "a process that has not said who it is yet"


def _remove_stale_temporary_files(checkpoint_path: Path) -> None:
    """Delete what runs killed while saving left behind (``.best.pt.*.tmp``), and say so."""
    stale = [
        temporary
        for path in (checkpoint_path, last_checkpoint_path(checkpoint_path))
        for temporary in stale_temporary_files(path, older_than=_PROCESS_STARTED)
    ]
    if not stale:
        return
    size = sum(temporary.stat().st_size for temporary in stale)
    for temporary in stale:
        temporary.unlink(missing_ok=True)
    print(
        f"Removed {len(stale)} temporary file(s) ({size / 1e6:.1f} MB) that an earlier run "
        f"left in {checkpoint_path.parent} when it was stopped while saving {checkpoint_path.name}."
    )


def _check_fit_arguments(
    loaders: Mapping[str, Batches],
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    epochs: int,
) -> None:
    if not isinstance(loaders, Mapping) or not {"train", "valid"} <= set(loaders):
        got = sorted(loaders) if isinstance(loaders, Mapping) else type(loaders).__name__
        raise ValueError(
            f"fit needs loaders={{'train': ..., 'valid': ...}}, got {got}. "
            "Build the dict with coursekit.make_loaders(...) or feature_loaders(...)."
        )
    if epochs < 1:
        raise ValueError(f"epochs={epochs}: fit needs at least 1 epoch.")
    if scheduler is not None and getattr(scheduler, "optimizer", None) is not optimizer:
        raise ValueError(
            "The scheduler passed to fit drives a different optimizer than the one passed "
            "to fit: your scheduler still drives the OLD optimizer, so its learning-rate "
            "changes would never reach training (a common mistake after unfreezing a "
            "backbone). Create the scheduler after the new optimizer, e.g. "
            "scheduler = StepLR(optimizer, step_size=..., gamma=...)."
        )


@dataclass
class _SavedEpochs:
    """The epochs the best and the latest checkpoint files hold (0: none).

    A Ctrl-C during a write leaves the previous file in place, so the history can be one
    epoch ahead of the files: the interrupt message reports what is really on disk.
    """

    best: int = 0
    last: int = 0

    @classmethod
    def on_disk(
        cls, checkpoint_path: str | os.PathLike[str] | None, history: History
    ) -> _SavedEpochs:
        """What a resumed run finds: the files of the run it continues, if they are there."""
        if checkpoint_path is None:
            return cls()
        best = history.best_epoch if Path(checkpoint_path).is_file() else 0
        last = history.epochs_done if last_checkpoint_path(checkpoint_path).is_file() else 0
        return cls(best, last)


def _save_fit_checkpoints(
    checkpoint_path: str | os.PathLike[str], improved: bool, saved: _SavedEpochs, **state: Any
) -> None:
    """The best checkpoint when valid accuracy improved; the latest one after every epoch."""
    if improved:
        save_checkpoint(checkpoint_path, **state)
        saved.best = state["epoch"]
    save_checkpoint(last_checkpoint_path(checkpoint_path), **state)
    saved.last = state["epoch"]


def _step_scheduler(scheduler: Any | None, valid: tuple[float, float]) -> None:
    """One epoch step; ``valid`` is the epoch's ``(loss, acc)``."""
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        # mode="max" waits for a number that should rise: the accuracy, not the loss.
        scheduler.step(valid[1] if scheduler.mode == "max" else valid[0])
    else:
        scheduler.step()


def _batch_bar(
    loader: Batches, desc: str, enabled: bool
) -> contextlib.AbstractContextManager[tqdm | None]:
    """A per-batch bar that disappears when its phase ends (``leave=False``)."""
    if not enabled:
        return contextlib.nullcontext()
    try:
        total = len(loader)  # type: ignore[arg-type]
    except TypeError:  # a generator or an IterableDataset loader has no length
        total = None
    return tqdm(total=total, desc=desc, unit="batch", leave=False)


def _epoch_summary(history: History) -> str:
    return (
        f"train {history.train_loss[-1]:.3f}/{history.train_acc[-1]:.1%} "
        f"valid {history.valid_loss[-1]:.3f}/{history.valid_acc[-1]:.1%} "
        f"lr {history.lr[-1]:.2e} best {history.best_acc:.1%}@{history.best_epoch}"
    )


def _stop_message(
    stop: KeyboardInterrupt | NotWritableError,
    epoch: int,
    epochs: int,
    history: History,
    checkpoint_path: str | os.PathLike[str] | None,
    saved: _SavedEpochs,
) -> str:
    """Why training stopped (Ctrl-C or a full disk), and what the History and the files hold."""
    if isinstance(stop, NotWritableError):
        on_disk = (
            f"{checkpoint_path} still holds epoch {saved.best} and "
            f"{last_checkpoint_path(checkpoint_path)} epoch {saved.last}"
            if saved.best
            else "no checkpoint was written"
        )
        return (
            f"Training stopped in epoch {epoch} of {epochs}: {stop} The history of "
            f"{history.epochs_done} finished epoch(s) is returned; {on_disk}."
        )
    stopped = (
        f"Training stopped during epoch {epoch} of {epochs}; returning the history of "
        f"{history.epochs_done} finished epoch(s)."
    )
    if checkpoint_path is None or saved.best == 0:
        return f"{stopped} No checkpoint was written."
    kept = (
        f"{stopped} Best checkpoint (epoch {saved.best}, valid acc "
        f"{history.valid_acc[saved.best - 1]:.4f}) kept at {checkpoint_path}."
    )
    if saved.last < history.epochs_done:
        holds = f"holds epoch {saved.last}" if saved.last else "was not written"
        kept += (
            f" Ctrl-C came while the checkpoints of epoch {history.epochs_done} were being "
            f"written, so the latest checkpoint {holds}."
        )
    if saved.last == 0:
        return kept
    return (
        f"{kept} To continue after epoch {saved.last}, run fit again with "
        f"resume_from='{last_checkpoint_path(checkpoint_path)}'."
    )


def _loader_generators(loaders: Mapping[str, Batches]) -> dict[str, torch.Generator]:
    """The private shuffling generators of DataLoaders (``DataLoader(generator=...)``).

    They are saved with the checkpoint so that a resumed run sees the same data order.
    """
    return {
        name: loader.generator
        for name, loader in loaders.items()
        if isinstance(getattr(loader, "generator", None), torch.Generator)
    }


#: Metadata a resumed run may not change: they describe the model being trained.
_MODEL_METADATA = ("arch", "num_classes")
#: Entries of an optimizer's param groups that may change between runs: the parameters
#: themselves, the rate a scheduler moves, and how (not what) the step is computed.
_CHANGEABLE_OPTIMIZER_SETTINGS = frozenset(
    {"params", "lr", "foreach", "fused", "differentiable", "capturable"}
)


def _resume(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    generators: Mapping[str, torch.Generator],
    metadata: Mapping[str, Any] | None,
) -> tuple[History, Mapping[str, Any]]:
    """Restore everything from ``path``; returns its history and the metadata to keep saving.

    The history and the metadata are checked before anything is loaded, so a resume
    refused for them leaves the model, optimizer and scheduler untouched.
    """
    path = Path(path)
    state = _read_checkpoint(path, map_location="cpu")
    if state["history"] is None:
        raise CheckpointError(
            f"Cannot resume from {path}: it holds no training history (it was not written "
            "by fit). Load its weights with load_checkpoint(path, model) and start a new fit."
        )
    stored = state["metadata"]
    if metadata is not None:
        both = [key for key in _MODEL_METADATA if key in metadata and key in stored]
        _check_expected(path, stored, {key: metadata[key] for key in both})
        _check_same_classes(path, stored, metadata)
    _load_into(path, state, model, optimizer, scheduler)
    _restore_rng_state(state["rng_state"], generators)
    return History.from_dict(state["history"]), stored if metadata is None else metadata


def _check_same_classes(path: Path, stored: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
    """Refuse to resume on other classes: output i would change meaning mid-training."""
    before, now = stored.get("class_names"), metadata.get("class_names")
    if before is None or now is None or _same(before, now):
        return
    raise CheckpointMismatchError(
        f"Cannot resume from {path}: it was trained on the classes {list(before)}, but this "
        f"run's metadata has {list(now)}, so its outputs would change meaning. Fix: resume on "
        "the data it was trained on, or train a new model for these classes (without "
        "resume_from, and with another checkpoint_path)."
    )


# --------------------------------------------------------------------------- checkpoints


def last_checkpoint_path(checkpoint_path: str | os.PathLike[str]) -> Path:
    """Where :func:`fit` writes the latest epoch's state, next to the best checkpoint.

    >>> last_checkpoint_path("runs/best.pt").as_posix()
    'runs/best.last.pt'
    """
    return Path(checkpoint_path).with_suffix(".last.pt")


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    epoch: int,
    history: History | None = None,
    metadata: Mapping[str, Any] | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
) -> Path:
    """Write a checkpoint atomically: a crash mid-write leaves the previous file intact.

    The dict holds ``model_state``, ``optimizer_state`` and ``optimizer_type`` (its class
    name, checked on resume), ``scheduler_state`` (or None), ``epoch`` (epochs finished), ``history``, ``rng_state`` (torch, cuda, python, numpy and
    the given DataLoader ``generators``), ``metadata`` and ``format_version``, all in types
    that ``torch.load(weights_only=True)`` accepts; ``metadata`` must be plain values.

    >>> save_checkpoint("runs/model.pt", model=model, epoch=3,
    ...                 metadata={"arch": "resnet18", "num_classes": 5})  # doctest: +SKIP
    """
    meta = dict(metadata or {})
    if unsafe := first_unsafe_value(meta, "metadata"):
        where, kind = unsafe
        raise TypeError(
            f"{where} is a {kind}, which a checkpoint loaded with torch.load(weights_only=True) "
            "cannot hold. Store plain values instead, e.g. str(path), float(x), list(array)."
        )
    state = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model_state": model.state_dict(),
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "optimizer_type": type(optimizer).__name__ if optimizer is not None else None,
        "scheduler_state": scheduler.state_dict() if scheduler is not None else None,
        "epoch": int(epoch),
        "history": history.to_dict() if history is not None else None,
        "rng_state": _rng_state(generators or {}),
        "metadata": meta,
    }
    path = Path(path)
    with atomic_write(path) as handle:
        torch.save(state, handle)
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    expected: Mapping[str, Any] | None = None,
    map_location: Any = "cpu",
) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``) and load it into what is given.

    ``map_location="cpu"`` lets a checkpoint saved on a GPU load on any machine.
    ``expected`` (e.g. ``{"arch": "resnet18", "num_classes": 5}``) is compared with the
    stored metadata first. Mismatches raise :class:`CheckpointMismatchError`; unreadable
    files raise :class:`CheckpointError`; a missing file raises ``FileNotFoundError``.

    >>> state = load_checkpoint("runs/best.pt", model, expected={"num_classes": 5})  # doctest: +SKIP
    >>> state["metadata"]["class_names"]  # doctest: +SKIP
    """
    path = Path(path)
    state = _read_checkpoint(path, map_location)
    if expected:
        _check_expected(path, state["metadata"], expected)
    _load_into(path, state, model, optimizer, scheduler)
    return state


def _load_into(
    path: Path,
    state: Mapping[str, Any],
    model: nn.Module | None,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
) -> None:
    # Checked first: a refused checkpoint must not leave the model half loaded.
    if scheduler is not None and state["scheduler_state"] is None:
        raise CheckpointMismatchError(
            f"{path} was saved without a scheduler, so it cannot restore yours. "
            "Pass scheduler=None, or resume from a checkpoint of a run with a scheduler."
        )
    if optimizer is not None:
        _check_optimizer_fits(path, optimizer, state)
    if model is not None:
        _load_model_state(path, model, state)
    if optimizer is not None:
        _load_optimizer_state(path, optimizer, state["optimizer_state"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler_state"])


def _read_checkpoint(path: Path, map_location: Any) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"No checkpoint at {path}. Checkpoints are written by "
            "fit(..., checkpoint_path=...) or save_checkpoint(...): check the path, "
            "or run the training cell first."
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError, UnpicklingError
        if refused_as_unsafe(err):
            raise CheckpointError(
                f"{path} was not loaded: besides weights it holds Python objects, which could "
                "run code on this computer when loaded, and fit and save_checkpoint never "
                "write those. It may have been tampered with, or it is not a coursekit "
                "checkpoint. Fix: delete it unless you know who made it and why, and use a "
                "checkpoint written by fit or save_checkpoint."
            ) from None
        first_line = (str(err).splitlines() or [""])[0]
        raise CheckpointError(
            f"Could not read the checkpoint {path} ({type(err).__name__}: {first_line}). "
            "It is probably truncated or corrupt (an interrupted copy or download) or not a "
            "PyTorch checkpoint. Delete it and train again, or use another copy."
        ) from err
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(
            f"{path} is not a coursekit checkpoint (no 'format_version'). If it is a bare "
            "state_dict, use model.load_state_dict(torch.load(path, weights_only=True))."
        )
    if state["format_version"] > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {state['format_version']}, newer than this "
            f"coursekit understands ({CHECKPOINT_FORMAT_VERSION}). Update coursekit."
        )
    return state


def _same(stored: Any, wanted: Any) -> bool:
    # A tuple saved in the metadata equals the same values given as a list.
    if isinstance(stored, list | tuple) and isinstance(wanted, list | tuple):
        return list(stored) == list(wanted)
    return stored == wanted


def _check_expected(path: Path, metadata: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    missing = object()
    wrong = [
        f"{key}: stored {metadata.get(key, 'nothing')!r}, expected {value!r}"
        for key, value in expected.items()
        if not _same(metadata.get(key, missing), value)
    ]
    if wrong:
        raise CheckpointMismatchError(
            f"The checkpoint {path} was written for another model: {'; '.join(wrong)}. "
            "Build the model the way the checkpoint was trained, or load the checkpoint "
            "that belongs to this model."
        )


def _load_model_state(path: Path, model: nn.Module, state: Mapping[str, Any]) -> None:
    # load_state_dict copies every tensor that fits BEFORE it reports the ones that do not,
    # so compare first: a refused checkpoint must leave the learner's model untouched.
    details = _state_dict_differences(state["model_state"], model.state_dict())
    if details:
        meta = state["metadata"]
        trained_as = ", ".join(f"{k}={meta[k]!r}" for k in ("arch", "num_classes") if k in meta)
        raise CheckpointMismatchError(
            f"The checkpoint {path} does not fit this model: {details}. It was probably "
            f"trained with another num_classes or architecture"
            f"{f' ({trained_as})' if trained_as else ''}: build the model the same way, "
            "or load the checkpoint that belongs to this model."
        )
    model.load_state_dict(state["model_state"])


def _state_dict_differences(
    stored: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor], limit: int = 3
) -> str:
    """The first few differing layers, e.g. "fc.weight: stored (5, 512) vs model (10, 512)"."""
    shapes = [
        f"{key}: stored shape {tuple(stored[key].shape)} vs model shape {tuple(current[key].shape)}"
        for key in stored
        if key in current and stored[key].shape != current[key].shape
    ]
    missing = [key for key in current if key not in stored]
    unexpected = [key for key in stored if key not in current]
    parts = shapes[:limit]
    if missing:
        parts.append(f"layers missing from the checkpoint: {', '.join(missing[:limit])}")
    if unexpected:
        parts.append(f"layers this model does not have: {', '.join(unexpected[:limit])}")
    return "; ".join(parts)


def _optimizer_settings(group: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in group.items()
        if key not in _CHANGEABLE_OPTIMIZER_SETTINGS and key != "initial_lr"
    }


def _describe_optimizer(kind: str | None, group: Mapping[str, Any]) -> str:
    """``SGD(momentum=0.9, weight_decay=0)``: the settings that change what a step does."""
    shown = ", ".join(
        f"{key}={value!r}"
        for key, value in _optimizer_settings(group).items()
        if value not in (None, False)
    )
    return f"{kind or 'an optimizer'}({shown})"


def _optimizer_difference(
    optimizer: torch.optim.Optimizer, stored: Mapping[str, Any], stored_kind: str | None
) -> str:
    """What differs between ``optimizer`` and the one saved in ``stored`` ("" if nothing)."""
    kind = type(optimizer).__name__
    groups, stored_groups = optimizer.state_dict()["param_groups"], stored["param_groups"]
    if len(groups) != len(stored_groups):
        return f"it has {len(stored_groups)} parameter group(s), this optimizer {len(groups)}"
    for index, (group, saved) in enumerate(zip(groups, stored_groups, strict=True)):
        ours, theirs = _optimizer_settings(group), _optimizer_settings(saved)
        # An old checkpoint does not name its optimizer: other setting names mean another one.
        if (stored_kind or kind) != kind or (stored_kind is None and ours.keys() != theirs.keys()):
            return (
                f"it was trained with {_describe_optimizer(stored_kind, saved)}, this "
                f"optimizer is {_describe_optimizer(kind, group)}"
            )
        differing = [
            f"{key} {theirs[key]!r} there, {ours[key]!r} here"
            for key in theirs
            if key in ours and not _same(theirs[key], ours[key])
        ]
        if len(group["params"]) != len(saved["params"]):
            differing.insert(
                0, f"{len(saved['params'])} parameters there, {len(group['params'])} here"
            )
        if differing:
            return f"{kind} parameter group {index} differs: {'; '.join(differing)}"
    return ""


def _check_optimizer_fits(
    path: Path, optimizer: torch.optim.Optimizer, state: Mapping[str, Any]
) -> None:
    """Refuse an optimizer state that would crash a step or silently change settings.

    ``load_state_dict`` takes another optimizer's state without a word (SGD's into Adam:
    a KeyError at the first step) and overwrites the settings it was created with.
    """
    stored = state["optimizer_state"]
    if stored is None:
        return  # _load_optimizer_state says what to do
    difference = _optimizer_difference(optimizer, stored, state.get("optimizer_type"))
    if difference:
        raise CheckpointMismatchError(
            f"The optimizer saved in {path} does not match this one: {difference}. Nothing "
            "was loaded. Fix: create the optimizer the checkpoint was trained with (same "
            "type, settings and parameter groups), or pass optimizer=None to load only the "
            "weights, or start a new run without resume_from."
        )


def _load_optimizer_state(
    path: Path, optimizer: torch.optim.Optimizer, optimizer_state: Mapping[str, Any] | None
) -> None:
    if optimizer_state is None:
        raise CheckpointMismatchError(
            f"{path} was saved without optimizer state. Pass optimizer=None to load only "
            "the weights."
        )
    try:
        optimizer.load_state_dict(optimizer_state)
    except ValueError as err:
        raise CheckpointMismatchError(
            f"The optimizer state in {path} does not fit this optimizer ({err}). Create the "
            "optimizer over the same parameters and groups as when it was saved (same "
            "frozen/unfrozen layers), or pass optimizer=None to load only the weights."
        ) from None


def load_or_train(
    checkpoint_path: str | os.PathLike[str],
    model: nn.Module,
    train: Callable[[], History],
    *,
    metadata: Mapping[str, Any],
) -> History:
    """Reuse the model saved at ``checkpoint_path`` if it was made the same way, else train it.

    "The same way" means: the checkpoint's metadata has the values of ``metadata`` (say
    arch, class names, image size, epochs), its weights fit ``model`` and it holds a
    history. Otherwise (no file, another recipe, an unreadable file) ``train()`` trains
    ``model`` and its weights, history and ``metadata`` are saved to ``checkpoint_path``.
    Returns the training history, the stored one when the model is reused. A training
    stopped with Ctrl-C is not saved, so the next run trains again instead of reusing it.

    >>> history = load_or_train("runs/head.pt", model, train_head,
    ...                         metadata={"arch": "resnet18", "epochs": 3})  # doctest: +SKIP
    Reusing the model saved in runs/head.pt (it was made the same way).
    """
    path = Path(checkpoint_path)
    state, why_not = _reusable_checkpoint(path, model, metadata)
    if state is not None:
        model.load_state_dict(state["model_state"])
        print(f"Reusing the model saved in {path} (it was made the same way).")
        return History.from_dict(state["history"])
    print(f"Training, because {why_not}.")
    history = train()
    if history.interrupted:
        print(f"Training was interrupted, so nothing was saved in {path}: run this again to train.")
        return history
    save_checkpoint(
        path, model=model, epoch=history.epochs_done, history=history, metadata=metadata
    )
    print(f"Saved the trained model in {path}: running this again reuses it.")
    return history


def _reusable_checkpoint(
    path: Path, model: nn.Module, metadata: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """The checkpoint at ``path`` if ``model`` can reuse it, else None and the reason why."""
    try:
        state = load_checkpoint(path, expected=metadata)
    except FileNotFoundError:
        return None, f"no model is saved in {path} yet"
    except CheckpointMismatchError:
        return None, f"the model saved in {path} was made another way"
    except CheckpointError:
        return None, f"the file {path} cannot be read"
    # Checked before loading: a failed load_state_dict would leave some layers overwritten.
    if _state_dict_differences(state["model_state"], model.state_dict()):
        return None, f"the model saved in {path} does not fit this model"
    if state["history"] is None:
        return None, f"the checkpoint {path} holds no training history"
    return state, ""


# --------------------------------------------------------------------------- random states


def _rng_state(generators: Mapping[str, torch.Generator]) -> dict[str, Any]:
    """Every random state a resumed run needs, as tensors and plain python types."""
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": [str(np_name), np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "generators": {name: gen.get_state() for name, gen in generators.items()},
    }


def _restore_rng_state(state: Mapping[str, Any], generators: Mapping[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] is not None and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    py_version, py_internal, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_internal), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state(
        (np_name, np.asarray(np_keys, dtype=np.uint32), np_pos, np_has_gauss, np_gauss)
    )
    for name, saved in state["generators"].items():
        if name in generators:
            generators[name].set_state(saved.cpu())


# --------------------------------------------------------------------------- cached features


@torch.inference_mode()
def _features_and_labels(
    backbone: nn.Module, loader: Batches, device: torch.device
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    backbone.eval()
    features, labels = [], []
    for batch in loader:
        inputs, targets = _to_device(batch, device)
        features.append(backbone(inputs).flatten(start_dim=1).cpu())
        labels.append(targets.cpu())
    return features, labels


def extract_features(
    backbone: nn.Module, loader: Batches, device: DeviceLike | None = None
) -> TensorDataset:
    """Run a frozen ``backbone`` once over ``loader``; features ``(N, D)`` and labels on CPU.

    Training a head on these cached features is much faster than running the backbone
    every epoch, with one trade-off: the features are computed ONCE, so random
    augmentation cannot be used (every epoch sees the same version of each image). Use an
    eval-style loader here. The backbone is left in eval mode on ``device``.

    >>> train_features = extract_features(backbone, loaders["train"], "cpu")  # doctest: +SKIP
    >>> train_features.tensors[0].shape  # doctest: +SKIP
    torch.Size([240, 512])
    """
    device = pick_device("auto") if device is None else torch.device(device)
    backbone.to(device)
    features, labels = _features_and_labels(backbone, loader, device)
    if not features:
        raise ValueError("extract_features got a loader with no batches; check its dataset.")
    # torch.cat outside inference mode returns normal tensors, which a head can train on.
    return TensorDataset(torch.cat(features), torch.cat(labels))


def feature_loaders(
    train_features: TensorDataset, valid_features: TensorDataset, batch_size: int, seed: int = 0
) -> dict[str, DataLoader]:
    """Loaders over cached features, so ``fit(head, feature_loaders(...), ...)`` works as usual.

    The train loader shuffles with its own generator seeded by ``seed``.

    >>> loaders = feature_loaders(train_features, valid_features, batch_size=32)  # doctest: +SKIP
    >>> history = fit(head, loaders, nn.CrossEntropyLoss(), optimizer, epochs=5)  # doctest: +SKIP
    """
    shuffle_generator = torch.Generator().manual_seed(seed)
    return {
        "train": DataLoader(
            train_features, batch_size=batch_size, shuffle=True, generator=shuffle_generator
        ),
        "valid": DataLoader(valid_features, batch_size=batch_size, shuffle=False),
    }


def fit_on_features(
    backbone: nn.Module,
    head: nn.Module,
    loaders: Mapping[str, Batches],
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int | None = None,
    device: DeviceLike | None = None,
    seed: int = 0,
    **fit_kwargs: Any,
) -> History:
    """Train only ``head`` on the features of a frozen ``backbone``, computed once.

    Lesson 05's recipe in one call: :func:`extract_features` runs ``backbone`` once over
    ``loaders["train"]`` and ``loaders["valid"]`` (give it loaders without random
    augmentation), :func:`feature_loaders` serves the features in batches of ``batch_size``
    (default: the train loader's) shuffled with ``seed``, and :func:`fit` trains ``head``
    on them. ``optimizer`` must hold the head's parameters; ``fit_kwargs`` (scheduler,
    checkpoint_path, metadata, progress...) are passed on to ``fit``.

    >>> backbone = coursekit.without_head(model)  # doctest: +SKIP
    >>> history = fit_on_features(backbone, head, loaders, nn.CrossEntropyLoss(), optimizer,
    ...                           epochs=5)  # doctest: +SKIP
    """
    # Checked first, so that a wrong argument fails before the slow feature extraction.
    _check_fit_arguments(loaders, optimizer, fit_kwargs.get("scheduler"), epochs)
    if batch_size is None:
        batch_size = _batch_size_of(loaders["train"])
    device = pick_device("auto") if device is None else torch.device(device)
    train_features = extract_features(backbone, loaders["train"], device)
    valid_features = extract_features(backbone, loaders["valid"], device)
    cached = feature_loaders(train_features, valid_features, batch_size, seed=seed)
    return fit(head, cached, criterion, optimizer, epochs=epochs, device=device, **fit_kwargs)


def _batch_size_of(loader: Batches) -> int:
    batch_size = getattr(loader, "batch_size", None)
    if batch_size is None:
        raise ValueError(
            'fit_on_features cannot tell the batch size of loaders["train"] (it is not a '
            "DataLoader with a batch_size). Pass it, e.g. batch_size=settings.batch_size."
        )
    return int(batch_size)


# --------------------------------------------------------------------------- time estimates


def _seconds_per_batch(loader: Batches, batches: int, step: Callable[[Any], None]) -> float:
    """Mean seconds of loading a batch and running ``step`` on it, over ``batches`` batches
    after one untimed warm-up batch (it pays one-off costs: memory, kernel choice, workers)."""
    iterator = iter(loader)
    batch = next(iterator, None)
    if batch is not None:
        step(batch)
    timed, seconds = 0, 0.0
    while timed < batches:
        started = time.perf_counter()
        batch = next(iterator, None)  # loading is part of every step of fit too
        if batch is None:
            break
        step(batch)
        seconds += time.perf_counter() - started
        timed += 1
    del iterator  # stops worker processes, if any
    if not timed:
        raise ValueError("estimate_fit_seconds needs loaders with at least two batches each.")
    return seconds / timed


def estimate_fit_seconds(
    model: nn.Module,
    loaders: Mapping[str, Batches],
    criterion: nn.Module,
    *,
    epochs: int,
    batches: int = 2,
    device: DeviceLike | None = None,
) -> float:
    """How long ``fit`` will take for ``epochs`` epochs, from a few timed batches.

    Times ``batches`` training steps (forward, backward and an optimizer step, on a copy of
    the model so that nothing changes) and ``batches`` validation batches, loading included,
    and scales them to the loaders' lengths. Random states (torch's and the loaders' own
    generators) are restored, so the run that follows sees the same batches. An estimate:
    a shared or busy machine makes it wrong both ways.

    >>> seconds = estimate_fit_seconds(model, loaders, nn.CrossEntropyLoss(), epochs=5)  # doctest: +SKIP
    >>> print(f"about {seconds / 60:.0f} minutes")  # doctest: +SKIP
    """
    device = pick_device("auto") if device is None else torch.device(device)
    probe = copy.deepcopy(model).to(device)
    trainable = [p for p in probe.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.0) if trainable else None

    def train_step(batch: Any) -> None:
        inputs, targets = _to_device(batch, device)
        probe.train()
        loss = criterion(probe(inputs), targets)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    @torch.no_grad()
    def valid_step(batch: Any) -> None:
        inputs, targets = _to_device(batch, device)
        probe.eval()
        criterion(probe(inputs), targets)

    generators = _loader_generators(loaders)
    states = {name: generator.get_state() for name, generator in generators.items()}
    try:
        with torch.random.fork_rng(devices=[]):
            train = _seconds_per_batch(loaders["train"], batches, train_step)
            valid = _seconds_per_batch(loaders["valid"], batches, valid_step)
    finally:
        for name, generator in generators.items():
            generator.set_state(states[name])
    return epochs * (train * len(loaders["train"]) + valid * len(loaders["valid"]))  # type: ignore[arg-type]
