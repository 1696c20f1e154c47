"""Peak resident memory of ONE valid phase, measured in a fresh process per variant.

Why a fresh process: ``ru_maxrss`` and ``VmHWM`` are peaks over a process's whole life, and
memory freed by the train phase often stays resident (the allocator keeps it), so a valid
phase measured after a train phase in the same process mostly measures the train phase.
Here each run builds the valid loader and the model (the common setup), resets the peak
(``VmHWM``, via ``echo 5 > /proc/self/clear_refs``; without it the lifetime peak is used and
the method says so), runs only the valid phase, and prints one JSON line:

    python -m bench.valid_peak_memory --variant plain --data DIR --crop 224 --resize 256

``autograd_saved_bytes`` is the deterministic complement: the bytes autograd keeps for a
backward pass that never comes (zero under ``torch.inference_mode``).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import coursekit as ck
from bench.common import apply_threads, resnet18_classifier
from bench.plain_loops import plain_loaders, plain_phase

VARIANTS = ("coursekit", "plain")
_STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int | None:
    """A ``VmRSS``-style field of /proc/self/status in KiB, or None off Linux."""
    try:
        text = _STATUS.read_text(encoding="utf-8")
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+)\s+kB", text, flags=re.MULTILINE)
    return int(found.group(1)) if found else None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS; False if not possible.

    >>> reset_peak_rss() in (True, False)
    True
    """
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def peak_rss_kib() -> int:
    """Peak resident memory in KiB: ``VmHWM`` (resettable) or the lifetime ``ru_maxrss``."""
    hwm = _status_kib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def autograd_saved_bytes(run: Callable[[], Any]) -> int:
    """Bytes of activations autograd keeps alive for a backward pass while ``run()`` executes.

    Each storage counts once however many operations save it; leaves (parameters, inputs)
    are not counted, since they are in memory anyway.

    >>> autograd_saved_bytes(lambda: torch.ones(3, requires_grad=True).exp())
    12
    """
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if not tensor.is_leaf:
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(storages.values())


def valid_phase(variant: str, model: nn.Module, loader: Any, criterion: nn.Module) -> None:
    """Run the valid phase the way ``variant`` does it ("coursekit" or "plain")."""
    if variant == "coursekit":
        ck.evaluate(model, loader, criterion, "cpu")
    elif variant == "plain":
        optimizer = torch.optim.Adam(model.parameters())  # the plain loop calls zero_grad on it
        plain_phase(model, loader, criterion, optimizer, "valid")
    else:
        raise ValueError(f"variant={variant!r}: use one of {VARIANTS}.")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, reset the peak, run one valid phase; RSS before, peak, and the method used."""
    apply_threads(args.threads)
    size = (args.crop, args.resize)
    _, valid_ds = ck.build_datasets(
        args.data,
        None,
        ck.eval_transforms(*size),
        train_per_class=1,
        valid_per_class=args.valid_per_class,
        verify=False,
    )
    # Both loaders decode in this process (0 workers), so decoding costs the same memory.
    if args.variant == "coursekit":
        loader = ck.make_loaders(valid_ds, valid_ds, args.batch_size)["valid"]
    else:
        loader = plain_loaders(valid_ds, valid_ds, args.batch_size)["valid"]
    model, criterion = resnet18_classifier(), nn.CrossEntropyLoss()
    before = _status_kib("VmRSS")
    was_reset = reset_peak_rss()
    valid_phase(args.variant, model, loader, criterion)
    return {
        "variant": args.variant,
        "rss_before_kib": before,
        "peak_kib": peak_rss_kib(),
        "method": "VmHWM reset before the valid phase"
        if was_reset
        else "lifetime peak (ru_maxrss): setup included",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--data", type=Path, required=True, help="synthetic dataset folder")
    parser.add_argument("--crop", type=int, required=True)
    parser.add_argument("--resize", type=int, required=True)
    parser.add_argument("--valid-per-class", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    print(json.dumps(measure(parser.parse_args(argv))))


if __name__ == "__main__":
    main()
