import json

import numpy as np
import pytest
import torch
from PIL import Image

from digitlab import load_checkpoint
from digitlab.cli import main
from digitlab.engine.evaluate import predict_logits
from digitlab.inference import Predictor


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory, mnist_test):
    folder = tmp_path_factory.mktemp("pngs")
    for i in range(200):
        Image.fromarray(mnist_test.images[i].numpy()).save(folder / f"{i:03d}.png")
    return folder


def test_predict_on_saved_mnist_pngs_agrees_with_direct_evaluation(
    trained_checkpoint, png_folder, mnist_test, capsys
):
    assert main(["predict", str(trained_checkpoint), str(png_folder), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 200 and all(len(line["top"]) == 3 for line in lines)
    checkpoint = load_checkpoint(trained_checkpoint)
    direct = predict_logits(checkpoint.model, mnist_test.images[:200])
    agree = np.mean(
        [int(line["digit"]) == d for line, d in zip(lines, direct.argmax(1).tolist(), strict=True)]
    )
    assert agree >= 0.97  # re-centring already centred digits changes almost nothing
    correct = np.mean(
        [int(line["digit"]) == y for line, y in zip(lines, mnist_test.labels[:200].tolist(), strict=True)]
    )
    assert correct >= 0.93


def test_predictor_accepts_pil_path_array_and_batches(trained_checkpoint, png_folder, mnist_test):
    predictor = Predictor.from_paths([trained_checkpoint])
    image = mnist_test.images[0].numpy()
    from_path = predictor.predict(png_folder / "000.png")
    from_pil = predictor.predict(Image.fromarray(image))
    from_array = predictor.predict(image)
    assert from_path.label == from_pil.label == from_array.label == "7"
    assert from_path.probabilities == pytest.approx(from_array.probabilities)
    batch = predictor.predict_many([png_folder / f"00{i}.png" for i in range(5)])
    assert [p.label for p in batch] == [str(y) for y in mnist_test.labels[:5].tolist()]
    assert sum(batch[0].probabilities) == pytest.approx(1.0, abs=1e-5)


def test_ensemble_averages_probabilities_and_tta_stays_a_distribution(
    trained_checkpoint, second_checkpoint, mnist_test
):
    other = second_checkpoint
    images = mnist_test.images[:20].numpy()
    first, second = Predictor.from_paths([trained_checkpoint]), Predictor.from_paths([other])
    both = Predictor.from_paths([trained_checkpoint, other])
    expected = (first.probabilities(images) + second.probabilities(images)) / 2
    np.testing.assert_allclose(both.probabilities(images), expected, rtol=1e-5, atol=1e-6)
    tta = Predictor.from_paths([trained_checkpoint], tta=True).probabilities(images)
    np.testing.assert_allclose(tta.sum(1), 1, atol=1e-5)
    assert not np.allclose(tta, first.probabilities(images))


def test_multi_reads_a_written_number(trained_checkpoint, mnist_test, tmp_path, capsys):
    picks = [int(torch.nonzero(mnist_test.labels == d)[0]) for d in (2, 0, 2, 6)]
    gap = np.zeros((28, 8), np.uint8)
    number = np.hstack([part for i in picks for part in (mnist_test.images[i].numpy(), gap)])
    Image.fromarray(number).save(tmp_path / "2026.png")
    assert main(["predict", str(trained_checkpoint), str(tmp_path / "2026.png"), "--multi", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["number"] == "2026"


def test_predict_bad_input(trained_checkpoint, tmp_path, capsys):
    (tmp_path / "blank.png").write_bytes(b"")
    Image.new("L", (40, 40), 255).save(tmp_path / "white.png")
    assert main(["predict", str(trained_checkpoint), str(tmp_path / "white.png")]) == 0
    assert "white.png: not a digit" in capsys.readouterr().out  # blank paper is an answer
    assert main(["predict", str(trained_checkpoint), str(tmp_path / "blank.png")]) == 1
    assert "blank.png: not a readable image" in capsys.readouterr().err  # an empty file is not
    assert main(["predict", str(tmp_path / "white.png")]) == 0  # no checkpoint: the shipped default
    assert "white.png: not a digit" in capsys.readouterr().out


def test_cli_test_ensembles_several_checkpoints(trained_checkpoint, second_checkpoint, small_idx_dir, capsys):
    from digitlab.data import load_dataset

    runs = [trained_checkpoint, second_checkpoint]
    assert main(["test", *map(str, runs), "--data", str(small_idx_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    test = load_dataset(small_idx_dir, "test")
    pixels = test.images.float().unsqueeze(1) / 255  # what every model takes: pixels in [0, 1]
    with torch.no_grad():
        averaged = sum(torch.softmax(load_checkpoint(run).model(pixels), 1) for run in runs) / 2
    assert result["n"] == 200 and result["errors"] == int((averaged.argmax(1) != test.labels).sum())
    nll = -averaged[torch.arange(200), test.labels].log().mean().item()
    assert result["loss"] == pytest.approx(nll, rel=1e-4)
