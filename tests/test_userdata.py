"""Users' own data: Kaggle CSV files, image folders, class names that travel, predict --csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import quick_config
from digitlab import train
from digitlab.analysis.audit import audit_labels
from digitlab.cli import main
from digitlab.data import load_dataset
from digitlab.engine.checkpoint import load_checkpoint
from digitlab.errors import DataError

HEADER = "label," + ",".join(f"pixel{i}" for i in range(784))


def write_csv(path: Path, images, labels=None) -> Path:
    flat = images.reshape(len(images), -1).numpy()
    rows = flat if labels is None else np.column_stack([labels.numpy(), flat])
    header = HEADER if labels is not None else HEADER.removeprefix("label,")
    path.write_text(header + "\n" + "\n".join(",".join(map(str, row)) for row in rows) + "\n")
    return path


def test_csv_train_and_held_out_test_split(tmp_path, mnist_test):
    path = write_csv(tmp_path / "train.csv", mnist_test.images[:700], mnist_test.labels[:700])
    train_split, test_split = load_dataset(path, "train"), load_dataset(path, "test")
    assert (len(train_split), len(test_split)) == (600, 100)  # a fixed seventh held out
    assert torch.equal(load_dataset(path, "test").images, test_split.images)  # the same every time
    together = torch.cat([train_split.images, test_split.images]).reshape(700, -1)
    original = mnist_test.images[:700].reshape(700, -1)
    assert sorted(map(tuple, together.tolist())) == sorted(map(tuple, original.tolist()))


def test_a_suggested_command_quotes_a_path_with_a_space(tmp_path):
    path = tmp_path / "my data" / "test.csv"
    path.parent.mkdir()
    path.write_text(HEADER.removeprefix("label,") + "\n" + ",".join(["0"] * 784) + "\n")
    with pytest.raises(DataError, match="no label column") as err:
        load_dataset(path, "train")
    assert str(err.value).endswith(f"digitlab predict CHECKPOINT --csv '{path}'")


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty file"),
        ("label,a,b\n1,2,3\n", "header has 3 columns"),
        (
            HEADER + "\n" + "1," + ",".join(["0"] * 784) + "\n" + "2," + ",".join(["0"] * 783) + "\n",
            "line 3: 784 values",
        ),
        (HEADER + "\n" + "1," + ",".join(["x"] + ["0"] * 783) + "\n", "line 2: value 'x' in column 2"),
        (HEADER + "\n" + "1," + ",".join(["0"] * 783 + ["300"]) + "\n", "line 2: pixel values must be 0-255"),
        (
            HEADER + "\n" + "1," + ",".join(["0"] * 784) + "\n" + "10," + ",".join(["0"] * 784) + "\n",
            "line 3: label 10",
        ),
        (HEADER + "\n", "no rows"),
        (HEADER.removeprefix("label,") + "\n" + ",".join(["0"] * 784) + "\n", "no label column"),
        ("1," + ",".join(["0"] * 784) + "\n", "the first line holds numbers, not a header"),
    ],
    ids=[
        "empty",
        "header",
        "short-row",
        "not-a-number",
        "pixel-range",
        "label-range",
        "no-rows",
        "unlabelled",
        "no-header",
    ],
)
def test_bad_csv_files_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_dataset(path, "train")
    assert str(path) in str(err.value)


def save_pngs(folder: Path, images, names: list[str]) -> None:
    for i, (image, name) in enumerate(zip(images, names, strict=True)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        # users' photos: dark ink on white, three times MNIST's size
        Image.fromarray(255 - image.numpy()).resize((84, 84)).save(folder / name / f"{i}.png")


@pytest.fixture(scope="module")
def three_class_folder(tmp_path_factory, mnist_test) -> Path:
    """train/ and test/ image folders of three classes named zero, one and seven."""
    root = tmp_path_factory.mktemp("images")
    names = {0: "zero", 1: "one", 7: "seven"}
    keep = torch.isin(mnist_test.labels, torch.tensor(list(names)))
    images, labels = mnist_test.images[keep][:480], mnist_test.labels[keep][:480]
    save_pngs(root / "train", images[:400], [names[int(d)] for d in labels[:400]])
    save_pngs(root / "test", images[400:], [names[int(d)] for d in labels[400:]])
    return root


@pytest.mark.slow
def test_image_folder_trains_a_model_sized_by_its_classes(tmp_path, three_class_folder):
    data = load_dataset(three_class_folder, "train")
    assert data.classes == ["one", "seven", "zero"] and len(data) == 400
    result = train(
        quick_config(tmp_path, data=str(three_class_folder), train_limit=0, epochs=3, run_name="abc"),
        quiet=True,
    )
    assert result.test.accuracy > 0.9
    checkpoint = load_checkpoint(result.run_dir)
    assert checkpoint.classes == ["one", "seven", "zero"]
    assert checkpoint.model.network.classifier[-1].out_features == 3
    image = next((three_class_folder / "test" / "seven").iterdir())
    assert main(["predict", str(result.run_dir), str(image)]) == 0
    audit = audit_labels([checkpoint], data=str(three_class_folder), top=5)
    test = load_dataset(three_class_folder, "test")
    assert [row["file"] for row in audit.rows] == [test.files[row["index"]] for row in audit.rows]
    assert all(Path(row["file"]).parent.name == row["given"] for row in audit.rows)  # its class folder


def test_images_read_from_files_keep_their_file_through_splits(three_class_folder):
    data = load_dataset(three_class_folder, "train")
    assert len(data.files) == len(data) and all(
        Path(f).parent.name == data.classes[y] for f, y in zip(data.files, data.labels.tolist(), strict=True)
    )
    train_part, val_part = data.split(0.25, seed=3)
    for part in (train_part, val_part, data.subset(slice(10, 20)), data.to("cpu")):
        assert len(part.files) == len(part)
        assert {f: y for f, y in zip(part.files, part.labels.tolist(), strict=True)}.items() <= dict(
            zip(data.files, data.labels.tolist(), strict=True)
        ).items()
    assert load_dataset("mnist", "test").files is None  # idx files: no file per image


def test_image_folder_without_splits_holds_out_a_seventh(tmp_path, three_class_folder):
    flat = three_class_folder / "train"
    assert (len(load_dataset(flat, "train")), len(load_dataset(flat, "test"))) == (343, 57)


def test_an_empty_class_folder_is_named_not_dropped(tmp_path, mnist_test):
    save_pngs(tmp_path / "set", mnist_test.images[:4], ["a", "a", "b", "b"])
    (tmp_path / "set" / "c").mkdir()
    (tmp_path / "set" / "c" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="class folder.s. c hold no images"):
        load_dataset(tmp_path / "set", "train")


def test_one_class_is_refused_before_training(tmp_path, mnist_test, capsys):
    save_pngs(tmp_path / "set", mnist_test.images[:20], ["a"] * 20)
    args = ["train", "--data", str(tmp_path / "set"), "--out", str(tmp_path / "runs"), "--quiet"]
    assert main(args) == 2
    assert "one class only (a); a classifier needs two or more" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_unreadable_image_is_named(tmp_path, mnist_test):
    save_pngs(tmp_path / "set", mnist_test.images[:4], ["a", "a", "b", "b"])
    (tmp_path / "set" / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png"):
        load_dataset(tmp_path / "set", "train")


def test_predict_csv_writes_a_kaggle_submission(tmp_path, trained_checkpoint, mnist_test, capsys):
    unlabelled = write_csv(tmp_path / "test.csv", mnist_test.images[:300])
    out = tmp_path / "submission.csv"
    assert main(["predict", str(trained_checkpoint), "--csv", str(unlabelled), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 301 and lines[1].startswith("1,")
    predicted = np.array([int(line.split(",")[1]) for line in lines[1:]])
    assert (predicted == mnist_test.labels[:300].numpy()).mean() > 0.9
    assert main(["predict", str(trained_checkpoint), "--csv", str(unlabelled), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    labelled = write_csv(tmp_path / "labelled.csv", mnist_test.images[:300], mnist_test.labels[:300])
    assert (
        main(["predict", str(trained_checkpoint), "--csv", str(labelled), "--out", str(tmp_path / "b.csv")])
        == 0
    )
    assert "accuracy on its labels" in capsys.readouterr().out


def test_predict_csv_without_a_checkpoint_uses_the_shipped_default(tmp_path, mnist_test, capsys):
    unlabelled = write_csv(tmp_path / "test.csv", mnist_test.images[:50])
    out = tmp_path / "submission.csv"
    assert main(["predict", "--csv", str(unlabelled), "--out", str(out)]) == 0
    predicted = np.array([int(line.split(",")[1]) for line in out.read_text().splitlines()[1:]])
    assert (predicted == mnist_test.labels[:50].numpy()).mean() > 0.95


def test_predict_on_a_folder_of_class_folders_says_how_to_measure_it(three_class_folder, capsys):
    assert main(["predict", "fast", str(three_class_folder / "train")]) == 2
    err = capsys.readouterr().err
    assert "sub-folders are not searched" in err and "digitlab test CHECKPOINT --data" in err
