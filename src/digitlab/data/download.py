"""Downloading one published file: mirrors in order, timeouts, retries, checksum, atomic rename.

A file reaches its final name only after its checksum matched, so a broken or interrupted
download never sits in the cache looking valid; a `.part` file left by an interrupted
transfer or a killed process is continued (HTTP Range) by the next attempt.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from tqdm import tqdm

from digitlab.data.catalog import RemoteFile
from digitlab.errors import DataError

CHUNK = 1 << 16


class DownloadFailed(Exception):
    """One attempt at one URL failed; `retry` says whether trying the same URL again may help."""

    def __init__(self, reason: str, retry: bool):
        super().__init__(reason)
        self.retry = retry


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def content_sha256(path: Path) -> str:
    """SHA-256 of the file's content, decompressed first when it is gzip'd; "" if unreadable."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        with (gzip.open if gzipped else open)(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error):
        return ""
    return digest.hexdigest()


def digest_mismatch(path: Path, remote: RemoteFile) -> str:
    """ "" when `path` is the published file (its md5, or its decompressed SHA-256 matches);
    otherwise what was found against what was expected. Each digest is computed once."""
    found = []
    if remote.md5:
        md5 = file_md5(path)
        if md5 == remote.md5:
            return ""
        found.append(f"md5 {md5}, expected {remote.md5}")
    if remote.sha256:
        sha256 = content_sha256(path)
        if sha256 == remote.sha256:
            return ""
        found.append(f"sha256 {sha256}, expected {remote.sha256}")
    return "; ".join(found) or "no published digest to check against"


def _download(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Stream `url` into `part`, continuing a partial `part` where the server allows it
    (HTTP Range); raise DownloadFailed with a short reason."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "digitlab"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status != 206:  # the whole file: start again
                have = 0
            length = int(response.headers.get("Content-Length") or 0)
            total = have + length if length else 0
            with (
                open(part, "ab" if have else "wb") as out,
                tqdm(
                    initial=have,
                    total=total or None,
                    unit="B",
                    unit_scale=True,
                    desc=Path(url).name,
                    leave=False,
                    disable=not progress,
                ) as bar,
            ):
                while chunk := response.read1(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            if total and part.stat().st_size != total:
                raise DownloadFailed(f"transfer ended after {part.stat().st_size} of {total} bytes", True)
    except urllib.error.HTTPError as err:
        if err.code == 416:  # the partial file does not fit this server's copy: start again
            part.unlink(missing_ok=True)
            raise DownloadFailed("HTTP 416 for the partial download; starting again", True) from None
        raise DownloadFailed(f"HTTP {err.code} {err.reason}", err.code >= 500) from None
    except TimeoutError:
        raise DownloadFailed(f"no data for {timeout:g} s (timed out)", True) from None
    except http.client.IncompleteRead as err:
        raise DownloadFailed(f"transfer interrupted after {len(err.partial)} bytes", True) from None
    except urllib.error.URLError as err:
        # a refused connection or an unknown host will not heal in a second: next mirror
        retry = isinstance(err.reason, (TimeoutError, socket.timeout))
        raise DownloadFailed(f"cannot connect ({err.reason})", retry) from None
    except (ConnectionError, http.client.HTTPException) as err:
        raise DownloadFailed(f"connection failed ({err})", True) from None


def fetch_file(
    remote: RemoteFile,
    mirrors: list[str],
    folder: Path,
    timeout: float = 30.0,
    retries: int = 2,
    progress: bool | None = None,
) -> Path:
    """Download `remote` into `folder` from the first mirror that serves it intact.

    Each mirror is tried up to 1 + `retries` times for transient failures (timeouts,
    interruptions, 5xx, a checksum mismatch); a 4xx answer moves on to the next mirror.
    An interrupted transfer continues where it stopped, with the next attempt, mirror or
    command (the `.part` file is kept); a file that fails its checksum is deleted.
    Raises DataError listing every mirror's failure.
    """
    if progress is None:
        progress = sys.stderr.isatty()
    final = folder / remote.local_name
    part = final.with_name(final.name + ".part")
    folder.mkdir(parents=True, exist_ok=True)
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + remote.local_name
        for attempt in range(1 + retries):
            try:
                _download(url, part, timeout, progress)
                if mismatch := digest_mismatch(part, remote):
                    part.unlink()
                    raise DownloadFailed(f"checksum mismatch ({mismatch})", True)
                os.replace(part, final)
                return final
            except DownloadFailed as failure:
                reason = str(failure)
                if not failure.retry or attempt == retries:
                    break
                time.sleep(0.5 * (attempt + 1))
        failures.append(f"{url}: {reason}")
    raise DataError(f"could not download {remote.name}:\n  " + "\n  ".join(failures))
