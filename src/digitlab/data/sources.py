"""Where data comes from: the shipped MNIST, named data sets, idx/tensor/npz/CSV files, image folders.

Sources with only one labelled set (a CSV file, an image folder without train/ and test/)
hold out a fixed seventh of it as the test split, the same one every run (MNIST's own
10,000 of 70,000).
"""

from __future__ import annotations

import functools
import zipfile
from importlib import resources
from pathlib import Path
from shlex import quote

import numpy as np
import torch

from digitlab.config import validation_seed
from digitlab.data import store
from digitlab.data.catalog import CATALOG, DatasetSpec
from digitlab.data.csvdata import read_csv_images
from digitlab.data.digitdata import DIGIT_CLASSES, DigitData, split_indices
from digitlab.data.download import content_sha256
from digitlab.data.idx import read_idx
from digitlab.data.imagefolder import class_folders, is_image_folder, read_image_folder
from digitlab.errors import DataError
from digitlab.fileio import MAX_DATA_BYTES, check_regular_file, load_weights_only

SPLITS = ("train", "test")
IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
TENSOR_FILES = {
    "train": ("train_data.pth", "train_labels.pth"),
    "test": ("test_data.pth", "test_labels.pth"),
}
HOLDOUT_FRACTION = 1 / 7
HOLDOUT_SEED = 7_000_000  # fixed: the held-out test split must not move with --seed


def shipped_mnist_dir() -> Path:
    """The folder of the MNIST idx files that ship inside the package."""
    return Path(str(resources.files("digitlab.data") / "mnist"))


def load_dataset(source: str | Path = "mnist", split: str = "train") -> DigitData:
    """Load one split ("train" or "test") of a data set.

    `source` is a name from `digitlab data list` ("mnist" ships with digitlab; the others
    are fetched on first use), a folder holding the four MNIST idx files (raw or .gz), a
    folder holding seed-002 tensor files (train_data.pth, ...), an .npz file in Keras'
    mnist.npz layout, a Kaggle-layout .csv file, or a folder of images with one sub-folder
    per class (optionally inside train/ and test/).
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if str(source) == "mnist":
        return _from_idx_folder(shipped_mnist_dir(), split, name="mnist")
    if str(source) in CATALOG:
        return _from_catalog(CATALOG[str(source)], split)
    path = Path(source)
    # exists(), not is_file(): the readers refuse a FIFO or a device named x.csv themselves
    if path.suffix.lower() == ".npz" and path.exists() and not path.is_dir():
        return _from_npz(path, split)
    if path.suffix.lower() == ".csv" and path.exists() and not path.is_dir():
        return _holdout(_from_csv(str(path), _stamp(path)), split)
    if not path.is_dir():
        raise DataError(
            f"{path}: not a data set name, file or folder (names: {', '.join(CATALOG)}; files: "
            ".npz, .csv; folders: MNIST idx files, train_data.pth/train_labels.pth, or one "
            "sub-folder of images per class)"
        )
    if any((path / name).exists() for name in TENSOR_FILES[split]):
        return _from_tensor_files(path, split)
    if (path / "train").is_dir() and is_image_folder(path / "train"):
        classes = [p.name for p in class_folders(path / "train")]
        return _from_image_folder(str(path / split), _stamp(path / split), tuple(classes))
    if is_image_folder(path):
        return _holdout(_from_image_folder(str(path), _stamp(path)), split)
    return _from_idx_folder(path, split, name=str(path))


def load_training_set(source: str | Path, train_limit: int = 0) -> DigitData:
    """The training split as a run used it: its first `train_limit` images when set (0 = all)."""
    data = load_dataset(source, "train")
    return data.subset(slice(0, train_limit)) if train_limit else data


def validation_split(config: dict) -> DigitData:
    """The validation images a run held out, from its recorded settings (`--split-seed`
    honoured)."""
    training_set = load_training_set(config["data"], config.get("train_limit") or 0)
    return training_set.split(config["val_split"], validation_seed(config))[1]


def _stamp(path: Path) -> tuple[int, int] | None:
    """(modification time, size): a changed file or folder is read again, not served from memory."""
    if not path.exists():
        return None
    info = path.stat()
    return info.st_mtime_ns, info.st_size


def _holdout(data: DigitData, split: str) -> DigitData:
    train_index, test_index = split_indices(len(data), HOLDOUT_FRACTION, HOLDOUT_SEED)
    return data.subset(train_index if split == "train" else test_index)


@functools.lru_cache(maxsize=2)
def _from_csv(path: str, stamp: tuple | None) -> DigitData:
    images, labels = read_csv_images(path)
    if labels is None:
        raise DataError(
            f"{path}: no label column, so it cannot be trained or tested on; "
            "predict it with: digitlab predict CHECKPOINT --csv " + quote(path)
        )
    return _checked(
        torch.from_numpy(images), torch.from_numpy(labels), path, path, path, item=lambda i: f"line {i + 2}"
    )


@functools.lru_cache(maxsize=2)
def _from_image_folder(folder: str, stamp: tuple | None, classes: tuple | None = None) -> DigitData:
    if stamp is None:
        raise DataError(f"{folder}: folder not found (a train/ folder needs a test/ folder beside it)")
    images, labels, names, files = read_image_folder(Path(folder), list(classes) if classes else None)
    return _checked(
        torch.from_numpy(images), torch.from_numpy(labels), folder, folder, folder, names, files=files
    )


def _from_catalog(spec: DatasetSpec, split: str) -> DigitData:
    folder = store.fetch(spec.name)
    image_path, label_path = (
        folder / spec.files[f"{split}-{kind}"].local_name for kind in ("images", "labels")
    )
    images, labels = read_idx(image_path), read_idx(label_path)
    if labels.ndim == 2:  # QMNIST: one row of 8 numbers per image, the class first
        labels = labels[:, 0]
    if spec.transposed:  # EMNIST stores each image column by column
        images = images.transpose(0, 2, 1)
    return _idx_arrays(images, labels - spec.label_offset, image_path, label_path, spec.name, spec.classes)


def _find_idx(folder: Path, stem: str) -> Path:
    variants = [stem, stem.replace("-idx", ".idx")]
    for name in variants:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.exists():
                return candidate
    raise DataError(f"{folder}: missing {stem} (or {stem}.gz); expected the four MNIST idx files")


def _from_idx_folder(folder: Path, split: str, name: str) -> DigitData:
    image_path, label_path = (_find_idx(folder, stem) for stem in IDX_STEMS[split])
    return _idx_arrays(read_idx(image_path), read_idx(label_path), image_path, label_path, name)


def _idx_arrays(images, labels, image_path, label_path, name: str, classes=DIGIT_CLASSES) -> DigitData:
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(
            f"{image_path}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1:
        raise DataError(f"{label_path}: expected a 1-D label array, got shape {labels.shape}")
    return _checked(
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.from_numpy(labels.astype(np.int64)),
        image_path,
        label_path,
        name,
        list(classes),
    )


def _from_tensor_files(folder: Path, split: str) -> DigitData:
    image_path, label_path = (folder / name for name in TENSOR_FILES[split])
    images = _load_tensor(image_path)
    labels = _load_tensor(label_path)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or tuple(images.shape[1:]) != (28, 28):
        raise DataError(
            f"{image_path}: expected images of shape N×28×28 or N×1×28×28, got {tuple(images.shape)}"
        )
    images = _as_uint8(images, image_path)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{label_path}: expected labels of shape N or N×1, got {tuple(labels.shape)}")
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise DataError(f"{label_path}: labels must be whole numbers")
    return _checked(images, labels, image_path, label_path, str(folder))


def _from_npz(path: Path, split: str) -> DigitData:
    """Keras' mnist.npz layout: x_train, y_train, x_test, y_test (loaded without pickle)."""
    image_key, label_key = f"x_{split}", f"y_{split}"
    check_regular_file(path, MAX_DATA_BYTES)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in (image_key, label_key) if key not in archive.files]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {', '.join(missing)}; expected x_train, y_train, "
                    "x_test, y_test (Keras' mnist.npz layout)"
                )
            images, labels = archive[image_key], archive[label_key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from None
    if images.dtype.kind not in "uif" or labels.dtype.kind not in "ui":
        raise DataError(
            f"{path}: {image_key} must be numeric images and {label_key} integer labels, "
            f"got {images.dtype} and {labels.dtype}"
        )
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{path}: {image_key} must have shape N×28×28, got {images.shape}")
    source = f"{path}[{image_key}]"
    pixels = _as_uint8(torch.from_numpy(np.ascontiguousarray(images)), Path(source))
    return _checked(
        pixels,
        torch.from_numpy(labels.astype(np.int64).reshape(-1)),
        source,
        f"{path}[{label_key}]",
        str(path),
    )


def _load_tensor(path: Path) -> torch.Tensor:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    obj = load_weights_only(path)
    if not isinstance(obj, torch.Tensor):
        raise DataError(f"{path}: expected one tensor, found {type(obj).__name__}")
    return obj


def _as_uint8(images: torch.Tensor, path: Path) -> torch.Tensor:
    """uint8 as is; float in [0, 1] scaled by 255; float or int in [0, 255] rounded."""
    if images.dtype == torch.uint8:
        return images
    values = images.double()
    low, high = values.min().item(), values.max().item()
    if low < 0 or high > 255 or not np.isfinite(high):
        raise DataError(
            f"{path}: pixel values span [{low:g}, {high:g}]; expected [0, 1] or [0, 255] "
            "(un-normalised images)"
        )
    if images.is_floating_point() and high <= 1.0:
        values = values * 255
    return values.round().to(torch.uint8)


def _checked(
    images,
    labels,
    image_path,
    label_path,
    name: str,
    classes=DIGIT_CLASSES,
    item=lambda i: f"item {i}",
    files: list[str] | None = None,
) -> DigitData:
    if len(images) != len(labels):
        raise DataError(f"{label_path}: {len(labels)} labels but {image_path} holds {len(images)} images")
    labels = labels.to(torch.int64)
    bad = torch.nonzero((labels < 0) | (labels >= len(classes))).flatten()
    if len(bad):
        raise DataError(
            f"{label_path}, {item(bad[0].item())}: label {labels[bad[0]].item()} is out of range; "
            f"expected 0-{len(classes) - 1} ({len(bad)} such labels)"
        )
    return DigitData(images.contiguous(), labels, list(classes), name, files)


def verify_shipped() -> list[tuple[str, bool]]:
    """Check each shipped MNIST file's decompressed SHA-256 against SHA256SUMS."""
    folder = shipped_mnist_dir()
    results = []
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        expected, name = line.split()
        results.append((name, content_sha256(folder / f"{name}.gz") == expected))
    return results
