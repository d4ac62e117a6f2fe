"""Single models, test-time augmentation and the ensemble of several runs; one JSON line each.

    python benchmarks/ensemble.py RUN [RUN ...]

Whether test-time augmentation (TTA: averaging over one-pixel shifts) helps is decided on
each run's own validation split (the images its seed held out); the test set is then
measured once per single model and once for the ensemble (probabilities averaged over
all runs), both with TTA only if it helped on validation (on average over the runs).
"""

from __future__ import annotations

import json
import sys

import numpy as np

from digitlab.data import load_dataset, validation_split
from digitlab.engine.checkpoint import load_checkpoint
from digitlab.engine.evaluate import evaluate_ensemble


def accuracy(checkpoints: list, data, tta: bool) -> float:
    return evaluate_ensemble([c.model for c in checkpoints], data, tta).accuracy


def main() -> None:
    runs = sys.argv[1:]
    if not runs:
        sys.exit(__doc__)
    checkpoints = [load_checkpoint(run) for run in runs]
    test = load_dataset(checkpoints[0].meta.config["data"], "test")
    rows = []
    for run, checkpoint in zip(runs, checkpoints, strict=True):
        val = validation_split(checkpoint.meta.config)
        rows.append(
            {
                "run": run,
                "val_acc": accuracy([checkpoint], val, tta=False),
                "val_acc_tta": accuracy([checkpoint], val, tta=True),
            }
        )
    mean_gain = float(np.mean([row["val_acc_tta"] - row["val_acc"] for row in rows]))
    use_tta = mean_gain > 0  # decided on validation, before the test set is touched
    for row, checkpoint in zip(rows, checkpoints, strict=True):
        row["test_acc"] = accuracy([checkpoint], test, use_tta)
        row["tta"] = use_tta
        print(json.dumps(row), flush=True)
    print(
        json.dumps(
            {
                "ensemble_of": len(runs),
                "tta": use_tta,
                "mean_val_gain_of_tta": mean_gain,
                "test_acc": accuracy(checkpoints, test, use_tta),
            }
        )
    )


if __name__ == "__main__":
    main()
