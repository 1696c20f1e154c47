"""fit under torchrun: 2 gloo processes on CPU learn exactly what one process learns.

One ``torchrun --nproc_per_node=2`` launch trains a full run (3 epochs) and an interrupted
one (1 epoch); a second launch resumes the interrupted one to 3 epochs. The reference is
one process with the global batch (2 x the per-process batch) and the same data order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import distributed_run as job
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import coursekit as ck
from coursekit import distributed

PROCESSES = 2
EPOCHS = 3
#: Summing 2 per-process gradient means in another order than one mean over the global
#: batch changes float32 results in the last bits (about 1e-7); 12 SGD steps keep it
#: far below this.
TOLERANCE = 1e-5
PER_EPOCH = ("train_loss", "train_acc", "valid_loss", "valid_acc", "lr")


def torchrun(*specs: str) -> list[dict]:
    """Launch the job in 2 processes; every RESULT line they print, as dicts."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={PROCESSES}",
        str(Path(job.__file__)),
        *specs,
    ]
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240, cwd=repo)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [
        json.loads(line[len("RESULT ") :])
        for line in done.stdout.splitlines()
        if line.startswith("RESULT ")
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{(folder, rank): result} of the full run, the interrupted one and its resumption."""
    root = tmp_path_factory.mktemp("ddp")
    full, interrupted = root / "full", root / "interrupted"
    first = torchrun(f"{full}:{EPOCHS}", f"{interrupted}:1")
    resumed = torchrun(f"{interrupted}:{EPOCHS}:resume")
    results = {("full", r["rank"]): r for r in first if r["dir"] == "full"}
    results.update(
        {("interrupted_epoch_1", r["rank"]): r for r in first if r["dir"] == "interrupted"}
    )
    results.update({("resumed", r["rank"]): r for r in resumed})
    return {"root": root, "full": full, "interrupted": interrupted, "results": results}


@pytest.fixture(scope="module")
def one_process():
    """The reference: one process, global batch, the order the shards are dealt from."""
    # One thread, like each torchrun process: on a busy machine two OpenMP threads that
    # wait for each other can make this tiny run 50 times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, loaders, criterion, optimizer, scheduler = job.build(
        PROCESSES * job.PER_PROCESS_BATCH, one_process_like_torchrun=True
    )
    history = ck.fit(
        model,
        loaders,
        criterion,
        optimizer,
        epochs=EPOCHS,
        scheduler=scheduler,
        device="cpu",
        progress=False,
    )
    torch.set_num_threads(threads)
    return history, model


def test_both_processes_ran_in_one_group(runs):
    full = [r for (name, _), r in runs["results"].items() if name == "full"]
    assert sorted(r["rank"] for r in full) == [0, 1]
    assert all(r["world_size"] == PROCESSES for r in full)


def test_two_processes_learn_what_one_process_learns(runs, one_process):
    history, model = one_process
    for rank in range(PROCESSES):
        result = runs["results"][("full", rank)]
        for key in PER_EPOCH:
            assert result["history"][key] == pytest.approx(getattr(history, key), abs=TOLERANCE), (
                key
            )
        assert result["history"]["best_epoch"] == history.best_epoch
    last = torch.load(ck.last_checkpoint_path(runs["full"] / job.CHECKPOINT), weights_only=True)
    assert last["epoch"] == EPOCHS
    torch.testing.assert_close(last["model_state"], model.state_dict(), atol=TOLERANCE, rtol=0)


def test_the_replicas_stay_identical(runs):
    rank0, rank1 = runs["results"][("full", 0)], runs["results"][("full", 1)]
    assert rank0["weights_sha256"] == rank1["weights_sha256"]
    for key in PER_EPOCH:  # the totals were summed over both processes, on both
        assert rank0["history"][key] == rank1["history"][key]


def test_only_rank_0_writes_files(runs):
    assert runs["results"][("full", 1)]["written"] == []
    assert set(runs["results"][("full", 0)]["written"]) == {"best.pt", "best.last.pt"}
    assert sorted(p.name for p in runs["full"].iterdir()) == ["best.last.pt", "best.pt"]


def test_the_checkpoint_loads_into_a_plain_model_and_a_bundle(runs, one_process, tmp_path):
    _, reference = one_process
    plain = ck.random_init_model(job.ARCH, num_classes=job.CLASSES)
    state = ck.load_checkpoint(ck.last_checkpoint_path(runs["full"] / job.CHECKPOINT), plain)
    assert not any(key.startswith("module.") for key in state["model_state"])
    torch.testing.assert_close(plain.state_dict(), reference.state_dict(), atol=TOLERANCE, rtol=0)

    bundle_path = ck.export_bundle(
        tmp_path / "bundle.pt",
        plain,
        class_names=state["metadata"]["class_names"],
        arch=job.ARCH,
        image_size=job.SIDE,
        resize_size=job.SIDE,
        mean=ck.IMAGENET_MEAN,
        std=ck.IMAGENET_STD,
    )
    bundle = ck.load_bundle(bundle_path)
    images = job.dataset(3).tensors[0][:4]
    with torch.inference_mode():
        torch.testing.assert_close(bundle.model(images), plain.eval()(images))


def test_a_run_resumed_under_torchrun_ends_like_an_uninterrupted_one(runs):
    assert runs["results"][("interrupted_epoch_1", 0)]["history"]["valid_acc"].__len__() == 1
    for rank in range(PROCESSES):
        resumed, full = runs["results"][("resumed", rank)], runs["results"][("full", rank)]
        for key in PER_EPOCH:
            assert resumed["history"][key] == full["history"][key], key
        assert resumed["weights_sha256"] == full["weights_sha256"]


# --------------------------------------------------------------------------- one process


def test_outside_torchrun_nothing_is_sharded_or_wrapped():
    loaders = {"train": DataLoader(list(range(6))), "valid": [1]}
    assert distributed.shard_loaders(loaders) == loaders
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, torch.device("cpu")) is model
    assert distributed.all_reduce_sums(torch.tensor(2.5), 3) == [2.5, 3.0]


@pytest.mark.parametrize("length", [0, 1, 7, 8, 9])
@pytest.mark.parametrize("processes", [1, 2, 3])
def test_validation_shards_hold_every_item_once(length, processes):
    shards = [list(distributed.ContiguousShard(length, r, processes)) for r in range(processes)]
    assert sum(shards, []) == list(range(length))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.fixture
def as_rank_1_of_2(monkeypatch):
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)


def test_shard_loaders_deal_out_the_train_set_and_split_valid_in_order(as_rank_1_of_2):
    data = TensorDataset(torch.arange(10))
    seed = 5
    loaders = {
        "train": DataLoader(
            data, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(seed)
        ),
        "valid": DataLoader(data, batch_size=4),
    }
    sharded = distributed.shard_loaders(loaders)
    train_sampler = sharded["train"].sampler
    assert isinstance(train_sampler, DistributedSampler)
    assert (train_sampler.seed, train_sampler.rank, train_sampler.num_replicas) == (seed, 1, 2)
    assert sharded["train"].batch_size == 2
    distributed.set_epoch(sharded["train"], 3)
    whole = DistributedSampler(data, num_replicas=1, rank=0, seed=seed)
    whole.set_epoch(3)
    assert list(train_sampler) == list(whole)[1::2]  # every second image of ONE shuffle
    assert [batch[0].tolist() for batch in sharded["valid"]] == [[5, 6, 7, 8], [9]]


def test_a_loader_that_cannot_be_sharded_is_refused_by_name(as_rank_1_of_2):
    with pytest.raises(TypeError, match=r'loaders\["valid"\] is a list.*DataLoader'):
        distributed.shard_loaders({"train": DataLoader([1, 2]), "valid": [1]})


def test_a_loader_already_sharded_is_kept(as_rank_1_of_2):
    data = list(range(8))
    mine = DataLoader(data, sampler=DistributedSampler(data, num_replicas=2, rank=1))
    assert distributed.shard_loaders({"train": mine})["train"] is mine
