"""Error-analysis numbers: confusion matrix, per-class table, confused pairs; calibration is
measured by `engine.calibration` (re-exported here)."""

from __future__ import annotations

import numpy as np

from digitlab.engine.calibration import Calibration, calibration  # noqa: F401  (the report's)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with true labels as rows and predicted labels as columns."""
    flat = np.asarray(labels, np.int64) * num_classes + np.asarray(predictions, np.int64)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_table(matrix: np.ndarray, classes: list[str]) -> list[dict]:
    """Precision, recall, F1 and support of every class."""
    rows = []
    for i, name in enumerate(classes):
        hits, predicted, support = matrix[i, i], matrix[:, i].sum(), matrix[i].sum()
        precision = hits / predicted if predicted else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            {
                "class": name,
                "precision": float(precision),
                "recall": float(recall),
                "f1": float(f1),
                "support": int(support),
            }
        )
    return rows


def confused_pairs(matrix: np.ndarray, classes: list[str], top: int = 10) -> list[tuple[str, str, int]]:
    """The most frequent (true, predicted) mistakes, most frequent first."""
    errors = matrix.copy()
    np.fill_diagonal(errors, 0)
    order = np.argsort(-errors, axis=None, kind="stable")[:top]
    pairs = [
        (classes[i], classes[j], int(errors[i, j]))
        for i, j in zip(*np.unravel_index(order, errors.shape), strict=True)
    ]
    return [pair for pair in pairs if pair[2] > 0]
