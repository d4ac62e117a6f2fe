"""Batch prediction streams: bounded look-ahead, input order, one line per failed file."""

import csv
import json

from PIL import Image

from digitlab.cli import main
from digitlab.data import imagefolder
from digitlab.inference import Predictor
from digitlab.inference.batch import predict_files


def write_pngs(folder, mnist_test, count):
    folder.mkdir(exist_ok=True)
    for i in range(count):
        Image.fromarray(255 - mnist_test.images[i].numpy()).save(folder / f"{i:03d}.png")
    return sorted(folder.iterdir())


def test_batched_predictions_equal_one_by_one_and_keep_the_order(trained_checkpoint, mnist_test, tmp_path):
    paths = write_pngs(tmp_path / "digits", mnist_test, 10)
    predictor = Predictor.from_paths(trained_checkpoint)
    results = list(predict_files(predictor, paths, workers=2, chunk=3))
    assert [r.path for r in results] == [str(p) for p in paths]
    for result, path in zip(results, paths, strict=True):
        single = predictor.predict(path)
        assert result.prediction.label == single.label
        assert abs(result.prediction.probability - single.probability) < 1e-5


def test_files_are_pulled_a_few_chunks_ahead_not_all_at_once(trained_checkpoint, mnist_test, tmp_path):
    paths = write_pngs(tmp_path / "digits", mnist_test, 4)
    pulled = []

    def endless():
        while True:
            for path in paths:
                pulled.append(path)
                yield path

    stream = predict_files(Predictor.from_paths(trained_checkpoint), endless(), workers=2, chunk=4)
    for _ in range(8):
        next(stream)
    stream.close()
    assert len(pulled) <= 4 * (2 + 3)  # the chunks in flight, never the (endless) input


def test_one_bad_file_gets_its_line_and_the_others_are_read(trained_checkpoint, mnist_test, tmp_path, capsys):
    folder = tmp_path / "mixed"
    write_pngs(folder, mnist_test, 3)
    (folder / "001.png").write_bytes(b"not a png")
    Image.new("L", (40, 40), 255).save(folder / "blank.png")
    assert main(["predict", str(trained_checkpoint), str(folder), "--json"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["image"].rsplit("/", 1)[1] for line in lines] == [
        "000.png",
        "001.png",
        "002.png",
        "blank.png",
    ]
    assert lines[0]["verdict"] == "digit" and lines[2]["verdict"] == "digit"
    assert "not a readable image" in lines[1]["error"]
    assert lines[3]["verdict"] == "not-a-digit" and lines[3]["digit"] is None  # blank paper: an answer


def test_a_huge_folder_is_streamed_not_sorted(monkeypatch, mnist_test, tmp_path):
    paths = write_pngs(tmp_path / "digits", mnist_test, 6)
    assert list(imagefolder.iter_image_files(tmp_path / "digits")) == paths  # small: in name order
    monkeypatch.setattr(imagefolder, "SORTED_UP_TO", 3)
    assert sorted(imagefolder.iter_image_files(tmp_path / "digits")) == paths  # every file, once


def test_out_writes_a_csv_row_per_image_and_never_overwrites(
    trained_checkpoint, mnist_test, tmp_path, capsys
):
    folder = tmp_path / "mixed"
    write_pngs(folder, mnist_test, 2)
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "results.csv"
    assert main(["predict", str(trained_checkpoint), str(folder), "--out", str(out)]) == 1
    rows = list(csv.DictReader(out.open()))
    assert [row["image"].rsplit("/", 1)[1] for row in rows] == ["000.png", "001.png", "broken.png"]
    assert [row["digit"] for row in rows[:2]] == [str(int(mnist_test.labels[i])) for i in range(2)]
    assert rows[0]["verdict"] == "digit" and 0.5 < float(rows[0]["probability"]) <= 1
    assert rows[2]["digit"] == "" and "not a readable image" in rows[2]["error"]
    capsys.readouterr()

    before = out.read_bytes()
    assert main(["predict", str(trained_checkpoint), str(folder), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before
    assert (
        main(["predict", str(trained_checkpoint), str(folder / "000.png"), "--out", str(out), "--overwrite"])
        == 0
    )
    assert len(list(csv.DictReader(out.open()))) == 1
