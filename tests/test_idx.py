import gzip
import struct

import numpy as np
import pytest

from digitlab.data import read_idx, write_idx
from digitlab.data.idx import idx_bytes
from digitlab.data.sources import shipped_mnist_dir
from digitlab.errors import DataError


def test_reads_real_mnist_files():
    folder = shipped_mnist_dir()
    images = read_idx(folder / "train-images-idx3-ubyte.gz")
    labels = read_idx(folder / "train-labels-idx1-ubyte.gz")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,)
    assert labels[:5].tolist() == [5, 0, 4, 1, 9]  # the famous first five
    assert np.bincount(labels).tolist()[1] == 6742  # ones are the most common digit


def test_reader_matches_hand_built_file(tmp_path):
    values = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = struct.pack(">HBB3I", 0, 0x08, 3, 2, 3, 4) + values.tobytes()
    (tmp_path / "hand").write_bytes(raw)
    assert np.array_equal(read_idx(tmp_path / "hand"), values)
    assert idx_bytes(values) == raw


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip_raw_and_gzip(tmp_path, dtype):
    values = (np.arange(60) - 30).astype(dtype).reshape(3, 4, 5)
    for name in ("a.idx", "a.idx.gz"):
        write_idx(tmp_path / name, values)
        back = read_idx(tmp_path / name)
        assert back.dtype == np.dtype(dtype) and np.array_equal(back, values)
    assert (tmp_path / "a.idx.gz").read_bytes()[:2] == b"\x1f\x8b"


def header(shape, code=0x08):
    return struct.pack(f">HBB{len(shape)}I", 0, code, len(shape), *shape)


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "too short"),
        (b"\x01\x02\x08\x01" + b"\0" * 8, "not an idx file"),
        (struct.pack(">HBB", 0, 0x07, 1) + b"\0" * 8, "not an idx file"),
        (header((10, 28, 28)) + b"\0" * 100, "truncated"),
        (header((2,)) + b"\0\0\0", "trailing bytes"),
        (header((2, 2))[:8], "truncated idx header"),
        (struct.pack(">HBB", 0, 0x08, 0), "0 dimensions"),
    ],
)
def test_broken_files_raise_data_error_naming_the_file(tmp_path, payload, message):
    path = tmp_path / "broken-idx"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_truncated_gzip_is_a_data_error(tmp_path):
    whole = gzip.compress(header((100,)) + bytes(100))
    path = tmp_path / "cut.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="gzip"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "nope")
