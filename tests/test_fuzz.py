"""The data readers on random and truncated bytes: the project's error, never a crash or a hang."""

import gzip
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digitlab.data import load_dataset, read_idx
from digitlab.data.csvdata import read_csv_images
from digitlab.data.idx import idx_bytes, read_idx_bytes
from digitlab.errors import DataError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
VALID = idx_bytes(np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28))


@FUZZ
@given(st.binary(max_size=2048))
def test_idx_parser_on_random_bytes(payload):
    try:
        array = read_idx_bytes(payload, "fuzz")
    except DataError:
        return
    assert array.size * array.itemsize == len(payload) - 4 - 4 * array.ndim


@FUZZ
@given(st.integers(0, len(VALID) - 1))
def test_truncated_idx_is_refused(cut):
    with pytest.raises(DataError):
        read_idx_bytes(VALID[:cut], "cut")


@FUZZ
@given(st.binary(min_size=1, max_size=64))
def test_trailing_bytes_are_refused(tail):
    with pytest.raises(DataError, match="trailing"):
        read_idx_bytes(VALID + tail, "tail")


@FUZZ
@given(st.binary(min_size=2, max_size=4096))
def test_gzip_files_with_random_content(tmp_path_factory, payload):
    path = tmp_path_factory.mktemp("fuzz") / "f.gz"
    path.write_bytes(b"\x1f\x8b" + payload)
    try:
        read_idx(path)
    except DataError:
        pass


GZIPPED = gzip.compress(VALID)


@FUZZ
@given(st.integers(0, len(GZIPPED) - 1))
def test_truncated_gzip_idx_is_refused(tmp_path_factory, cut):
    whole = GZIPPED
    path = tmp_path_factory.mktemp("fuzz") / "t.gz"
    path.write_bytes(whole[:cut])
    with pytest.raises(DataError):
        read_idx(path)


def npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        x_train=np.zeros((2, 28, 28), np.uint8),
        y_train=np.zeros(2, np.uint8),
        x_test=np.zeros((1, 28, 28), np.uint8),
        y_test=np.zeros(1, np.uint8),
    )
    return buffer.getvalue()


NPZ = npz_bytes()


@FUZZ
@given(st.integers(0, len(NPZ) - 1), st.binary(max_size=64))
def test_truncated_or_damaged_npz_is_refused_or_read(tmp_path_factory, cut, junk):
    path = tmp_path_factory.mktemp("fuzz") / "d.npz"
    path.write_bytes(NPZ[:cut] + junk)
    try:
        data = load_dataset(path, "train")
    except DataError:
        return
    assert data.images.shape[1:] == (28, 28)


CSV_ROW = "3," + ",".join(str(i % 256) for i in range(784)) + "\n"
CSV_VALID = ("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n" + CSV_ROW * 2).encode()


@FUZZ
@given(st.binary(max_size=4096))
def test_csv_reader_on_random_bytes(tmp_path_factory, payload):
    path = tmp_path_factory.mktemp("fuzz") / "f.csv"
    path.write_bytes(payload)
    with pytest.raises(DataError):  # no random bytes form a 785-column header and valid rows
        read_csv_images(path)


@FUZZ
@given(st.integers(0, len(CSV_VALID) - 1), st.binary(max_size=8))
def test_truncated_or_damaged_csv(tmp_path_factory, cut, junk):
    path = tmp_path_factory.mktemp("fuzz") / "f.csv"
    path.write_bytes(CSV_VALID[:cut] + junk)
    try:
        images, labels = read_csv_images(path)
    except DataError:
        return
    assert images.shape[1:] == (28, 28) and len(labels) == len(images)
