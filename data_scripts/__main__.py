"""The ``course-data`` command (also ``python -m data_scripts``): get, check and make datasets.

$ python -m data_scripts synthetic
$ python -m data_scripts get hymenoptera --from ~/Downloads/hymenoptera_data.zip
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from coursekit._safe_io import NotWritableError
from data_scripts.errors import DataScriptError

PROG = "python -m data_scripts"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job.

    >>> build_parser().parse_args(["synthetic", "--seed", "3"]).seed
    3
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Get, check and generate the course's datasets and pretrained weights.",
        epilog=(
            "Datasets go to the course data folder: $COURSE_DATA_ROOT, default <repo>/data.\n"
            f"Run `{PROG} COMMAND --help` for the options of each command."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_get(commands)
    _add_synthetic(commands)
    _add_subset(commands)
    _add_weights(commands)
    _add_verify(commands)
    return parser


def _command(
    commands: argparse._SubParsersAction, name: str, summary: str, details: str
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=summary,
        description=f"{summary}\n\n{details}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help="data folder to use (default: $COURSE_DATA_ROOT, or <repo>/data)",
    )


def _add_get(commands: argparse._SubParsersAction) -> None:
    parser = _command(
        commands,
        "get",
        "Download a real dataset and install it as ImageFolder folders.",
        "hymenoptera -> <root>/hymenoptera/{train,val}/{ants,bees}\n"
        "flowers102  -> <root>/flowers102/{train,valid}/<1..102> + cat_to_name.json\n\n"
        "Downloads resume after an interruption, are retried, and are checked against a\n"
        "pinned checksum. Nothing appears in <root> until the dataset is complete.\n\n"
        "examples:\n"
        f"  {PROG} get hymenoptera\n"
        f"  {PROG} get hymenoptera --from ~/Downloads/hymenoptera_data.zip\n"
        f"  {PROG} get flowers102 --from /mnt/usb/flowers/\n"
        "      (a folder holding 102flowers.tgz, imagelabels.mat and setid.mat)\n"
        f"  {PROG} get flowers102 --from https://mirror.example.org/flowers/",
    )
    parser.add_argument("name", choices=("hymenoptera", "flowers102"), help="dataset to install")
    _add_root(parser)
    parser.add_argument(
        "--from",
        dest="source",
        metavar="PATH_OR_URL",
        help="install from a local archive (.zip/.tgz), a folder (extracted dataset, or the "
        "folder holding the official files) or a mirror URL instead of the official site",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the dataset if it is already there (and download again a --from URL "
        "file that has no pinned checksum)",
    )


def _add_synthetic(commands: argparse._SubParsersAction) -> None:
    parser = _command(
        commands,
        "synthetic",
        "Generate the offline dataset of drawn shapes and textures.",
        "12 classes in folders 1..12 (circle, square, ... hexagon) with cat_to_name.json,\n"
        "images of varied sizes, color modes (RGB, L, RGBA, P) and formats (JPEG, PNG).\n"
        "The same seed gives the same images. If the folder is already complete with the\n"
        "same parameters, nothing is done.",
    )
    _add_root(parser)
    parser.add_argument(
        "--train-per-class",
        type=int,
        default=30,
        metavar="N",
        help="train images per class (default 30)",
    )
    parser.add_argument(
        "--valid-per-class",
        type=int,
        default=10,
        metavar="N",
        help="valid images per class (default 10)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if the folder is complete"
    )


def _add_subset(commands: argparse._SubParsersAction) -> None:
    parser = _command(
        commands,
        "subset",
        "Copy a small, class-balanced, seeded sample of a dataset.",
        "Takes N images per class in every split (all of them, reported, where a class has\n"
        "fewer), keeps cat_to_name.json, skips hidden files such as .ipynb_checkpoints.\n\n"
        "example:\n"
        f"  {PROG} subset data/flowers102 data/flowers102-mini --per-class 5",
    )
    parser.add_argument("source", type=Path, metavar="SRC", help="dataset folder to sample from")
    parser.add_argument("destination", type=Path, metavar="DST", help="new folder to create")
    parser.add_argument(
        "--per-class", type=int, required=True, metavar="N", help="images per class and split"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--force", action="store_true", help="replace DST if it exists")


def _add_weights(commands: argparse._SubParsersAction) -> None:
    parser = _command(
        commands,
        "weights",
        "Pre-fetch torchvision's pretrained weights into the torch cache ($TORCH_HOME).",
        "NAME is a torchvision model (resnet18, resnet50, vgg16, mobilenet_v3_small,\n"
        "efficientnet_b0, ...; its DEFAULT weights) or a weights entry such as\n"
        "ResNet50_Weights.IMAGENET1K_V2. Files are checked against the hash in their name.\n\n"
        "examples:\n"
        f"  {PROG} weights resnet18 vgg16\n"
        f"  {PROG} weights resnet18 --from /mnt/usb/weights\n"
        "      (a folder holding resnet18-f37072fd.pth)\n"
        f"  {PROG} weights --list",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help="models to fetch (default: resnet18)"
    )
    parser.add_argument(
        "--from",
        dest="folder",
        type=Path,
        metavar="DIR",
        help="install from the .pth files in DIR instead of downloading",
    )
    parser.add_argument(
        "--list", action="store_true", help="show the cached weights files and exit"
    )


def _add_verify(commands: argparse._SubParsersAction) -> None:
    parser = _command(
        commands,
        "verify",
        "Check a dataset's folders and count its images per split and class.",
        "NAME_OR_PATH is hymenoptera, flowers102 or synthetic (looked up in the data folder)\n"
        "or the path of any dataset folder. Exits with status 1 when there are problems.",
    )
    parser.add_argument("target", metavar="NAME_OR_PATH", help="dataset name or folder")
    _add_root(parser)


def run(args: argparse.Namespace) -> int:
    """Carry out the parsed command; returns the exit status.

    >>> run(build_parser().parse_args(["verify", "synthetic"]))  # doctest: +SKIP
    0
    """
    # Imported here so that --help answers at once (these pull in numpy, PIL, torch).
    if args.command == "get":
        from data_scripts.get import get_dataset

        get_dataset(args.name, args.root, args.source, force=args.force)
    elif args.command == "synthetic":
        from data_scripts.synthetic import make_synthetic

        make_synthetic(
            args.root, args.train_per_class, args.valid_per_class, args.seed, force=args.force
        )
    elif args.command == "subset":
        from data_scripts.subset import make_subset

        print(
            make_subset(
                args.source, args.destination, args.per_class, args.seed, force=args.force
            ).summary()
        )
    elif args.command == "weights":
        return _run_weights(args)
    elif args.command == "verify":
        return _run_verify(args)
    return 0


def _run_weights(args: argparse.Namespace) -> int:
    from data_scripts import weights

    if args.list:
        print(weights.describe_cache())
        return 0
    names = args.names or list(weights.DEFAULT_MODELS)
    if args.folder is not None:
        weights.install_weights_from(args.folder, names)
    else:
        weights.fetch_weights(names)
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from data_scripts.layout import describe_problem, verify_dataset

    report = verify_dataset(args.target, args.root)
    print(f"{report.root}: {'OK' if report.ok else 'PROBLEMS'} ({report.total_images} images)")
    if report.counts:
        print(report.table())
    for warning in report.warnings:
        print(f"warning: {describe_problem(warning, report.root)}")
    for problem in report.problems:
        print(f"problem: {describe_problem(problem, report.root)}")
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``course-data`` / ``python -m data_scripts``; returns the exit status.

    >>> main(["synthetic", "--root", "/tmp/data"])  # doctest: +SKIP
    0
    """
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (DataScriptError, NotWritableError) as error:  # a full disk is the learner's to fix too
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\nInterrupted. Nothing half-done was installed; a partial download is kept "
            "and resumes when you run the command again.",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
