"""What `digitlab data list` and `digitlab data info` show: the catalogue and one source's content."""

from __future__ import annotations

from digitlab.data import store
from digitlab.data.catalog import CATALOG, DatasetSpec
from digitlab.data.sources import load_dataset, shipped_mnist_dir


def where(spec: DatasetSpec) -> str:
    """Where the data set is on this machine, or "not downloaded"."""
    if not spec.files:
        return f"shipped ({shipped_mnist_dir()})"
    folder = store.locate(spec)
    if folder is None:
        return "not downloaded"
    return f"{'cached' if folder == store.cache_folder(spec) else 'system copy'} ({folder})"


def catalogue() -> list[dict]:
    return [
        {
            "name": spec.name,
            "classes": len(spec.classes),
            "train": spec.sizes.get("train"),
            "test": spec.sizes.get("test"),
            "where": where(spec),
            "title": spec.title,
        }
        for spec in CATALOG.values()
    ]


def describe(source: str) -> dict:
    """Sizes, class names and per-class counts of both splits of a data set or user source.

    A named data set that is not on this machine is described from the catalogue: `info`
    never downloads.
    """
    spec = CATALOG.get(source)
    if spec is not None and spec.files and store.locate(spec) is None:
        return {
            "source": source,
            "classes": list(spec.classes),
            "splits": {split: {"images": count} for split, count in spec.sizes.items()},
            "title": spec.title,
            "where": f"not downloaded (digitlab data fetch {source})",
            "homepage": spec.homepage,
            "license": spec.license,
        }
    splits = {split: load_dataset(source, split) for split in ("train", "test")}
    classes = splits["train"].classes
    info = {"source": source, "classes": classes, "splits": {}}
    for split, data in splits.items():
        info["splits"][split] = {"images": len(data), "per_class": data.class_counts()}
    if source in CATALOG:
        spec = CATALOG[source]
        info.update(title=spec.title, where=where(spec), homepage=spec.homepage, license=spec.license)
    return info


def balance_line(counts: dict[str, int]) -> str:
    """ "smallest '5' 4,832, largest '1' 6,067 (ratio 1.26)": class balance in one line."""
    smallest = min(counts, key=counts.get)
    largest = max(counts, key=counts.get)
    if counts[smallest] == counts[largest]:
        return f"balanced, {counts[largest]:,} per class"
    ratio = counts[largest] / max(counts[smallest], 1)
    return (
        f"smallest {smallest!r} {counts[smallest]:,}, largest {largest!r} {counts[largest]:,} "
        f"(ratio {ratio:.2f})"
    )
