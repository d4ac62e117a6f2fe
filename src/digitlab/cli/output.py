"""The shared vocabulary of the commands' output: `--json`, `--out`/`--overwrite`, progress bars.

- `--json`: one JSON object on stdout (one per line for streams), nothing else on stdout.
- `--out`: where to write — a file for single-file outputs, a folder for multi-file ones;
  files that exist are never replaced without `--overwrite` (`digitlab.fileio.refuse_existing`,
  which the library's own writers, such as the ONNX export, call too).
- progress bars go to stderr, only on a terminal and never with `--json`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from contextlib import contextmanager


def add_json_flag(parser: argparse.ArgumentParser, what: str = "print one JSON object") -> None:
    parser.add_argument("--json", action="store_true", help=what)


def add_overwrite_flag(parser: argparse.ArgumentParser, what: str = "--out") -> None:
    parser.add_argument("--overwrite", action="store_true", help=f"replace existing files in {what}")


def add_deprecated_alias(parser: argparse.ArgumentParser, flag: str, dest: str, **kwargs) -> None:
    """An old spelling that keeps working, hidden from --help."""
    parser.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def print_json(value) -> None:
    print(json.dumps(value, default=str))


def progress(iterable: Iterable, as_json: bool = False, **kwargs):
    """tqdm on stderr, shown only on a terminal and not with --json."""
    from tqdm import tqdm

    return tqdm(iterable, disable=as_json or not sys.stderr.isatty(), leave=False, file=sys.stderr, **kwargs)


@contextmanager
def step_progress(steps: Sequence[str], as_json: bool = False, desc: str = ""):
    """A progress bar over named steps: yields a function to call with each step's name as it
    starts; the bar shows how many are done and the one under way."""
    bar = progress(None, as_json, total=len(steps), desc=desc, unit="step")

    def start(step: str) -> None:
        bar.update(steps.index(step) - bar.n)  # the steps before it are done, skipped ones too
        bar.set_postfix_str(step)

    try:
        yield start
    finally:
        bar.close()
