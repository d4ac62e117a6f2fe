"""CSV images in Kaggle's "Digit Recognizer" layout: a header, then `label,pixel0..pixel783` rows.

A test file has no label column. Pixels are whole numbers 0-255, row-major 28×28.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from digitlab.errors import DataError
from digitlab.fileio import MAX_DATA_BYTES, atomic_write_text, check_regular_file

PIXELS = 28 * 28


def read_csv_images(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 images (N, 28, 28), int64 labels (N,) or None for an unlabelled file)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    check_regular_file(path, MAX_DATA_BYTES)
    try:
        with open(path, newline="") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: not a readable CSV file ({err})") from None
    if not header:
        raise DataError(f"{path}: empty file; expected a header line label,pixel0,...,pixel783")
    if all(field.strip().isdigit() for field in header):
        raise DataError(
            f"{path}: the first line holds numbers, not a header; add one: label,pixel0,...,pixel783 "
            "(or pixel0,...,pixel783 for images without labels)"
        )
    labelled = header[0].strip().lower() == "label"
    columns = PIXELS + labelled
    if len(header) != columns:
        raise DataError(
            f"{path}: header has {len(header)} columns; expected {PIXELS + 1} (label,pixel0..pixel783) "
            f"or {PIXELS} (pixel0..pixel783, unlabelled)"
        )
    try:
        with warnings.catch_warnings():  # an empty table is reported below, not warned about
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    except ValueError:  # UnicodeDecodeError included
        raise DataError(f"{path}{_first_bad_line(path, columns)}") from None
    if table.shape[0] == 0:
        raise DataError(f"{path}: no rows after the header")
    if table.shape[1] != columns:  # numpy accepts one consistent width; it must be the header's
        raise DataError(f"{path}, line 2: {table.shape[1]} values; expected {columns}")
    pixels = table[:, labelled:]
    bad_rows = np.flatnonzero((pixels < 0).any(axis=1) | (pixels > 255).any(axis=1))
    if len(bad_rows):
        row = bad_rows[0]
        raise DataError(
            f"{path}, line {row + 2}: pixel values must be 0-255, found "
            f"{pixels[row].min()}..{pixels[row].max()}"
        )
    images = pixels.astype(np.uint8).reshape(-1, 28, 28)
    return images, (table[:, 0] if labelled else None)


def _first_bad_line(path: Path, columns: int) -> str:
    """ ", line N: what is wrong" for the line numpy could not parse (slow, only after a failure)."""
    with open(path, errors="replace") as handle:  # split by hand: csv refuses fields over 128 KiB
        for line, text in enumerate(handle, start=1):
            if line == 1:
                continue
            row = text.rstrip("\r\n").split(",")
            if len(row) != columns:
                return f", line {line}: {len(row)} values; expected {columns}"
            for column, value in enumerate(row, start=1):
                try:
                    int(value)
                except ValueError:
                    return f", line {line}: value {value[:20]!r} in column {column} is not a whole number"
    return ": not readable as CSV text (is it UTF-8?)"


def write_submission(path: str | Path, labels: list[str]) -> None:
    """Kaggle's submission format: ImageId (from 1),Label."""
    rows = ["ImageId,Label"] + [f"{i},{label}" for i, label in enumerate(labels, start=1)]
    atomic_write_text(path, "\n".join(rows) + "\n")
