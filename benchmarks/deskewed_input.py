"""Does a model read better when its input is also deskewed? One JSON line per model, on the
model's own validation split (the test set is never read).

    python benchmarks/deskewed_input.py best best-seed1 best-widecnn    (shipped names or runs)

Errors on the images as they are, on their deskewed copies (`digitlab.models.deskew`), and
with the two readings' probabilities averaged, as a test-time augmentation would.
"""

from __future__ import annotations

import json
import sys

import torch
from common import errors

from digitlab.data import validation_split
from digitlab.engine.checkpoint import load_checkpoint
from digitlab.engine.evaluate import ensemble_probabilities
from digitlab.models.deskew import deskew


def deskewed(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 28, 28), each sheared upright."""
    upright = deskew(images.float().unsqueeze(1)).squeeze(1)
    return upright.round().clamp(0, 255).to(torch.uint8)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for name in sys.argv[1:]:
        checkpoint = load_checkpoint(name)
        val = validation_split(checkpoint.meta.config)
        plain = ensemble_probabilities([checkpoint.model], val.images)
        upright = ensemble_probabilities([checkpoint.model], deskewed(val.images))
        row = {
            "model": name,
            "val_errors": errors(plain, val.labels),
            "val_errors_deskewed": errors(upright, val.labels),
            "val_errors_averaged": errors(plain + upright, val.labels),
            "n": len(val),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
