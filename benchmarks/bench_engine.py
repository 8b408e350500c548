"""Benchmark lstmkit's engine: a thin script over ``lstmkit.bench`` with the options of ``lstmkit bench``.

Usage (from the repository root):
    python benchmarks/bench_engine.py --quick
    python benchmarks/bench_engine.py --suite lstm-train,stream --json bench.json
See docs/benchmarks.md for the suites, the table and how ratios are computed.
"""
from __future__ import annotations

import argparse
import os
import sys

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src")
if os.path.isdir(os.path.join(_SRC, "lstmkit")):  # this checkout's lstmkit wins over an installed one
    sys.path.insert(0, os.path.abspath(_SRC))

from lstmkit.cli import cmd_bench  # noqa: E402
from lstmkit.errors import UserError  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench_engine.py", description=__doc__.splitlines()[0],
                                     epilog=cmd_bench.EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd_bench.add_arguments(parser)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    try:
        return cmd_bench.run(args, argv=argv)
    except (UserError, ValueError, FileNotFoundError) as exc:
        print(f"bench_engine.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
