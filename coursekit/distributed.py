"""Distributed data parallel: what ``fit`` needs to run unchanged under ``torchrun``.

``torchrun --nproc_per_node=N script.py`` starts N copies of a script, each with the
environment variables ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``. :func:`init_distributed`
joins them into one process group (gloo on CPU, nccl on GPU). From then on:

* each process trains on its own shard of the data (:func:`shard_loader`: a
  ``DistributedSampler`` for training, re-seeded every epoch with :func:`set_epoch`; a
  contiguous, unpadded split for validation, so every image counts exactly once);
* ``DistributedDataParallel`` (:func:`wrap`) averages the gradients after every backward;
* epoch totals are summed over processes (:func:`all_reduce_sums`), so every process
  computes the same metrics and takes the same scheduler and best-epoch decisions;
* only the main process (rank 0) writes files and prints (:func:`is_main_process`);
* checkpoints hold the plain model's keys (:func:`unwrap`), without DDP's ``module.``.

Outside ``torch.distributed`` every function here is a no-op (rank 0 of 1):

    >>> rank(), world_size(), is_main_process()
    (0, 1, True)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from coursekit.config import pick_device

#: The DataLoader arguments a sharded copy keeps from the loader it replaces.
_LOADER_ARGUMENTS = (
    "batch_size",
    "num_workers",
    "collate_fn",
    "pin_memory",
    "drop_last",
    "timeout",
    "worker_init_fn",
    "multiprocessing_context",
    "prefetch_factor",
    "persistent_workers",
)


def is_distributed() -> bool:
    """True inside a process group of more than one process (e.g. started by ``torchrun``).

    >>> is_distributed()
    False
    """
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's number in the group, 0 to ``world_size() - 1`` (0 outside one).

    >>> rank()
    0
    """
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """How many processes train together (1 outside a process group).

    >>> world_size()
    1
    """
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0, the one process that writes files and prints.

    >>> is_main_process()
    True
    """
    return rank() == 0


def launched_by_torchrun() -> bool:
    """True when ``torchrun`` (or another launcher) set ``RANK`` and ``WORLD_SIZE``.

    >>> launched_by_torchrun()  # doctest: +SKIP
    False
    """
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(backend: str | None = None) -> bool:
    """Join the process group ``torchrun`` describes; True if one was joined.

    ``backend=None`` picks nccl when CUDA is available and gloo otherwise (CPU). Without
    ``torchrun``'s variables nothing happens and False is returned, so a script can call
    it unconditionally. Call :func:`shutdown_distributed` at the end.

    >>> init_distributed()  # doctest: +SKIP
    False
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return dist.is_initialized()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    return True


def shutdown_distributed() -> None:
    """Leave the process group (if any), after every process has reached this point.

    >>> shutdown_distributed()
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def local_rank() -> int:
    """This process's number on its own machine (``LOCAL_RANK``; 0 outside ``torchrun``).

    >>> local_rank()  # doctest: +SKIP
    0
    """
    return int(os.environ.get("LOCAL_RANK", 0))


def default_device() -> torch.device:
    """``pick_device("auto")``, but on CUDA the GPU of this process: ``cuda:LOCAL_RANK``.

    A bare ``cuda`` would put every process of a machine on GPU 0.

    >>> default_device()  # doctest: +SKIP
    device(type='cuda', index=1)
    """
    device = pick_device("auto")
    if device.type == "cuda" and is_distributed():
        return torch.device("cuda", local_rank())
    return device


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` in a process group, else ``model`` itself.

    DDP copies rank 0's weights to every process, then averages the gradients of every
    backward pass, so all replicas take the same optimizer step. Frozen parameters
    (``requires_grad=False``) are left out of the averaging.

    >>> wrap(nn.Linear(2, 2), torch.device("cpu"))
    Linear(in_features=2, out_features=2, bias=True)
    """
    if not is_distributed():
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a ``DistributedDataParallel`` (its keys have no ``module.``).

    >>> unwrap(nn.Linear(2, 2))
    Linear(in_features=2, out_features=2, bias=True)
    """
    return model.module if isinstance(model, DistributedDataParallel) else model


def all_reduce_sums(*values: float | torch.Tensor) -> list[float]:
    """Each value summed over all processes (one collective call); the values as they are
    outside a process group.

    >>> all_reduce_sums(1.5, torch.tensor(3))
    [1.5, 3.0]
    """
    totals = torch.tensor([float(value) for value in values], dtype=torch.float64)
    if is_distributed():
        # nccl reduces tensors on the GPU only; gloo on the CPU.
        device = default_device() if dist.get_backend() == "nccl" else torch.device("cpu")
        totals = totals.to(device)
        dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    return totals.cpu().tolist()


class ContiguousShard(Sampler[int]):
    """Indices ``start..stop`` of this process's share of ``length`` items, in order.

    Unlike ``DistributedSampler`` it never pads a short last share with repeated items,
    so summed validation totals count every image exactly once.

    >>> list(ContiguousShard(5, rank=1, world_size=2))
    [3, 4]
    """

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        per_rank, extra = divmod(length, world_size)
        self.start = rank * per_rank + min(rank, extra)
        self.stop = self.start + per_rank + (1 if rank < extra else 0)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def shard_loader(loader: DataLoader, *, shuffle: bool, seed: int = 0) -> DataLoader:
    """A copy of ``loader`` that yields only this process's share of its dataset.

    ``shuffle=True`` (training): a ``DistributedSampler`` that shuffles the whole dataset
    with ``seed`` + the epoch (see :func:`set_epoch`) and deals it out to the processes,
    padding with repeated items so that all take the same number of steps. Its order
    does not depend on the number of processes: with one process and a batch of N x B,
    the same images make up each step as with N processes of batch B.
    ``shuffle=False`` (validation): a :class:`ContiguousShard`, in order, unpadded.
    Every other setting (batch size, workers, collate...) is kept.

    >>> sharded = shard_loader(DataLoader(list(range(10)), batch_size=2), shuffle=False)
    >>> [batch.tolist() for batch in sharded]
    [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    """
    sampler: Sampler[int]
    if shuffle:
        sampler = DistributedSampler(
            loader.dataset,  # type: ignore[arg-type]
            num_replicas=world_size(),
            rank=rank(),
            shuffle=True,
            seed=seed,
        )
    else:
        sampler = ContiguousShard(len(loader.dataset), rank(), world_size())  # type: ignore[arg-type]
    kept = {name: getattr(loader, name) for name in _LOADER_ARGUMENTS}
    if kept["num_workers"] == 0:  # DataLoader refuses these two without workers
        kept["prefetch_factor"], kept["persistent_workers"] = None, False
    # Worker seeds differ per process, so the processes draw different augmentations.
    generator = torch.Generator().manual_seed(seed + rank())
    return DataLoader(loader.dataset, sampler=sampler, generator=generator, **kept)


def shard_loaders(loaders: Mapping[str, Any], seed: int | None = None) -> dict[str, Any]:
    """``fit``'s loaders with each DataLoader sharded (``"train"`` shuffled), in a process
    group; unchanged outside one or when a loader already has a ``DistributedSampler``.

    ``seed=None`` shuffles with the seed of the train loader's own generator (the one
    ``make_loaders`` seeded), else 0.

    >>> shard_loaders({"train": [1], "valid": [2]})
    {'train': [1], 'valid': [2]}
    """
    if not is_distributed():
        return dict(loaders)
    if seed is None:
        generator = getattr(loaders.get("train"), "generator", None)
        seed = generator.initial_seed() if isinstance(generator, torch.Generator) else 0
    sharded = {}
    for name, loader in loaders.items():
        if not isinstance(loader, DataLoader):
            raise TypeError(
                f'fit runs in {world_size()} processes, but loaders["{name}"] is a '
                f"{type(loader).__name__}, which it cannot split between them. Pass a "
                "torch DataLoader (coursekit.make_loaders builds them)."
            )
        if isinstance(loader.sampler, DistributedSampler):
            sharded[name] = loader
        else:
            sharded[name] = shard_loader(loader, shuffle=name == "train", seed=seed)
    return sharded


def barrier() -> None:
    """Wait until every process gets here (e.g. before reading a file rank 0 wrote).

    >>> barrier()
    """
    if is_distributed():
        dist.barrier()


def set_epoch(loader: Any, epoch: int) -> None:
    """Re-seed a ``DistributedSampler``'s shuffle for ``epoch`` (else the order repeats).

    Does nothing for loaders without one.

    >>> set_epoch([1, 2, 3], epoch=2)
    """
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
