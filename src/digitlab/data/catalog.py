"""The named data sets digitlab can fetch: their files, checksums, mirrors and class names."""

from __future__ import annotations

from dataclasses import dataclass, field

from digitlab.data.digitdata import DIGIT_CLASSES

# The four files of an MNIST-style data set, in this order everywhere.
ROLES = ("train-images", "train-labels", "test-images", "test-labels")


@dataclass(frozen=True)
class RemoteFile:
    """One published file and the digests that identify it.

    `md5` is of the file as published (the digest torchvision and others list); `sha256`,
    where known, is of the decompressed content, so a re-compressed copy (Debian's) matches.
    """

    name: str  # as published: a URL's last part, or a path inside an archive
    md5: str = ""
    sha256: str = ""
    size: int = 0  # bytes as published, for messages and progress; 0 = unknown

    @property
    def local_name(self) -> str:
        """The file's name on a mirror's URL and in a data set's folder."""
        return self.name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    classes: tuple[str, ...]
    files: dict[str, RemoteFile]  # role -> file, roles as in ROLES
    mirrors: tuple[str, ...] = ()  # base URLs, tried in order
    archive: RemoteFile | None = None  # the files are members of this archive (EMNIST's zip)
    system_dirs: tuple[str, ...] = ()  # where an operating-system package installs a copy
    transposed: bool = False  # images stored column-major (EMNIST): transpose on load
    label_offset: int = 0  # subtracted from the stored labels (EMNIST letters count from 1)
    homepage: str = ""
    license: str = ""
    sizes: dict[str, int] = field(default_factory=dict)  # images per split, for `data list`


def _idx_files(prefix: str = "", test_word: str = "t10k", label_kind: str = "idx1-ubyte", **digests) -> dict:
    """The four files train-images-idx3-ubyte.gz etc. (named with `prefix`), with their
    (md5, sha256) digests by role (train_images=...); files without published digests get none."""
    stems = {
        "train-images": "train-images-idx3-ubyte",
        "train-labels": f"train-labels-{label_kind}",
        "test-images": f"{test_word}-images-idx3-ubyte",
        "test-labels": f"{test_word}-labels-{label_kind}",
    }
    files = {}
    for role in ROLES:
        md5, sha256 = digests.get(role.replace("-", "_"), ("", ""))
        files[role] = RemoteFile(f"{prefix}{stems[role]}.gz", md5, sha256)
    return files


def _emnist(split: str, title: str, classes: tuple[str, ...], sizes: dict, label_offset: int = 0):
    """One EMNIST split: four members of NIST's gzip.zip, trusted through the archive's md5."""
    return DatasetSpec(
        name=f"emnist-{split}",
        title=title,
        classes=classes,
        files=_idx_files(prefix=f"gzip/emnist-{split}-", test_word="test"),
        mirrors=("https://biometrics.nist.gov/cs_links/EMNIST/",),
        archive=RemoteFile("gzip.zip", md5="58c8d27c78d21e728a6bc7b3cc06412e", size=561_753_746),
        transposed=True,
        label_offset=label_offset,
        homepage="https://www.nist.gov/itl/products-and-services/emnist-dataset",
        license="public domain (NIST)",
        sizes=sizes,
    )


LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
BALANCED = tuple("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") + tuple("abdefghnqrt")

CATALOG: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="mnist",
            title="MNIST handwritten digits (ships with digitlab)",
            classes=tuple(DIGIT_CLASSES),
            files={},
            homepage="http://yann.lecun.com/exdb/mnist/",
            license="CC BY-SA 3.0",
            sizes={"train": 60_000, "test": 10_000},
        ),
        DatasetSpec(
            name="fashion-mnist",
            title="Zalando's Fashion-MNIST: clothing in MNIST's format",
            classes=(
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
            files=_idx_files(
                train_images=(
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                ),
                train_labels=(
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                ),
                test_images=(
                    "bef4ecab320f06d8554ea6380940ec79",
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                ),
                test_labels=(
                    "bb300cfdad3c16e7a12a480ee83cd310",
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                ),
            ),
            mirrors=(
                "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            ),
            system_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian: dataset-fashion-mnist
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            license="MIT",
            sizes={"train": 60_000, "test": 10_000},
        ),
        DatasetSpec(
            name="kmnist",
            title="Kuzushiji-MNIST: ten cursive Japanese (hiragana) characters",
            classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
            files=_idx_files(
                train_images=("bdb82020997e1d708af4cf47b453dcf7", ""),
                train_labels=("e144d726b3acfaa3e44228e80efcd344", ""),
                test_images=("5c965bf0a639b31b8f53240b1b52f4d7", ""),
                test_labels=("7320c461ea6c1c855c0b718fb2a4b134", ""),
            ),
            mirrors=(
                "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
                "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
            ),
            homepage="https://github.com/rois-codh/kmnist",
            license="CC BY-SA 4.0",
            sizes={"train": 60_000, "test": 10_000},
        ),
        DatasetSpec(
            name="qmnist",
            title="QMNIST: MNIST reconstructed, with 60,000 test digits",
            classes=tuple(DIGIT_CLASSES),
            files=_idx_files(
                prefix="qmnist-",
                test_word="test",
                label_kind="idx2-int",
                train_images=("ed72d4157d28c017586c42bc6afe6370", ""),
                train_labels=("0058f8dd561b90ffdd0f734c6a30e5e4", ""),
                test_images=("1394631089c404de565df7b7aeaf9412", ""),
                test_labels=("5b5b05890a5e13444e108efe57b788aa", ""),
            ),
            mirrors=(
                "https://raw.githubusercontent.com/facebookresearch/qmnist/master/",
                "https://github.com/facebookresearch/qmnist/raw/master/",
            ),
            homepage="https://github.com/facebookresearch/qmnist",
            license="BSD-style (see the QMNIST repository)",
            sizes={"train": 60_000, "test": 60_000},
        ),
        _emnist("digits", "EMNIST digits", tuple(DIGIT_CLASSES), {"train": 240_000, "test": 40_000}),
        _emnist(
            "mnist", "EMNIST's MNIST-sized digits", tuple(DIGIT_CLASSES), {"train": 60_000, "test": 10_000}
        ),
        _emnist(
            "balanced", "EMNIST balanced: digits and letters", BALANCED, {"train": 112_800, "test": 18_800}
        ),
        _emnist(
            "letters",
            "EMNIST letters (upper and lower case merged)",
            LETTERS,
            {"train": 124_800, "test": 20_800},
            1,
        ),
    )
}
