"""Data: idx files, data set sources, and the in-memory DigitData."""

from digitlab.data.digitdata import DIGIT_CLASSES, DigitData, to_pixels
from digitlab.data.idx import read_idx, write_idx
from digitlab.data.sources import load_dataset, load_training_set, validation_split, verify_shipped

__all__ = [
    "DIGIT_CLASSES",
    "DigitData",
    "load_dataset",
    "load_training_set",
    "validation_split",
    "read_idx",
    "to_pixels",
    "verify_shipped",
    "write_idx",
]
