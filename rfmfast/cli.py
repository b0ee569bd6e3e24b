"""`rfmfast` command line. Each subcommand lives in its own module, which provides
``register(subparsers)``; a module that is missing (an optional part) just isn't listed."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand modules, in the order `rfmfast --help` lists them
_COMMANDS = (
    "rfmfast.demo",              # rfmfast demo: the ops on built-in data, with timings
    "rfmfast.recipes.grokking",  # rfmfast grokking: RFM on modular arithmetic
    "rfmfast.recipes.complete",  # rfmfast complete: lin-RFM matrix completion of ratings
    "rfmfast.info",              # rfmfast info: backends and machine
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rfmfast", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
