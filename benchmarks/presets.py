"""Train every named preset (or those given) end to end and print one JSON line each.

    python benchmarks/presets.py [PRESET ...] [-- extra train flags]

Each line: preset, model, epochs run, best epoch, validation and test accuracy, and the
wall time of the whole `digitlab train` process. The README's preset table comes from here.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from common import timed_train

from digitlab.config import PRESETS


def run_preset(name: str, extra: list[str], out: Path) -> dict:
    wall, result = timed_train(["--preset", name, *extra], out, name)
    return {
        "preset": name,
        "model": PRESETS[name].settings["model"],
        "extra": " ".join(extra),
        "epochs_run": result["epochs_run"],
        "best_epoch": result["best_epoch"],
        "val_acc": round(result["val"]["accuracy"], 5) if result["val"] else None,
        "test_acc": round(result["test"]["accuracy"], 5),
        "test_errors": result["test"]["errors"],
        "wall_s": round(wall, 1),
        "machine": f"{platform.machine()} cpus={len(os.sched_getaffinity(0))}",
    }


def main() -> None:
    args = sys.argv[1:]
    extra = args[args.index("--") + 1 :] if "--" in args else []
    names = (args[: args.index("--")] if "--" in args else args) or list(PRESETS)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(json.dumps(run_preset(name, extra, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
