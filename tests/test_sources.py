import numpy as np
import pytest
import torch

from digitlab.data import load_dataset, load_training_set, validation_split, verify_shipped, write_idx
from digitlab.data.sources import shipped_mnist_dir
from digitlab.errors import DataError


def test_shipped_mnist_loads_both_splits(mnist_test):
    train = load_dataset("mnist", "train")
    assert len(train) == 60000 and len(mnist_test) == 10000
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert mnist_test.labels[:3].tolist() == [7, 2, 1]


def test_shipped_files_match_their_hashes():
    results = verify_shipped()
    assert len(results) == 4 and all(ok for _, ok in results)


def test_idx_folder_raw_and_gzip(tmp_path, small_idx_dir):
    data = load_dataset(small_idx_dir, "train")
    assert len(data) == 600
    raw = tmp_path / "raw"
    raw.mkdir()
    write_idx(raw / "t10k-images-idx3-ubyte", data.images.numpy())
    write_idx(raw / "t10k-labels-idx1-ubyte", data.labels.to(torch.uint8).numpy())
    assert torch.equal(load_dataset(raw, "test").images, data.images)


def save_pair(folder, images, labels, split="train"):
    folder.mkdir(exist_ok=True)
    torch.save(images, folder / f"{split}_data.pth")
    torch.save(labels, folder / f"{split}_labels.pth")


@pytest.mark.parametrize(
    "convert",
    [
        lambda x: x,  # uint8 N×28×28
        lambda x: x.unsqueeze(1),  # N×1×28×28
        lambda x: x.float() / 255,  # float in [0, 1]
        lambda x: x.float(),  # float in [0, 255]
    ],
)
def test_seed002_tensor_files(tmp_path, mnist_test, convert):
    images, labels = mnist_test.images[:50], mnist_test.labels[:50]
    save_pair(tmp_path / "t", convert(images), labels)
    data = load_dataset(tmp_path / "t", "train")
    assert torch.equal(data.images, images) and torch.equal(data.labels, labels)


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (torch.zeros(5, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64), "4 labels but"),
        (torch.zeros(5, 32, 32, dtype=torch.uint8), torch.zeros(5, dtype=torch.int64), "N×28×28"),
        (torch.full((5, 28, 28), -1.0), torch.zeros(5, dtype=torch.int64), "un-normalised"),
        (
            torch.zeros(5, 28, 28, dtype=torch.uint8),
            torch.full((5,), 12),
            "label 12 is out of range; expected 0-9",
        ),
        (torch.zeros(5, 28, 28, dtype=torch.uint8), torch.full((5,), 0.5), "whole numbers"),
        (
            torch.zeros(5, 28, 28, dtype=torch.uint8),
            torch.zeros(5, 28, 28),
            r"shape N or N×1, got \(5, 28, 28\)",
        ),
    ],
)
def test_bad_tensor_files(tmp_path, images, labels, message):
    save_pair(tmp_path / "bad", images, labels)
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / "bad", "train")


def test_tensor_file_that_is_not_a_tensor(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "train_data.pth").write_bytes(b"this is not a torch file")
    (folder / "train_labels.pth").write_bytes(b"nor this")
    with pytest.raises(DataError, match="train_data.pth"):
        load_dataset(folder, "train")


def test_mismatched_idx_pair(tmp_path, small_idx_dir):
    folder = tmp_path / "mismatch"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((10, 28, 28), np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(DataError, match="9 labels but .*10 images"):
        load_dataset(folder, "train")


def test_missing_files_and_unknown_names(tmp_path):
    with pytest.raises(DataError, match="missing train-images"):
        load_dataset(tmp_path, "train")
    with pytest.raises(DataError, match="not a data set name, file or folder"):
        load_dataset("fashion-nonsense", "train")
    with pytest.raises(DataError, match="unknown split"):
        load_dataset("mnist", "validation")


def test_split_is_seeded_and_disjoint(mnist_test):
    a_train, a_val = mnist_test.split(0.1, seed=3)
    b_train, b_val = mnist_test.split(0.1, seed=3)
    c_train, _ = mnist_test.split(0.1, seed=4)
    assert len(a_val) == 1000 and len(a_train) == 9000
    assert torch.equal(a_val.images, b_val.images)
    assert not torch.equal(a_train.labels, c_train.labels)


def test_pixel_stats_match_the_float_computation(mnist_test):
    mean, std = mnist_test.pixel_stats()
    pixels = mnist_test.images.double() / 255
    assert mean == pytest.approx(pixels.mean().item(), rel=1e-9)
    assert std == pytest.approx(pixels.std().item(), rel=1e-9)


def test_batches_cover_every_image_once(mnist_test):
    data = mnist_test.subset(slice(0, 1000))
    seen = torch.cat([labels for _, labels in data.batches(128, shuffle_seed=1)])
    assert len(seen) == 1000 and torch.equal(seen.sort().values, data.labels.sort().values)
    shards = [torch.cat([y for _, y in data.batches(100, 1, (rank, 3))]) for rank in range(3)]
    assert all(len(s) == 334 for s in shards)  # 1000 padded to 1002 over three ranks


def test_shipped_folder_is_inside_the_package():
    assert (shipped_mnist_dir() / "SHA256SUMS").exists()


def test_keras_npz_layout(tmp_path, mnist_test):
    path = tmp_path / "mnist.npz"
    images, labels = mnist_test.images.numpy(), mnist_test.labels.numpy()
    np.savez(path, x_train=images[:300], y_train=labels[:300], x_test=images[300:400], y_test=labels[300:400])
    train, test = load_dataset(path, "train"), load_dataset(path, "test")
    assert len(train) == 300 and len(test) == 100
    assert torch.equal(test.images, mnist_test.images[300:400])
    np.savez(
        tmp_path / "float.npz",
        x_train=images[:10, :, :, None] / 255.0,
        y_train=labels[:10],
        x_test=images[:1],
        y_test=labels[:1],
    )
    assert torch.equal(load_dataset(tmp_path / "float.npz", "train").images, mnist_test.images[:10])


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(x_train=np.zeros((3, 28, 28), np.uint8)), "missing array"),
        (dict(x_train=np.zeros((3, 20, 20), np.uint8), y_train=np.zeros(3, np.uint8)), "N×28×28"),
        (
            dict(x_train=np.zeros((3, 28, 28), np.uint8), y_train=np.full(3, 11)),
            "label 11 is out of range; expected 0-9",
        ),
        (dict(x_train=np.zeros((3, 28, 28), np.uint8), y_train=np.zeros(2, np.int64)), "2 labels but"),
        (dict(x_train=np.zeros((3, 28, 28), np.uint8), y_train=np.array(["a", "b", "c"])), "integer labels"),
    ],
)
def test_bad_npz_files_name_the_file_and_array(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as err:
        load_dataset(path, "train")
    assert "bad.npz" in str(err.value)
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(tmp_path / "junk.npz", "train")


def test_validation_split_is_the_one_a_recorded_run_held_out():
    training_set = load_training_set("mnist", 600)
    recorded = {"data": "mnist", "train_limit": 600, "val_split": 0.1, "seed": 1, "split_seed": 7}
    held_out = validation_split(recorded)
    assert torch.equal(held_out.images, training_set.split(0.1, 7)[1].images)  # --split-seed, not --seed
    before_split_seed = {k: v for k, v in recorded.items() if k != "split_seed"}
    assert torch.equal(validation_split(before_split_seed).labels, training_set.split(0.1, 1)[1].labels)
    assert not torch.equal(held_out.images, validation_split(before_split_seed).images)
