"""Safe file access: reads of regular files only, with a size limit (no /dev/zero, no FIFO that
never ends), and atomic writes (a crash or Ctrl-C never leaves a half-written file behind)."""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from digitlab.errors import ConfigError, DataError

MAX_DATA_BYTES = 4 * 1024**3  # a data file this large is a mistake (EMNIST's largest split is 0.6 GB)


def check_regular_file(path: str | Path, max_bytes: int) -> int:
    """The size of `path`, a regular file of at most `max_bytes`; else DataError naming it.

    Devices, FIFOs and sockets are refused before they are opened: reading /dev/zero never
    ends and opening a FIFO blocks until someone writes to it.
    """
    try:
        info = os.stat(path)
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{path}: is a folder, expected a file")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{path}: not a regular file (a device, FIFO or socket); give a file")
    if info.st_size > max_bytes:
        raise DataError(f"{path}: file of {info.st_size:,} bytes is larger than the {max_bytes:,} allowed")
    return info.st_size


def read_limited(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (see check_regular_file)."""
    check_regular_file(path, max_bytes)
    try:
        with open(path, "rb") as handle:
            payload = handle.read(max_bytes + 1)  # a file that grew since stat is still bounded
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    if len(payload) > max_bytes:
        raise DataError(f"{path}: file is larger than the {max_bytes:,} bytes allowed")
    return payload


def load_weights_only(path: str | Path, max_bytes: int = MAX_DATA_BYTES) -> object:
    """torch.load of a regular file with weights_only=True: tensors and plain containers, no
    code. A refused or broken file is one line naming it (never torch's advice to load it
    with weights_only=False)."""
    import torch

    check_regular_file(path, max_bytes)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for foreign or broken files
        raise DataError(f"{path}: cannot load: {_weights_only_reason(str(err))}") from None


def _weights_only_reason(message: str) -> str:
    """torch's weights-only failure in a few words, without its advice to unpickle the file."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
    if found:
        return (
            f"it holds a Python object ({found.group(1)}) that only unpickling can rebuild; "
            "digitlab loads tensors only"
        )
    details = [
        line.strip()
        for line in message.splitlines()
        if line.strip() and not re.search(r"weights.only|documentation|trust", line, re.IGNORECASE)
    ]
    return f"broken or not a torch file ({details[0][:200] if details else 'unreadable'})"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it into place.

    An OSError about the temporary (disk full, read-only folder) is raised naming `path`,
    the file the user knows.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and _is_temporary(err.filename, path):
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def _is_temporary(filename, path: Path) -> bool:
    """Whether an error's file name is unset or one of atomic_write's temporaries for `path`."""
    return filename is None or Path(os.fsdecode(filename)).name.startswith(f".{path.name}.")


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete temporary files that a killed process left behind (see atomic_write)."""
    for stale in Path(folder).glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(payload))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def refuse_existing(paths: Iterable[str | Path], overwrite: bool, flag: str = "--out") -> None:
    """One clear error (exit 2) before anything is written if a file would be replaced."""
    if overwrite:
        return
    existing = [str(path) for path in paths if Path(path).exists()]
    if existing:
        raise ConfigError(f"{', '.join(existing)}: already exists; pass --overwrite or choose another {flag}")
