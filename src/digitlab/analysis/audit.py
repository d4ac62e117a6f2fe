"""Find the images whose labels are most likely wrong (confident learning, via cleanlab).

Test images are scored with the (ensembled) predictions of the checkpoints, which never
saw them. Training images are scored out-of-fold: each checkpoint predicts only the
images its own validation split held out, so no image is judged by a model trained on it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab.analysis import figures
from digitlab.analysis.predictions import Predictions, predict
from digitlab.config import validation_seed
from digitlab.data.digitdata import split_indices
from digitlab.data.sources import load_dataset, load_training_set
from digitlab.engine.checkpoint import Checkpoint
from digitlab.errors import DigitlabError
from digitlab.fileio import atomic_write_text


@dataclass
class AuditResult:
    rows: list[dict]  # images ranked by label quality, most likely wrong first
    scored: int  # how many images were scored
    flagged: int  # how many confident learning flags as label issues
    images: np.ndarray  # (len(rows), 28, 28) the images of the rows, for the grid


def held_out_predictions(checkpoints: list[Checkpoint]) -> tuple[Predictions, np.ndarray, list[str] | None]:
    """Out-of-fold predictions for the training images some checkpoint held out; their indices;
    their files, where the images were read from files of their own."""
    configs = [checkpoint.meta.config for checkpoint in checkpoints]
    for checkpoint, config in zip(checkpoints, configs, strict=True):
        if not config.get("val_split"):
            raise DigitlabError(
                f"{checkpoint.path}: no validation split recorded; cannot audit training labels"
            )
        if (config["data"], config.get("train_limit")) != (configs[0]["data"], configs[0].get("train_limit")):
            raise DigitlabError(f"{checkpoint.path}: trained on a different training set than the others")
    full = load_training_set(configs[0]["data"], configs[0].get("train_limit", 0))  # shared: read once
    total, count = np.zeros((len(full), len(full.classes))), np.zeros(len(full))
    for checkpoint, config in zip(checkpoints, configs, strict=True):
        _, held_out = split_indices(len(full), config["val_split"], validation_seed(config))
        total[held_out.numpy()] += predict([checkpoint], full.subset(held_out)).probabilities
        count[held_out.numpy()] += 1
    covered = np.flatnonzero(count)
    subset = full.subset(covered)
    probabilities = total[covered] / count[covered, None]
    predictions = Predictions(probabilities, subset.labels.numpy(), subset.images.numpy(), full.classes)
    return predictions, covered, subset.files


def audit_labels(
    checkpoints: list[Checkpoint], split: str = "test", data: str = "mnist", top: int = 25
) -> AuditResult:
    """Rank the images of `split` by label quality (cleanlab's self-confidence), lowest first.

    Returns the `top` lowest, or every image cleanlab's confident learning flags as a label
    issue if there are more; each row says whether it was flagged.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    if split == "test":
        test = load_dataset(data, "test")
        predictions, index, files = predict(checkpoints, test), np.arange(len(test)), test.files
    elif split == "train":
        predictions, index, files = held_out_predictions(checkpoints)
    else:
        raise DigitlabError(f"unknown split {split!r}; expected test or train")
    probs, labels = predictions.probabilities, predictions.labels
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    flagged = find_label_issues(labels, probs, filter_by="prune_by_noise_rate")
    order = np.argsort(quality, kind="stable")[: max(top, int(flagged.sum()))]
    rows = [
        {
            "split": split,
            "index": int(index[i]),
            "given": predictions.classes[labels[i]],
            "suggested": predictions.classes[probs[i].argmax()],
            "label_quality": round(float(quality[i]), 6),
            "p_given": round(float(probs[i, labels[i]]), 6),
            "p_suggested": round(float(probs[i].max()), 6),
            "flagged": bool(flagged[i]),
            "file": files[i] if files else "",
        }
        for i in order
    ]
    return AuditResult(rows, len(labels), int(flagged.sum()), predictions.images[order])


def write_audit(result: AuditResult, folder: Path, split: str, grid_size: int = 25) -> tuple[Path, Path]:
    """CSV of every suspected issue and a grid of the most likely ones (given vs suggested)."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    fields = [
        "split",
        "index",
        "given",
        "suggested",
        "label_quality",
        "p_given",
        "p_suggested",
        "flagged",
        "file",
    ]
    writer = csv.DictWriter(buffer, fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.rows)
    csv_path = folder / f"label_issues_{split}.csv"
    atomic_write_text(csv_path, buffer.getvalue())
    shown = result.rows[:grid_size]
    captions = [
        f"#{r['index']}: {r['given']} → {r['suggested']}{' *' if r['flagged'] else ''}" for r in shown
    ]
    grid = figures.digit_grid(
        result.images[: len(shown)],
        captions,
        folder / f"label_issues_{split}.png",
        f"{split} images whose label is most likely wrong (given → suggested)",
    )
    return csv_path, grid
