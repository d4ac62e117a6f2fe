"""What the benchmark scripts share: one timed `digitlab train` process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def timed_train(flags: list[str], out: Path, name: str) -> tuple[float, dict]:
    """Run `digitlab train FLAGS` as a new process; return its wall seconds and result.json."""
    command = [
        sys.executable,
        "-m",
        "digitlab",
        "train",
        "--quiet",
        "--out",
        str(out),
        "--name",
        name,
        *flags,
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    return wall, json.loads((out / name / "result.json").read_text())
