"""Where named data sets live on disk: the cache, an operating-system copy, or a user's folder.

The cache ($DIGITLAB_DATA, else the platform's cache folder) holds one folder per data set.
Only verified files get their final names there, so what is in the cache can be trusted.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import zipfile
from pathlib import Path

from digitlab.data.catalog import CATALOG, DatasetSpec
from digitlab.data.download import digest_mismatch, fetch_file
from digitlab.errors import DataError
from digitlab.fileio import atomic_write


def data_home() -> Path:
    """$DIGITLAB_DATA, else the platform's per-user cache folder + /digitlab."""
    if os.environ.get("DIGITLAB_DATA"):
        return Path(os.environ["DIGITLAB_DATA"]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "digitlab"


def spec_for(name: str) -> DatasetSpec:
    if name not in CATALOG:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(CATALOG)}")
    return CATALOG[name]


def cache_folder(spec: DatasetSpec) -> Path:
    return data_home() / spec.name


def file_names(spec: DatasetSpec) -> list[str]:
    """The four files' names as they sit in a data set's folder."""
    return [remote.local_name for remote in spec.files.values()]


def locate(spec: DatasetSpec) -> Path | None:
    """The folder holding this data set's four files, if there is one: cache, then system copy."""
    cached = cache_folder(spec)
    if all((cached / name).is_file() for name in file_names(spec)):
        return cached
    for folder in map(Path, spec.system_dirs):
        paths = [folder / name for name in file_names(spec)]
        if all(path.is_file() for path in paths):
            stamps = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
            bad = _unverified_system_files(spec.name, str(folder), stamps)
            if bad:
                raise DataError(f"{folder}: {', '.join(bad)} do not match the published checksums")
            return folder
    return None


@functools.lru_cache(maxsize=8)
def _unverified_system_files(name: str, folder: str, stamps: tuple) -> list[str]:
    """The files of a system copy that fail their digests; checked once per process (the train
    and test splits both look the copy up) and again only when a file changes (`stamps`)."""
    spec = CATALOG[name]
    return [r.local_name for r in spec.files.values() if digest_mismatch(Path(folder) / r.local_name, r)]


def offline_help(spec: DatasetSpec) -> str:
    wanted = spec.archive.name if spec.archive else ", ".join(file_names(spec))
    where = spec.mirrors[0] if spec.mirrors else spec.homepage
    return (
        f"To install it by hand, download {wanted} (from {where}) into a folder DIR, then run: "
        f"digitlab data fetch {spec.name} --from DIR"
    )


def fetch(
    name: str,
    mirrors: list[str] | None = None,
    from_dir: str | Path | None = None,
    timeout: float = 30.0,
    retries: int = 2,
    progress: bool | None = None,
) -> Path:
    """Make the data set `name` available and return its folder.

    Already cached or installed by the system: nothing to do. `from_dir`: import files
    downloaded by hand (verified). Otherwise download from `mirrors` (extra ones first)
    then the data set's own mirrors.
    """
    spec = spec_for(name)
    if not spec.files:
        raise DataError(f"{name} ships with digitlab; there is nothing to fetch")
    if from_dir is None and (found := locate(spec)):
        return found
    folder = cache_folder(spec)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if from_dir is not None:
            _import_from(spec, Path(from_dir), folder)
        else:
            archive = f" (a {spec.archive.size / 1e6:.0f} MB archive)" if spec.archive else ""
            print(f"digitlab: downloading {name}{archive} into {folder} (once; verified)", file=sys.stderr)
            _download(spec, [*(mirrors or []), *spec.mirrors], folder, timeout, retries, progress)
    except DataError as err:
        if created and not any(folder.iterdir()):  # nothing came, not even a part to resume
            folder.rmdir()
        raise DataError(f"{name}: {err}\n{offline_help(spec)}") from None
    except OSError as err:
        raise DataError(f"{name}: cannot write the cache folder {folder} ({err.strerror or err})") from None
    return folder


def _download(spec, mirrors, folder: Path, timeout, retries, progress) -> None:
    if spec.archive:
        archive = folder.parent / spec.archive.name
        if not archive.is_file() or digest_mismatch(archive, spec.archive):
            archive = fetch_file(spec.archive, mirrors, folder.parent, timeout, retries, progress)
        _extract(spec, archive, folder)
        return
    for remote in spec.files.values():
        if not (folder / remote.local_name).is_file():
            fetch_file(remote, mirrors, folder, timeout, retries, progress)


def _import_from(spec: DatasetSpec, source: Path, folder: Path) -> None:
    """Copy hand-downloaded files from `source` into the cache, after checking each one."""
    if not source.is_dir():
        raise DataError(f"{source}: not a folder")
    if spec.archive:
        archive = source / spec.archive.name
        if not archive.is_file():
            raise DataError(f"{source}: {spec.archive.name} not found")
        if mismatch := digest_mismatch(archive, spec.archive):
            raise DataError(f"{archive}: checksum mismatch ({mismatch})")
        _extract(spec, archive, folder)
        return
    for remote in spec.files.values():
        path = source / remote.local_name
        if not path.is_file():
            raise DataError(f"{source}: {path.name} not found")
        if mismatch := digest_mismatch(path, remote):
            raise DataError(f"{path}: checksum mismatch ({mismatch})")
    for name in file_names(spec):
        atomic_write(folder / name, lambda tmp, name=name: shutil.copyfile(source / name, tmp))


def _extract(spec: DatasetSpec, archive: Path, folder: Path) -> None:
    """Copy this data set's members out of a verified archive, each atomically."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            for remote in spec.files.values():

                def copy(tmp: Path, member: str = remote.name) -> None:
                    with bundle.open(member) as src, open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)

                atomic_write(folder / remote.local_name, copy)
    except (zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"{archive}: not the expected archive ({err})") from None


def verify(name: str) -> list[tuple[str, bool]]:
    """Re-check each file of a fetched data set against its published digest."""
    spec = spec_for(name)
    folder = locate(spec)
    if folder is None:
        raise DataError(f"{name} is not downloaded yet; run: digitlab data fetch {name}")
    if spec.archive:  # members of a verified archive have no published digests of their own
        archive = folder.parent / spec.archive.name
        return [(spec.archive.name, archive.is_file() and not digest_mismatch(archive, spec.archive))]
    return [(r.local_name, not digest_mismatch(folder / r.local_name, r)) for r in spec.files.values()]
