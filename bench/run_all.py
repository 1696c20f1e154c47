"""Run every benchmark, each in its own process, and collect them in ``bench/results.md``.

Each script rewrites its own section of results.md (nothing with ``--quick``). A fresh
process per script keeps one benchmark's memory and threads out of the next one.

    make bench                              # = python -m bench.run_all
    python -m bench.run_all --quick         # tiny sizes, a sanity run, writes nothing
    python -m bench.run_all --threads 1 --make-test
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.common import REPO_ROOT, SCRIPTS, base_parser


def script_command(script: str, passed: list[str], make_test: bool) -> list[str]:
    """The command line that runs ``bench.<script>`` with the options meant for it.

    >>> script_command("notebook_times", ["--quick"], make_test=True)[-2:]
    ['--quick', '--make-test']
    """
    command = [sys.executable, "-m", f"bench.{script}", *passed]
    if make_test and script == "notebook_times":
        command.append("--make-test")
    return command


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--make-test", action="store_true", help="also time `make test`")
    parser.add_argument("--only", nargs="+", choices=SCRIPTS, help="run just these scripts")
    args = parser.parse_args(argv)
    passed = ["--quick"] if args.quick else []
    if args.threads is not None:
        passed += ["--threads", str(args.threads)]
    if args.repeats is not None:
        passed += ["--repeats", str(args.repeats)]
    failed = []
    for script in args.only or SCRIPTS:
        print(f"\n=== bench.{script} ===", flush=True)
        started = time.perf_counter()
        done = subprocess.run(script_command(script, passed, args.make_test), cwd=REPO_ROOT)
        print(
            f"=== bench.{script}: exit {done.returncode} in {time.perf_counter() - started:.0f} s"
        )
        if done.returncode != 0:
            failed.append(script)
    if failed:
        print(f"\nFailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
