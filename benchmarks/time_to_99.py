"""Time-to-99: wall time of `digitlab train --preset fast` from process start to the printed
test accuracy, for several seeds. Prints one JSON line per seed, then a summary line.

    python benchmarks/time_to_99.py [--seeds 0,1,2,3,4] [--validation-only] [-- extra train flags]

--validation-only prints each run's validation accuracy and no test figure: for choosing
between recipes (`-- --label-smoothing 0.1`) before the chosen one's test figures are read.
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
    parser.add_argument(
        "--validation-only", action="store_true", help="print validation accuracy, not test accuracy"
    )
    parser.add_argument("extra", nargs="*", help="flags passed on to digitlab train (after --)")
    args = parser.parse_args()
    measured = "val" if args.validation_only else "test"
    accuracy_key = f"{measured}_acc"
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
                accuracy_key: result[measured]["accuracy"],
                "cpus": len(os.sched_getaffinity(0)),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    walls = [r["wall_s"] for r in rows]
    accs = [r[accuracy_key] for r in rows]
    print(
        json.dumps(
            {
                "summary": args.preset,
                "runs": len(rows),
                "wall_s": {"min": min(walls), "median": statistics.median(walls), "max": max(walls)},
                accuracy_key: {
                    "min": min(accs),
                    "median": statistics.median(accs),
                    "mean": statistics.mean(accs),
                    "max": max(accs),
                },
                "all_at_least_99": all(a >= 0.99 for a in accs),
                "all_within_10s": all(w <= 10 for w in walls),
            }
        )
    )


if __name__ == "__main__":
    main()
