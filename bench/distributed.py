"""Benchmark 6: the same global work in 1 process and in 2 torchrun processes (gloo, CPU).

One ``coursekit.fit`` epoch of ResNet-18 on random images (global batch 32, the same
number of steps), timed inside the job (start-up excluded) and as a whole command
(start-up included), in three variants run in turn: 1 process with 2 threads, 1 process
with 1 thread, 2 processes with 1 thread each. The 2-process job also times one
all-reduce of ResNet-18's gradients alone (11.7 M float32 numbers), the exchange DDP
adds to every step.

    python -m bench.distributed            # 64 px, 8 steps, 3 repeats; writes results.md
    python -m bench.distributed --quick    # 32 px, 2 steps, 1 repeat; writes nothing
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import coursekit as ck
from bench.common import (
    base_parser,
    collect_environment,
    median,
    report,
    resnet18_classifier,
    section_intro,
)

GLOBAL_BATCH = 32
#: True of every run on a 2-core machine; the run's own numbers come above it.
CAN_AND_CANNOT = (
    "On 2 cores, 2 processes x 1 thread split the same compute as 1 process x 2 threads and "
    "add the all-reduce and a second start-up, so on an idle machine they cannot be faster; "
    "on a shared machine the scheduler's share of the cores decides more than DDP does. "
    "The run shows that the distributed path works with the same global work, and what the "
    "gradient exchange costs; the speed-up on N GPUs is worked out in docs/SCALING.md.\n"
)
PROCESSES = 2
#: The three ways to spend this machine's 2 cores: (name, processes, threads per process).
VARIANTS = (
    ("1 process x 2 threads", 1, 2),
    ("1 process x 1 thread", 1, 1),
    ("2 processes x 1 thread", 2, 1),
)


def job(steps: int, image_size: int) -> dict[str, float]:
    """One timed fit epoch (run in every process of the launch); rank 0's numbers."""
    ck.init_distributed("gloo")
    torch.manual_seed(0)
    per_process = GLOBAL_BATCH // ck.world_size()
    images = torch.randn(steps * GLOBAL_BATCH, 3, image_size, image_size)
    labels = torch.randint(0, 12, (steps * GLOBAL_BATCH,))
    data = TensorDataset(images, labels)
    loaders = {
        "train": DataLoader(
            data, batch_size=per_process, shuffle=True, generator=torch.Generator().manual_seed(0)
        ),
        "valid": DataLoader(
            TensorDataset(images[:per_process], labels[:per_process]), batch_size=per_process
        ),
    }
    model = resnet18_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = ck.fit(
        model, loaders, nn.CrossEntropyLoss(), optimizer, epochs=1, device="cpu", progress=False
    )
    result = {"epoch_seconds": history.seconds[0]}
    if ck.is_distributed():
        gradients = torch.zeros(sum(p.numel() for p in model.parameters()))
        dist.all_reduce(gradients)  # warm-up
        started = time.perf_counter()
        dist.all_reduce(gradients)
        result["all_reduce_seconds"] = time.perf_counter() - started
    if ck.is_main_process():
        print("RESULT " + json.dumps(result), flush=True)
    ck.shutdown_distributed()
    return result


def launch(processes: int, threads: int, steps: int, image_size: int) -> dict[str, float]:
    """Run :func:`job` in a fresh command; its numbers plus the command's wall time."""
    worker = [str(Path(__file__).resolve()), "--worker", str(steps), str(image_size)]
    if processes == 1:
        command = [sys.executable, *worker]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            *worker,
        ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - started
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return {**json.loads(line[len("RESULT ") :]), "command_seconds": wall}


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    steps, image_size, repeats = (2, 32, 1) if args.quick else (8, 64, args.repeats or 3)
    environment = collect_environment()
    started = time.perf_counter()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in VARIANTS}
    for round_number in range(repeats):  # in turn, A B C then C B A, like bench.common
        order = VARIANTS if round_number % 2 == 0 else VARIANTS[::-1]
        for name, processes, threads in order:
            runs[name].append(launch(processes, threads, steps, image_size))
    seconds = time.perf_counter() - started
    rows, epoch = [], {}
    for name, _, _ in VARIANTS:
        epoch[name] = median(r["epoch_seconds"] for r in runs[name])
        command = median(r["command_seconds"] for r in runs[name])
        rows.append(f"| {name} | {epoch[name]:.2f} | {command:.1f} |")
    base = epoch["1 process x 2 threads"]
    ratio_2p = epoch["2 processes x 1 thread"] / base
    ratio_1t = epoch["2 processes x 1 thread"] / epoch["1 process x 1 thread"]
    all_reduce = median(r["all_reduce_seconds"] for r in runs["2 processes x 1 thread"])
    markdown = (
        section_intro(
            "6. One fit epoch in 1 vs 2 torchrun processes (gloo, CPU)",
            "bench.distributed",
            environment,
            seconds,
        )
        + f"\nResNet-18, {steps} steps of a global batch of {GLOBAL_BATCH} at {image_size} px "
        f"(+ one validation batch), median of {repeats} interleaved repeats.\n\n"
        "| variant | fit epoch (s) | whole command incl. start-up (s) |\n|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\n2 processes / 1 process x 2 threads: **{ratio_2p:.2f}x** the epoch time; "
        f"2 processes / 1 process x 1 thread: **{ratio_1t:.2f}x**. One all-reduce of "
        f"ResNet-18's gradients over gloo on this machine: {all_reduce:.3f} s "
        f"({steps} per epoch).\n\n" + CAN_AND_CANNOT
    )
    report("distributed", markdown, quick=args.quick)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        job(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
