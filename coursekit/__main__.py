"""Command line: ``python -m coursekit check-data PATH`` and ``python -m coursekit settings``.

$ python -m coursekit check-data data/flowers102   # exit code 1 when there are problems
$ COURSE_MODE=smoke python -m coursekit settings   # the settings a lesson would get
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
