"""The ``carepath`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from carepath.errors import InvalidInput


def _simulate(args: argparse.Namespace) -> int:
    from carepath.simulate.report import render_text
    from carepath.simulate.runner import print_progress, run_files

    try:
        results = run_files(args.files, args.database_url, args.processes, progress=print_progress)
    except InvalidInput as exc:
        for error in exc.errors:
            print(f"carepath simulate: invalid scenario: {error}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(results))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carepath", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser(
        "simulate",
        help="run scenario files through the production workflow on a time-skipping server",
        description="Run patients' stories (shared/pathway/SCENARIOS.md) side by side and print what "
        "the pathway raised.",
    )
    sim.add_argument("files", nargs="+", metavar="FILE", help="scenario JSON files")
    sim.add_argument("--json", action="store_true", help="print a JSON list instead of readable timelines")
    sim.add_argument(
        "--database-url",
        default=None,
        help="record into this database (default: a new temporary SQLite file per run)",
    )
    sim.add_argument(
        "--processes",
        type=int,
        default=None,
        help="worker processes, each with its own server (default: CPUs)",
    )
    sim.set_defaults(handler=_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
