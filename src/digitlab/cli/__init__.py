"""The `digitlab` command line: parse arguments, call the library, print.

One module per group of commands; each command has a small `add_<command>` function that
declares its parser next to the `run_<command>` handler that carries it out.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

from digitlab._version import __version__
from digitlab.cli import catalog, deploy, results, train, tune
from digitlab.errors import DigitlabError

COMMAND_GROUPS = [train, tune, results, deploy, catalog]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digitlab",
        description="Train, test and inspect handwritten-digit recognisers on MNIST.",
        epilog="Run `digitlab COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"digitlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        for add_command in group.COMMANDS:
            add_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # a bare `digitlab`: what it can do
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except DigitlabError as err:
        print(f"digitlab: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`digitlab ... | head`): not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:  # disk full, read-only folder, permissions: the machine, not a bug
        where = f"{err.filename}: " if err.filename else ""
        print(
            f"digitlab: error: {where}{err.strerror or err}; files written before are intact "
            "(every write goes to a temporary file first)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("digitlab: interrupted", file=sys.stderr)
        return 130


def run() -> int:
    """The `digitlab` program (console script, `python -m digitlab`): `main`, with less garbage collection.

    A command creates ~200,000 objects that live to its end (torch's modules) and few reference
    cycles (about 7,000 in a whole `train --preset fast`). Python's default collector walks
    the survivors again and again while torch imports, and once more at exit: 0.3-0.4 s of a
    5-s fast run. So young objects are collected every 100,000 allocations instead of 700, and
    what is left at the end is frozen, not walked (every file is written and closed by then).
    Tests call `main` in their own process, which keeps Python's defaults.
    """
    gc.set_threshold(100_000, 10, 10)
    code = main()
    gc.freeze()
    return code
