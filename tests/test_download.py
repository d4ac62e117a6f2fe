"""Named data sets fetched for real from a local HTTP server: good, dead, corrupt, slow, cut mirrors."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from digitlab.cli import main
from digitlab.data import catalog, load_dataset, store
from digitlab.data.catalog import ROLES, DatasetSpec, RemoteFile
from digitlab.data.idx import idx_bytes
from digitlab.engine.checkpoint import load_checkpoint
from digitlab.errors import DataError
from mirror import SLOW_SECONDS, MirrorServer, dead_url

NAMES = dict(zip(ROLES, ["tr-img.gz", "tr-lab.gz", "te-img.gz", "te-lab.gz"], strict=True))


def md5(payload: bytes) -> str:
    return hashlib.md5(payload).hexdigest()


@pytest.fixture
def tiny(tmp_path, monkeypatch, mnist_test):
    """A four-file data set stored EMNIST-style (transposed, labels from 1), registered as "tiny"."""
    monkeypatch.setenv("DIGITLAB_DATA", str(tmp_path / "cache"))
    images, labels = mnist_test.images.numpy(), mnist_test.labels.numpy().astype(np.uint8)
    arrays = {
        "train-images": images[:300].transpose(0, 2, 1),
        "train-labels": labels[:300] + 1,
        "test-images": images[300:400].transpose(0, 2, 1),
        "test-labels": labels[300:400] + 1,
    }
    files = {
        NAMES[role]: gzip.compress(idx_bytes(np.ascontiguousarray(a)), mtime=0) for role, a in arrays.items()
    }

    def register(*mirrors, archive: RemoteFile | None = None):
        spec = DatasetSpec(
            name="tiny",
            title="tiny test set",
            classes=tuple("0123456789"),
            files={
                role: RemoteFile(
                    name if archive is None else f"inner/{name}", "" if archive else md5(files[name])
                )
                for role, name in NAMES.items()
            },
            mirrors=tuple(mirrors),
            archive=archive,
            transposed=True,
            label_offset=1,
        )
        monkeypatch.setitem(catalog.CATALOG, "tiny", spec)
        return spec

    return files, register


def cache_listing(tmp_path) -> list[str]:
    folder = tmp_path / "cache" / "tiny"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_mirror_then_loaded_the_right_way_round(tiny, tmp_path, mnist_test):
    files, register = tiny
    with MirrorServer(files) as server:
        register(f"{server.url}/good/")
        folder = store.fetch("tiny", progress=False)
    assert folder == tmp_path / "cache" / "tiny"
    assert cache_listing(tmp_path) == sorted(NAMES.values())
    train = load_dataset("tiny", "train")
    assert torch.equal(train.images, mnist_test.images[:300])  # transposed back
    assert torch.equal(train.labels, mnist_test.labels[:300])  # counted from 0 again
    assert store.verify("tiny") == [(name, True) for name in NAMES.values()]


def test_dead_and_missing_mirrors_are_skipped(tiny, tmp_path):
    files, register = tiny
    with MirrorServer(files) as server:
        register(dead_url(), f"{server.url}/nothing-here/", f"{server.url}/good/")
        store.fetch("tiny", progress=False)
        assert all(path.startswith("/good/") or path.startswith("/nothing-here/") for path in server.requests)
        # a 404 is not retried: one request per file on the missing mirror
        assert sum(p.startswith("/nothing-here/") for p in server.requests) == 4
    assert cache_listing(tmp_path) == sorted(NAMES.values())


def test_corrupt_file_is_refused_and_never_cached(tiny, tmp_path):
    files, register = tiny
    with MirrorServer(files) as server:
        register(f"{server.url}/corrupt/")
        with pytest.raises(DataError, match="checksum mismatch") as err:
            store.fetch("tiny", progress=False, retries=1)
    assert "digitlab data fetch tiny --from DIR" in str(err.value)
    assert cache_listing(tmp_path) == []  # neither a final file nor a .part left


def test_corrupt_mirror_then_good_one(tiny, tmp_path):
    files, register = tiny
    with MirrorServer(files) as server:
        register(f"{server.url}/corrupt/", f"{server.url}/good/")
        store.fetch("tiny", progress=False, retries=0)
    assert store.verify("tiny") == [(name, True) for name in NAMES.values()]


def test_slow_mirror_times_out_and_the_next_one_serves(tiny, tmp_path):
    files, register = tiny
    with MirrorServer(files) as server:
        register(f"{server.url}/slow/", f"{server.url}/good/")
        start = time.monotonic()
        store.fetch("tiny", progress=False, timeout=0.2, retries=0)
        assert time.monotonic() - start < 4 * SLOW_SECONDS
        register(f"{server.url}/slow/")
        (tmp_path / "cache" / "tiny" / NAMES["test-labels"]).unlink()
        with pytest.raises(DataError, match="timed out"):
            store.fetch("tiny", progress=False, timeout=0.2, retries=0)
    assert NAMES["test-labels"] not in cache_listing(tmp_path)


def test_interrupted_transfer_is_refused_then_continued(tiny, tmp_path):
    files, register = tiny
    first = NAMES["train-images"]
    with MirrorServer(files) as server:
        register(f"{server.url}/cut/")
        with pytest.raises(DataError, match="interrupted|ended after"):
            store.fetch("tiny", progress=False, retries=1)
        assert cache_listing(tmp_path) == [f"{first}.part"]  # kept to continue; nothing looks valid
        register(f"{server.url}/good/")
        store.fetch("tiny", progress=False)
        # the next command asked only for the missing bytes
        assert (
            server.ranges[server.requests.index(f"/good/{first}")] == f"bytes={len(files[first]) * 3 // 4}-"
        )
        (tmp_path / "cache" / "tiny" / NAMES["test-labels"]).unlink()
        register(f"{server.url}/flaky/")  # cut once, then whole: the retry continues it
        store.fetch("tiny", progress=False, retries=1)
    assert cache_listing(tmp_path) == sorted(NAMES.values())
    assert store.verify("tiny") == [(name, True) for name in NAMES.values()]


def test_import_from_a_folder_verifies_each_file(tiny, tmp_path):
    files, register = tiny
    register()
    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()
    for name, payload in files.items():
        (by_hand / name).write_bytes(payload)
    (by_hand / NAMES["train-images"]).write_bytes(files[NAMES["train-images"]][:-10])
    with pytest.raises(DataError, match=f"by-hand/{NAMES['train-images']}: checksum mismatch"):
        store.fetch("tiny", from_dir=by_hand)
    assert cache_listing(tmp_path) == []
    (by_hand / NAMES["train-images"]).write_bytes(files[NAMES["train-images"]])
    store.fetch("tiny", from_dir=by_hand)
    assert len(load_dataset("tiny", "test")) == 100


def test_offline_message_names_the_files_and_the_command(tiny, tmp_path):
    _, register = tiny
    register(dead_url())
    with pytest.raises(DataError) as err:
        load_dataset("tiny", "train")
    message = str(err.value)
    assert "cannot connect" in message and all(name in message for name in NAMES.values())
    assert "--from DIR" in message
    assert not (tmp_path / "cache" / "tiny").exists()  # no empty folder left behind


def test_archive_members_are_extracted_after_the_archive_is_verified(tiny, tmp_path, mnist_test):
    files, register = tiny
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, payload in files.items():
            bundle.writestr(f"inner/{name}", payload)
    archive = buffer.getvalue()
    with MirrorServer({"bundle.zip": archive}) as server:
        register(
            f"{server.url}/corrupt/", f"{server.url}/good/", archive=RemoteFile("bundle.zip", md5(archive))
        )
        store.fetch("tiny", progress=False, retries=0)
    assert cache_listing(tmp_path) == sorted(NAMES.values())
    assert (tmp_path / "cache" / "bundle.zip").is_file()
    assert torch.equal(load_dataset("tiny", "test").labels, mnist_test.labels[300:400])


def needs_debian_fashion_mnist() -> None:
    """CI installs Debian's dataset-fashion-mnist (.ci/run); elsewhere it may be missing."""
    if not os.path.isdir(catalog.CATALOG["fashion-mnist"].system_dirs[0]) and not os.environ.get("CI"):
        pytest.skip("Debian package dataset-fashion-mnist not installed")


def test_fashion_mnist_from_the_debian_package(tmp_path, monkeypatch):
    needs_debian_fashion_mnist()
    monkeypatch.setenv("DIGITLAB_DATA", str(tmp_path / "empty-cache"))
    test = load_dataset("fashion-mnist", "test")  # re-compressed by Debian: matched by content digest
    assert test.classes[0] == "T-shirt/top" and len(test) == 10_000
    assert test.labels.bincount().tolist() == [1000] * 10
    assert not (tmp_path / "empty-cache").exists()  # used in place, not copied


@pytest.mark.slow
def test_fast_preset_trains_on_fashion_mnist_end_to_end(tmp_path, capsys):
    needs_debian_fashion_mnist()
    args = ["train", "--preset", "fast", "--data", "fashion-mnist", "--out", str(tmp_path), "--name", "f"]
    assert main([*args, "--quiet"]) == 0
    result = json.loads((tmp_path / "f" / "result.json").read_text())
    assert result["test"]["accuracy"] > 0.86  # one epoch; the README lists the measured figure
    checkpoint = load_checkpoint(tmp_path / "f")
    assert checkpoint.classes[-1] == "Ankle boot"
    test = load_dataset("fashion-mnist", "test")
    sandal = test.images[test.labels == 5][0]
    capsys.readouterr()
    image = tmp_path / "sandal.png"
    Image.fromarray(255 - sandal.numpy()).save(image)
    assert main(["predict", str(tmp_path / "f"), str(image)]) == 0
    assert "Sandal" in capsys.readouterr().out
    assert main(["test", str(tmp_path / "f"), "--json"]) == 0  # on Fashion-MNIST, its own data set
    measured = json.loads(capsys.readouterr().out)
    assert {**measured, "loss": pytest.approx(measured["loss"], rel=1e-5)} == result["test"]
    assert main(["test", str(tmp_path / "f"), "--data", "mnist"]) == 2
    assert "trained on classes T-shirt/top" in capsys.readouterr().err


KILL_SCRIPT = """
import json, sys
from digitlab.data import catalog, store
from digitlab.data.catalog import DatasetSpec, RemoteFile
files, mirror = json.loads(sys.argv[1]), sys.argv[2]
catalog.CATALOG["tiny"] = DatasetSpec("tiny", "tiny", tuple("0123456789"),
    {role: RemoteFile(name, digest) for role, (name, digest) in files.items()}, (mirror,))
store.fetch("tiny", progress=False)
"""


@pytest.mark.slow  # a separate process
def test_kill_9_during_a_download_leaves_nothing_that_looks_valid(tiny, tmp_path):
    files, register = tiny
    digests = {role: (name, md5(files[name])) for role, name in NAMES.items()}
    with MirrorServer(files) as server:
        process = subprocess.Popen(
            [sys.executable, "-c", KILL_SCRIPT, json.dumps(digests), f"{server.url}/trickle/"],
            env={**os.environ, "DIGITLAB_DATA": str(tmp_path / "cache")},
        )
        part = tmp_path / "cache" / "tiny" / f"{NAMES['train-images']}.part"
        deadline = time.monotonic() + 60
        while not (part.exists() and part.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.poll() is None, "the download ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert part.exists(), "the download never started"
        part_size = part.stat().st_size
        assert cache_listing(tmp_path) == [part.name]  # only the .part: nothing looks valid
        register(f"{server.url}/good/")
        assert store.locate(catalog.CATALOG["tiny"]) is None
        store.fetch("tiny", progress=False)
        assert server.ranges[-4] == f"bytes={part_size}-"  # continued where the kill stopped it
    assert cache_listing(tmp_path) == sorted(NAMES.values())
    assert len(load_dataset("tiny", "train")) == 300


def test_data_commands_fetch_list_info_verify(tiny, tmp_path, capsys):
    files, register = tiny
    register(dead_url())
    with MirrorServer(files) as server:
        assert main(["data", "fetch", "tiny", "--mirror", f"{server.url}/good/"]) == 0
    assert main(["data", "list"]) == 0
    listing = capsys.readouterr().out
    assert any(line.startswith("tiny") and "cached" in line for line in listing.splitlines())
    assert main(["data", "info", "tiny"]) == 0
    info = capsys.readouterr().out
    assert "train: 300 images" in info and "test: 100 images" in info and "largest" in info
    assert main(["data", "verify", "tiny"]) == 0
    (tmp_path / "cache" / "tiny" / NAMES["test-labels"]).write_bytes(b"damaged")
    assert main(["data", "verify", "tiny"]) == 2
    assert f"BAD {NAMES['test-labels']}" in capsys.readouterr().out


def test_qmnist_style_two_column_int_labels(tmp_path, monkeypatch, mnist_test):
    """QMNIST's labels are an idx2 int32 table, one row per image, the class first."""
    monkeypatch.setenv("DIGITLAB_DATA", str(tmp_path / "cache"))
    table = np.zeros((100, 8), np.int32)
    table[:, 0] = mnist_test.labels[:100].numpy()
    table[:, 1:] = 12345  # writer id, NIST index, ...: ignored
    payloads = {
        "train-images": gzip.compress(idx_bytes(mnist_test.images[:100].numpy())),
        "train-labels": gzip.compress(idx_bytes(table)),
    }
    payloads["test-images"], payloads["test-labels"] = payloads["train-images"], payloads["train-labels"]
    files = {f"q-{role}.gz": payload for role, payload in payloads.items()}
    with MirrorServer(files) as server:
        spec = DatasetSpec(
            name="tinyq",
            title="tiny QMNIST-style set",
            classes=tuple("0123456789"),
            files={role: RemoteFile(f"q-{role}.gz", md5(payloads[role])) for role in ROLES},
            mirrors=(f"{server.url}/good/",),
        )
        monkeypatch.setitem(catalog.CATALOG, "tinyq", spec)
        data = load_dataset("tinyq", "test")
    assert torch.equal(data.labels, mnist_test.labels[:100])
