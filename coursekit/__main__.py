"""Command line: ``python -m coursekit check-data PATH``, ``settings`` and ``train``.

$ python -m coursekit check-data data/flowers102   # exit code 1 when there are problems
$ COURSE_MODE=smoke python -m coursekit settings   # the settings a lesson would get
$ python -m coursekit train data/hymenoptera --arch resnet18 --epochs 5 --out runs/ants
$ python -m coursekit export runs/model.pt --onnx runs/model.onnx   # plus a parity check
$ python -m coursekit serve runs/model.onnx        # a web demo on http://127.0.0.1:7860
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from coursekit import distributed
from coursekit.config import Settings, SettingsError, describe_overrides, get_settings
from coursekit.data import DatasetLayoutError, DatasetMissingError
from coursekit.folders import check_dataset
from coursekit.models import WeightsUnavailableError
from coursekit.recipe import train_recipe

#: The settings ``train`` takes as options (``--fine-tune-epochs`` for fine_tune_epochs).
TRAIN_SETTINGS = (
    "arch",
    "epochs",
    "fine_tune_epochs",
    "batch_size",
    "image_size",
    "resize_size",
    "lr",
    "fine_tune_lr",
    "head_lr_multiplier",
    "lr_step_size",
    "lr_gamma",
    "fine_tune_lr_step_size",
    "num_workers",
    "seed",
    "validation_split",
    "split_seed",
    "train_per_class",
    "valid_per_class",
    "device",
)

TRAIN_EXAMPLES = """examples:
  python -m coursekit train data/hymenoptera --arch resnet18 --epochs 5 \\
      --fine-tune-epochs 3 --out runs/ants
  python -m coursekit train ~/Pictures/birds --validation-split 0.2 --out runs/birds
  torchrun --nproc_per_node=4 -m coursekit train data/flowers102 --batch-size 128 \\
      --amp --channels-last --out runs/flowers
  torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d \\
      --rdzv-endpoint=HOST:29500 -m coursekit train data/flowers102 --out runs/flowers

--batch-size is the batch of all processes together, split evenly between them. Options
not given take the course settings (COURSE_<NAME> environment variables, then defaults;
see: python -m coursekit settings). Under torchrun only rank 0 prints and writes files.
"""


def _check_data(args: argparse.Namespace) -> int:
    report = check_dataset(args.path)
    print(report)
    return 0 if report.ok else 1


def _settings(_: argparse.Namespace) -> int:
    settings = get_settings()
    for setting in fields(settings):
        print(f"{setting.name} = {getattr(settings, setting.name)}")
    print("\nEnvironment variables that change them:")
    print("COURSE_MODE=full|smoke (default full; smoke is the tests' quick run on tiny data)")
    print(describe_overrides())
    return 0


def _train(args: argparse.Namespace) -> int:
    overrides = {name: getattr(args, name) for name in TRAIN_SETTINGS}
    settings = get_settings(
        **{name: value for name, value in overrides.items() if value is not None}
    )
    distributed.init_distributed()
    try:
        train_recipe(
            args.data_dir,
            args.out if args.out is not None else settings.runs_dir / "train",
            settings,
            amp=args.amp,
            channels_last=args.channels_last,
            tensorboard_dir=args.tensorboard,
        )
    finally:
        distributed.shutdown_distributed()
    return 0


def _add_train_command(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="the course recipe (frozen backbone + head, then fine-tuning) on any image folder",
        description="Train a pretrained classifier on DATA_DIR with the course recipe: a new "
        "head on the frozen backbone, then fine-tuning with discriminative learning rates. "
        "Writes best.pt, history.json, history.png and bundle.pt into --out.",
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "data_dir",
        metavar="DATA_DIR",
        help="an ImageFolder tree (train/ and valid/ or val/) or ONE folder of class "
        "folders, split with --validation-split and --split-seed",
    )
    train.add_argument("--out", type=Path, help="output folder (default: RUNS_DIR/train)")
    defaults = Settings()
    for name in TRAIN_SETTINGS:
        default = getattr(defaults, name)
        train.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            metavar=name.upper(),
            # argparse names the option in its message when a value has the wrong type.
            type=int if default is None else type(default),
            help=f"setting {name} (default: COURSE_{name.upper()} or the course default)",
        )
    train.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mixed precision (float16) on CUDA; default: on with CUDA, never on CPU",
    )
    train.add_argument(
        "--channels-last",
        action="store_true",
        help="store the model channels-last (faster convolutions on recent GPUs)",
    )
    train.add_argument(
        "--tensorboard",
        type=Path,
        metavar="LOG_DIR",
        help="also log both phases for TensorBoard (pip install tensorboard)",
    )
    train.set_defaults(run=_train)


def _export(args: argparse.Namespace) -> int:
    from coursekit.export import export_onnx  # needs the deploy extra: imported on demand

    report = export_onnx(args.bundle, args.onnx, opset=args.opset)
    print(report)
    return 0 if report.parity is None or report.parity.ok() else 1


def _serve(args: argparse.Namespace) -> int:
    from coursekit.demo import serve  # needs the demo extra: imported on demand

    serve(args.model, host=args.host, port=args.port, share=args.share, top_k=args.top_k)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m coursekit", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check-data", help="check a dataset folder: counts per class and every problem found"
    )
    check.add_argument("path", help="dataset folder, e.g. data/flowers102")
    check.set_defaults(run=_check_data)
    settings = commands.add_parser("settings", help="print the current settings and overrides")
    settings.set_defaults(run=_settings)
    _add_train_command(commands)
    export = commands.add_parser(
        "export", help="write a bundle as an ONNX file and check it gives the same logits"
    )
    export.add_argument("bundle", help="bundle file written by ck.export_bundle, e.g. runs/model.pt")
    export.add_argument("--onnx", required=True, help="the ONNX file to write, e.g. runs/model.onnx")
    export.add_argument("--opset", type=int, default=18, help="ONNX operator set (default 18)")
    export.set_defaults(run=_export)
    serve = commands.add_parser("serve", help="a web page to try a bundle or ONNX file")
    serve.add_argument("model", help="bundle (.pt) or ONNX file (.onnx)")
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1: this computer only")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--top-k", type=int, default=5, help="how many classes to show")
    serve.add_argument(
        "--share", action="store_true", help="also make a temporary public link (Gradio's)"
    )
    serve.set_defaults(run=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code (0 ok, 1 problems found, 2 bad settings).

    >>> main(["check-data", "data/synthetic"])  # doctest: +SKIP
    """
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (
        SettingsError,
        DatasetLayoutError,
        DatasetMissingError,
        WeightsUnavailableError,
        FileNotFoundError,
        ValueError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
