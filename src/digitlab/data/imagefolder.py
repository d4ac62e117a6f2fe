"""A folder of images with one sub-folder per class (`0/…`, `1/…`, or any class names).

Each image goes through the same preprocessing as `digitlab predict`, so a model trained on
a user's photos sees them exactly as it will see new ones.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from digitlab.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def _natural_key(name: str) -> list:
    """Sort "2" before "10" and "a" before "b"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def class_folders(folder: Path) -> list[Path]:
    """The sub-folders that hold images, in natural order."""
    subfolders = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    with_images = [p for p in subfolders if any(image_files(p))]
    return sorted(with_images, key=lambda p: _natural_key(p.name))


def image_files(folder: Path) -> list[Path]:
    return sorted(iter_image_files(folder))


SORTED_UP_TO = 100_000  # a bigger folder is streamed in file-system order, never held whole


def iter_image_files(folder: Path) -> Iterator[Path]:
    """The image files of `folder` in name order; past SORTED_UP_TO files, in the order the
    file system lists them, so a folder of a million images never becomes one big list."""
    with os.scandir(folder) as entries:
        images = (
            Path(e.path) for e in entries if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES
        )
        first = list(itertools.islice(images, SORTED_UP_TO))
        if len(first) < SORTED_UP_TO:
            yield from sorted(first)
            return
        yield from first
        yield from images


def is_image_folder(folder: Path) -> bool:
    return bool(class_folders(folder))


def read_image_folder(
    folder: Path, classes: list[str] | None = None, progress: bool | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(uint8 images (N, 28, 28), int64 labels (N,), class names, the N files) from
    `folder/<class>/*`.

    `classes` fixes the class order (a test folder must use the training folder's).
    """
    from digitlab.imaging.preprocess import to_mnist  # Pillow and SciPy only when needed

    found = class_folders(folder)
    if not found:
        raise DataError(f"{folder}: no sub-folders with images; expected one folder per class (0/, 1/, ...)")
    empty = sorted(
        p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and p not in found
    )
    if empty:  # a class with no images would silently be no class at all
        raise DataError(
            f"{folder}: class folder(s) {', '.join(empty)} hold no images "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}); add images or remove the folder"
        )
    names = [p.name for p in found]
    classes = classes or names
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise DataError(f"{folder}: class folder(s) {', '.join(unknown)} not among {', '.join(classes)}")
    files = [(path, classes.index(sub.name)) for sub in found for path in image_files(sub)]
    images = np.zeros((len(files), 28, 28), np.uint8)
    if progress is None:
        progress = sys.stderr.isatty()
    for i, (path, _) in enumerate(tqdm(files, desc=f"reading {folder}", disable=not progress, leave=False)):
        images[i] = to_mnist(path, str(path))  # raises DataError naming the file
    labels = np.array([label for _, label in files], np.int64)
    return images, labels, list(classes), [str(path) for path, _ in files]
