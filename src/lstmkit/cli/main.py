"""Entry point of the ``lstmkit`` command: builds the parser from the ``cmd_*`` modules beside it.

Each ``lstmkit/cli/cmd_<name>.py`` defines ``register(sub, train_sub)``: ``sub`` is the top-level
subparsers object (for commands like ``demo``, ``predict``), ``train_sub`` the subparsers of
``lstmkit train`` (for ``train forecast``, ``train lm``...). A registered parser sets ``func`` with
``parser.set_defaults(func=...)``; ``func(args)`` returns an exit status.

Errors meant for the user are raised as :class:`lstmkit.errors.UserError` (or ValueError /
FileNotFoundError from input checks): they print one line and exit with status 2, no traceback.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import lstmkit
from lstmkit.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lstmkit",
        description="LSTM networks for Python: train, evaluate and use recurrent models from the command line.",
    )
    parser.add_argument("--version", action="version", version=f"lstmkit {lstmkit.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = sub.add_parser("train", help="train a model for a task (see `lstmkit train -h`)")
    train_sub = train.add_subparsers(dest="task", metavar="TASK")
    train.set_defaults(func=lambda args: (train.print_help(), 2)[1])
    import lstmkit.cli as cli_pkg

    for info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"lstmkit.cli.{info.name}").register(sub, train_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, FileNotFoundError, KeyboardInterrupt) as exc:
        if isinstance(exc, KeyboardInterrupt):
            print("lstmkit: interrupted", file=sys.stderr)
        else:
            print(f"lstmkit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
