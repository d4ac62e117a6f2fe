"""Strict reader and writer for the idx format of the MNIST files (raw or gzip'd).

Layout: two zero bytes, a dtype code, the number of dimensions, one big-endian uint32
per dimension, then the values in C order, big-endian.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from digitlab.errors import DataError
from digitlab.fileio import MAX_DATA_BYTES, atomic_write_bytes, read_limited

# idx dtype code -> big-endian numpy dtype
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx_bytes(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse an idx payload (already decompressed); `source` names it in errors."""
    if len(raw) < 4:
        raise DataError(f"{source}: too short for an idx header ({len(raw)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in IDX_DTYPES:
        raise DataError(f"{source}: not an idx file (magic number {raw[:4].hex()})")
    if ndim == 0:
        raise DataError(f"{source}: idx header declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"{source}: truncated idx header")
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow on absurd headers
    actual = len(raw) - header_size
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{source}: {what}: header says shape {shape} ({expected} data bytes), file holds {actual}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file, gzip'd or raw (decided by content, not by name)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    raw = read_limited(path, MAX_DATA_BYTES)
    if raw[:2] == GZIP_MAGIC:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as unpacked:
                raw = unpacked.read(MAX_DATA_BYTES + 1)  # a gzip bomb stops at the limit
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{path}: corrupt or truncated gzip data ({err})") from None
        if len(raw) > MAX_DATA_BYTES:
            raise DataError(f"{path}: decompresses to more than {MAX_DATA_BYTES:,} bytes")
    return read_idx_bytes(raw, str(path))


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise an array to the idx format."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise DataError(f"idx cannot store dtype {array.dtype}")
    header = struct.pack(">HBB", 0, codes[native], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(IDX_DTYPES[codes[native]], copy=False).tobytes()


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write `array` as an idx file; gzip'd when `compress` or the name ends in .gz."""
    path = Path(path)
    payload = idx_bytes(array)
    if compress or (compress is None and path.suffix == ".gz"):
        payload = gzip.compress(payload, mtime=0)
    atomic_write_bytes(path, payload)
