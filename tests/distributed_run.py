"""One small training run with ``coursekit.fit``, for tests/test_distributed.py.

Launched as ``torchrun --nproc_per_node=2 tests/distributed_run.py DIR:EPOCHS[:resume] ...``
(gloo on CPU), each process runs one ``fit`` per argument, one after the other: SqueezeNet
1.1 (no BatchNorm; dropout off) on a tiny random set with a per-process batch of
``PER_PROCESS_BATCH``, its checkpoints in DIR, resumed from DIR's last checkpoint with
``:resume``. After each fit every process prints one ``RESULT {json}`` line: the run's
folder, its rank, the History, a digest of its final weights and every file it wrote. The test
imports :func:`build` to train the same thing in one process with the global batch.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import coursekit as ck
from coursekit import train

IMAGES, CLASSES, SIDE = 64, 4, 32
PER_PROCESS_BATCH = 8
SEED = 7
ARCH = "squeezenet1_1"
CHECKPOINT = "best.pt"


def dataset(seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(IMAGES, 3, SIDE, SIDE, generator=generator)
    return TensorDataset(images, torch.randint(0, CLASSES, (IMAGES,), generator=generator))


def build(batch_size: int, one_process_like_torchrun: bool = False):
    """Model, loaders, criterion, optimizer and scheduler; the same in every process.

    ``one_process_like_torchrun``: the train loader draws its order from a
    ``DistributedSampler`` of one replica with the seed ``fit`` gives the shards, so each
    step sees the images that N processes see together (``fit`` re-seeds it every epoch).
    """
    torch.manual_seed(0)
    # SqueezeNet has no BatchNorm, whose batch statistics would depend on the per-process
    # batch; dropout would draw other masks per process, so it is off.
    model = ck.random_init_model(ARCH, num_classes=CLASSES, dropout=0.0)
    train_ds, valid_ds = dataset(1), dataset(2)
    shuffled = {"shuffle": True}
    if one_process_like_torchrun:
        sampler = DistributedSampler(train_ds, num_replicas=1, rank=0, shuffle=True, seed=SEED)
        shuffled = {"sampler": sampler}
    loaders = {
        "train": DataLoader(
            train_ds,
            batch_size=batch_size,
            generator=torch.Generator().manual_seed(SEED),
            **shuffled,
        ),
        "valid": DataLoader(valid_ds, batch_size=batch_size),
    }
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return model, loaders, nn.CrossEntropyLoss(), optimizer, scheduler


def metadata() -> dict:
    return {"arch": ARCH, "num_classes": CLASSES, "class_names": [str(c) for c in range(CLASSES)]}


def run(out_dir: Path, epochs: int, resume: bool) -> dict:
    """One fit as the test wants it; returns what this process saw and wrote."""
    written: list[str] = []
    original_atomic_write = train.atomic_write

    def recording_atomic_write(path, *args, **kwargs):
        written.append(Path(path).name)
        return original_atomic_write(path, *args, **kwargs)

    train.atomic_write = recording_atomic_write
    try:
        model, loaders, criterion, optimizer, scheduler = build(PER_PROCESS_BATCH)
        checkpoint = out_dir / CHECKPOINT
        history = ck.fit(
            model,
            loaders,
            criterion,
            optimizer,
            epochs=epochs,
            scheduler=scheduler,
            device="cpu",
            checkpoint_path=checkpoint,
            metadata=metadata(),
            resume_from=ck.last_checkpoint_path(checkpoint) if resume else None,
            progress=False,
        )
    finally:
        train.atomic_write = original_atomic_write
    return {
        "dir": out_dir.name,
        "rank": ck.distributed.rank(),
        "world_size": ck.world_size(),
        "history": history.to_dict(),
        # A digest: the weights themselves are in the checkpoint rank 0 writes.
        "weights_sha256": hashlib.sha256(
            torch.cat([p.detach().flatten() for p in model.parameters()]).numpy().tobytes()
        ).hexdigest(),
        "written": written,
    }


def main(specs: list[str]) -> None:
    ck.init_distributed("gloo")
    for spec in specs:
        folder, epochs, *resume = spec.split(":")
        result = run(Path(folder), int(epochs), resume == ["resume"])
        print("RESULT " + json.dumps(result), flush=True)
    ck.shutdown_distributed()


if __name__ == "__main__":
    main(sys.argv[1:])
