"""Should a candidate run join a shipped ensemble? Decided on validation only; one JSON line
per candidate, then a verdict line.

    python benchmarks/join_ensemble.py RUN [RUN ...] [--ensemble ensemble]

Every member held out its own validation split (its seed's, or --split-seed's), so no image
is unseen by all members. Each candidate is therefore judged on its own split, against the
members that held out the same split: their averaged probabilities with the candidate and
without it. The verdict: the candidates join if, summed over their splits, the errors with
them are fewer than without. The test set is never read.
"""

from __future__ import annotations

import argparse
import json

from common import errors

from digitlab.config import validation_seed
from digitlab.data import validation_split
from digitlab.engine.checkpoint import load_checkpoint
from digitlab.engine.evaluate import ensemble_probabilities
from digitlab.engine.pretrained import model_card, shipped_weights


def held_out(config: dict) -> tuple:
    """What identifies the validation images a run held out."""
    return config["data"], config.get("train_limit"), config["val_split"], validation_seed(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="candidate run folders (or checkpoints)")
    parser.add_argument("--ensemble", default="ensemble", help="a shipped ensemble's name")
    args = parser.parse_args()
    members = [
        (name, load_checkpoint(shipped_weights(name)[0])) for name in model_card(args.ensemble).members
    ]
    totals = {"with": 0, "without": 0}
    for run in args.runs:
        candidate = load_checkpoint(run)
        config = candidate.meta.config
        split = validation_seed(config)
        peers = [(name, c.model) for name, c in members if held_out(c.meta.config) == held_out(config)]
        if not peers:
            raise SystemExit(f"{run}: no member of {args.ensemble} held out validation split {split}")
        val = validation_split(config)
        peers_sum = ensemble_probabilities([model for _, model in peers], val.images) * len(peers)
        alone = ensemble_probabilities([candidate.model], val.images)
        row = {
            "candidate": str(run),
            "split_seed": split,
            "peers": [name for name, _ in peers],
            "candidate_errors": errors(alone, val.labels),
            "peers_errors": errors(peers_sum, val.labels),
            "peers_with_candidate_errors": errors(peers_sum + alone, val.labels),
            "n": len(val),
        }
        totals["without"] += row["peers_errors"]
        totals["with"] += row["peers_with_candidate_errors"]
        print(json.dumps(row), flush=True)
    print(
        json.dumps(
            {
                "errors_without": totals["without"],
                "errors_with": totals["with"],
                "join": totals["with"] < totals["without"],
            }
        )
    )


if __name__ == "__main__":
    main()
