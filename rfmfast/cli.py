"""`rfmfast` command line. Each subcommand lives in its own module, which provides
``register(subparsers)``; a module that is missing (an optional part) just isn't listed.

User errors end in one line on stderr, ``rfmfast: error: ...``: exit status 2 for a bad command
line (argparse, UsageError), 1 for input that cannot be used (a missing or malformed file, data
that does not fit, an empty test set). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile

from .backends import BackendUnavailable

# subcommand modules, in the order `rfmfast --help` lists them
_COMMANDS = (
    "rfmfast.demo",  # rfmfast demo: the ops on built-in data, with timings
    "rfmfast.recipes.grokking",  # rfmfast grokking: RFM on modular arithmetic
    "rfmfast.recipes.complete",  # rfmfast complete: lin-RFM matrix completion of ratings
    "rfmfast.recipes.nn",  # rfmfast nn: feature learning in neural nets (rfmfast.nn)
    "rfmfast.recipes.deep_kernels",  # rfmfast deep-kernels: deep NNGP kernels as classifiers
    "rfmfast.recipes.inverse",  # rfmfast inverse: iterative matrix inversion, measured orders
    "rfmfast.recipes.transfer",  # rfmfast transfer: kernel transfer learning on digits
    "rfmfast.recipes.icl",  # rfmfast icl: context- vs task-scaling of in-context learning
    "rfmfast.info",  # rfmfast info: backends and machine
    "rfmfast.bench",  # rfmfast bench: the benchmarks, side by side with the peers
)

# what a user can cause and fix: reported in one line, exit status 1
_INPUT_ERRORS = (ValueError, OSError, MemoryError, ArithmeticError, BackendUnavailable)


class UsageError(Exception):
    """A command line that cannot run (found after parsing, before any work): exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"rfmfast: error: {message} (see `{self.prog} --help`)\n")


def check_out(path: str, force: bool) -> None:
    """Refuse, before any work, an output path that cannot be written, or that holds a file
    (unless ``force``): its directory must exist and take a new file."""
    if os.path.isdir(path):
        raise UsageError(f"--out {path!r} is a directory")
    if os.path.lexists(path) and not force:
        raise UsageError(f"--out {path!r} exists; pass --force to overwrite it")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"--out {path!r}: the directory {parent!r} does not exist")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise UsageError(f"--out {path!r}: cannot write in {parent!r} ({e.strerror})") from None


def check_plot_out(path: str, force: bool) -> None:
    """check_out for a recipe's PNG, and refuse it before any work when matplotlib is missing
    (an empty path: no plot, nothing checked)."""
    if not path:
        return
    check_out(path, force)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            "--out needs matplotlib (pip install matplotlib); pass --out '' for the table alone"
        ) from None


def device_arg(text: str) -> str:
    """argparse type of --device: cpu, cuda or cuda:N, and CUDA only where torch sees it."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(
            f"{text}: torch sees no CUDA device here; use --device cpu"
        )
    return text


def fraction_arg(text: str) -> float:
    """argparse type of a share strictly between 0 and 1."""
    try:
        x = float(text)
    except ValueError:
        x = None
    if x is None or not 0 < x < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in (0, 1)")
    return x


def positive_int_arg(text: str) -> int:
    """argparse type of an integer >= 1."""
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return k


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = _Parser(prog="rfmfast", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--version", action="version", version=f"rfmfast {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        module.register(sub)
    for command in sub.choices.values():  # every command takes --threads (bench has its own)
        if not any("--threads" in a.option_strings for a in command._actions):
            command.add_argument(
                "--threads",
                type=positive_int_arg,
                default=None,
                metavar="N",
                help="threads for rfmfast's kernels and torch (default: torch's, i.e. "
                "OMP_NUM_THREADS or the cores)",
            )
    return parser


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def main(argv=None) -> int:
    """Run ``rfmfast ARGS``; returns the exit status (0 success, 1 unusable input, 2 usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0), or a usage error already reported in one line (2)
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        print(f"rfmfast: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except _INPUT_ERRORS as e:
        print(f"rfmfast: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rfmfast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    from rfmfast.cli import main as _main  # the imported module: its UsageError is the recipes' one

    sys.exit(_main())
