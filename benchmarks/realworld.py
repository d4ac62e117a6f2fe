"""The real-world suite: each model on photos, scans, marker and fine-pen digits, printed digits
and non-digits (letters, symbols, doodles, blank paper); one JSON line per set and model.

    python benchmarks/realworld.py CHECKPOINT [CHECKPOINT ...] [--count 500]
    python benchmarks/realworld.py RUN [RUN ...] --digits validation --seed 1000   # to choose by

The sets are built by digitlab.analysis.realworld, deterministically from --seed, from MNIST's
*test* split, the fonts installed on this machine and drawn shapes: no training uses them.
"Accepted" means the prediction's verdict is "digit" (not "unsure" or "not-a-digit").

`--digits validation` builds the digit sets from the first run's own validation split (the
training images it held out) instead: a development suite to choose models or settings by,
so that the suite of test digits is measured once, for the model chosen.
"""

from __future__ import annotations

import argparse
import json
import time

from digitlab import load_dataset
from digitlab.analysis.realworld import build_suite, score_predictor
from digitlab.data import validation_split
from digitlab.engine.checkpoint import read_meta
from digitlab.inference import Predictor


def digits(which: str, run: str):
    """MNIST's test split, or the validation split `run` held out of its training set."""
    if which == "test":
        return load_dataset("mnist", "test")
    return validation_split(read_meta(run).config)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+", help="run folders or .safetensors files, each scored alone")
    parser.add_argument("--count", type=int, default=500, help="images per set")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sets")
    parser.add_argument(
        "--digits",
        choices=("test", "validation"),
        default="test",
        help="MNIST's test digits, or the first run's validation split (a development suite)",
    )
    args = parser.parse_args()
    predictors = {path: Predictor.from_paths(path) for path in args.checkpoints}
    table = []
    for eval_set in build_suite(digits(args.digits, args.checkpoints[0]), args.count, args.seed):
        for path, predictor in predictors.items():
            start = time.perf_counter()
            row = {"set": eval_set.name, "model": path, **score_predictor(predictor, eval_set)}
            row["seconds"] = round(time.perf_counter() - start, 2)
            print(json.dumps(row), flush=True)
            table.append(row)
    print("\n| set | model | n | accuracy | accepted | accuracy on accepted | rejected |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in table:
        cells = [row.get(key) for key in ("accuracy", "accepted", "accuracy_on_accepted", "rejected")]
        text = " | ".join("—" if v is None else f"{v * 100:.1f} %" for v in cells)
        print(f"| {row['set']} | {row['model']} | {row['n']} | {text} |")


if __name__ == "__main__":
    main()
