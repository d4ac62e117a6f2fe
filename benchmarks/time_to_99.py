"""Time-to-99: wall time of `digitlab train --preset fast` from process start to the printed
test accuracy, for several seeds. Prints one JSON line per seed, then a summary line.

    python benchmarks/time_to_99.py [--seeds 0,1,2,3,4] [-- extra train flags]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from common import timed_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("extra", nargs="*", help="flags passed on to digitlab train (after --)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            name = f"seed{seed}"
            wall, result = timed_train(
                ["--preset", args.preset, "--seed", str(seed), *args.extra], Path(tmp), name
            )
            row = {
                "preset": args.preset,
                "seed": seed,
                "wall_s": round(wall, 2),
                "train_s": result["train_seconds"],
                "test_acc": result["test"]["accuracy"],
                "cpus": len(os.sched_getaffinity(0)),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    walls = [r["wall_s"] for r in rows]
    accs = [r["test_acc"] for r in rows]
    print(
        json.dumps(
            {
                "summary": args.preset,
                "runs": len(rows),
                "wall_s": {"min": min(walls), "median": statistics.median(walls), "max": max(walls)},
                "test_acc": {"min": min(accs), "median": statistics.median(accs), "max": max(accs)},
                "all_at_least_99": all(a >= 0.99 for a in accs),
                "all_within_10s": all(w <= 10 for w in walls),
            }
        )
    )


if __name__ == "__main__":
    main()
