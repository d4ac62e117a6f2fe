"""Where an ensemble's members go wrong together, on the MNIST test set; one JSON line.

    python benchmarks/ensemble_errors.py [ENSEMBLE]     (default: the shipped 'ensemble')

Prints each member's test errors, how many images at least one member misreads, how many
every member misreads, and for each of the ensemble's own errors how many members misread
it too. Descriptive only: it measures the test set, so it may not choose anything.
"""

from __future__ import annotations

import json
import sys

import torch

from digitlab.data import load_dataset
from digitlab.engine.checkpoint import load_checkpoint
from digitlab.engine.evaluate import ensemble_probabilities
from digitlab.engine.pretrained import model_card, shipped_weights


def wrong_images(probabilities: torch.Tensor, labels: torch.Tensor) -> set[int]:
    return set((probabilities.argmax(1) != labels).nonzero().flatten().tolist())


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "ensemble"
    members = model_card(name).members
    if not members:
        sys.exit(f"{name}: not an ensemble (its card names no members)")
    test = load_dataset("mnist", "test")
    total, wrong = None, []
    for member in members:
        model = load_checkpoint(shipped_weights(member)[0]).model
        probabilities = ensemble_probabilities([model], test.images)
        wrong.append(wrong_images(probabilities, test.labels))
        total = probabilities if total is None else total + probabilities
    ensemble_wrong = wrong_images(total, test.labels)
    members_wrong = {image: sum(image in w for w in wrong) for image in set().union(*wrong)}
    row = {
        "ensemble": name,
        "member_errors": [[member, len(w)] for member, w in zip(members, wrong, strict=True)],
        "ensemble_errors": len(ensemble_wrong),
        "misread_by_some_member": len(members_wrong),
        "misread_by_half_or_more": sum(2 * count >= len(members) for count in members_wrong.values()),
        "misread_by_all": sum(count == len(members) for count in members_wrong.values()),
        "members_wrong_on_each_ensemble_error": sorted(members_wrong.get(i, 0) for i in ensemble_wrong),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
