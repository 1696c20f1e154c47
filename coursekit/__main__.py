"""Command line: ``python -m coursekit check-data PATH`` and ``python -m coursekit settings``.

$ python -m coursekit check-data data/flowers102   # exit code 1 when there are problems
$ COURSE_MODE=smoke python -m coursekit settings   # the settings a lesson would get
$ python -m coursekit export runs/model.pt --onnx runs/model.onnx   # plus a parity check
$ python -m coursekit serve runs/model.onnx        # a web demo on http://127.0.0.1:7860
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields

from coursekit.config import SettingsError, describe_overrides, get_settings
from coursekit.data import check_dataset


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
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
