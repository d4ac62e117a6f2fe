"""Explanations: attribution maps (Captum), the `explain` command, the embedding map, and the
report's new figures, each drawn without overlapping text."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import current_format_run
from digitlab.analysis import figures
from digitlab.analysis.embedding import data_embedding, embedding_map, penultimate_features
from digitlab.analysis.explain import Explanation, attribute, attribute_images, explain
from digitlab.analysis.report import write_report
from digitlab.cli import main
from digitlab.data.digitdata import to_pixels
from digitlab.engine.checkpoint import load_checkpoint
from test_figures import drawn  # noqa: F401  (a fixture: figures checked for overlapping text)

STEPS = 32


@pytest.fixture(scope="module")
def model(trained_checkpoint):
    return load_checkpoint(trained_checkpoint).model


def test_integrated_gradients_are_complete(model, mnist_test):
    """Attributions have the image's shape, are finite, and sum to logit(image) - logit(black)
    for the target class: the completeness axiom of integrated gradients, so the map is real."""
    pixels = to_pixels(mnist_test.images[:8]).unsqueeze(1)
    with torch.no_grad():
        logits, black = model(pixels), model(torch.zeros_like(pixels))
    for targets in (logits.argmax(1), logits.argsort(1, descending=True)[:, 1]):  # predicted, runner-up
        maps = attribute(model, pixels, targets, steps=STEPS)
        assert maps.shape == pixels.shape and torch.isfinite(maps).all()
        difference = (logits - black)[torch.arange(8), targets]
        assert maps.sum((1, 2, 3)).numpy() == pytest.approx(difference.numpy(), rel=0.02, abs=0.15)
        assert maps.abs().sum((1, 2, 3)).min() > 10 * 0.15  # pixels that for and against: not met by 0s
        assert (maps[pixels == 0] == 0).all()  # a black pixel is the baseline: it explains nothing
    saliency = attribute(model, pixels, logits.argmax(1), method="saliency")
    assert saliency.shape == pixels.shape and torch.isfinite(saliency).all() and saliency.abs().sum() > 0
    images = mnist_test.images[:3].numpy()
    assert attribute_images(model, images, [0, 1, 2], steps=4).shape == (3, 28, 28)


def test_explain_ranks_the_two_likeliest_classes(model, mnist_test, trained_checkpoint):
    classes = load_checkpoint(trained_checkpoint).classes
    explanations = explain(model, mnist_test.images[:3].numpy(), classes, steps=8)
    for explanation, label in zip(explanations, mnist_test.labels[:3].tolist(), strict=True):
        assert explanation.classes[0] == classes[label]  # these three are read right
        assert explanation.probabilities[0] >= explanation.probabilities[1]
        assert explanation.attributions.shape == (2, 28, 28)


def digit_file(path, image: np.ndarray) -> None:
    """A user-like image: black ink on white, 4x the size."""
    Image.fromarray(255 - image).resize((112, 112)).save(path)


def test_explain_command_writes_pngs_and_never_overwrites_unasked(
    trained_checkpoint, mnist_test, tmp_path, capsys
):
    images = [tmp_path / "seven.png", tmp_path / "two.png"]
    for path, image in zip(images, mnist_test.images[:2].numpy(), strict=True):
        digit_file(path, image)
    out = tmp_path / "explained"
    args = ["explain", str(trained_checkpoint), *map(str, images), "--out", str(out)]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, image, digit in zip(lines, images, ("7", "2"), strict=True):
        assert line.startswith(f"{image}: {digit} (") and "runner-up" in line
        assert line.endswith(f"wrote {out / image.name}")
        with Image.open(out / image.name) as png:
            assert png.format == "PNG" and min(png.size) > 200
    before = (out / "seven.png").read_bytes()

    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already exists" in err and "--overwrite" in err
    assert (out / "seven.png").read_bytes() == before

    assert main([*args, "--overwrite", "--method", "saliency"]) == 0
    capsys.readouterr()
    assert (out / "seven.png").read_bytes() != before


def test_explain_command_names_a_missing_image(trained_checkpoint, tmp_path, capsys):
    out = tmp_path / "explained"
    missing = tmp_path / "nowhere.png"
    assert main(["explain", str(trained_checkpoint), str(missing), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"digitlab: error: {missing}: no such image"
    assert not out.exists()


def test_penultimate_features_are_the_input_of_the_last_linear_layer():
    network = nn.Sequential(nn.Flatten(), nn.Linear(784, 12), nn.ReLU(), nn.Linear(12, 5))
    images = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    features, logits = penultimate_features(network, images, batch_size=3)
    hidden = network[2](network[1](to_pixels(images).flatten(1)))
    assert features.shape == (7, 12) and np.allclose(features, hidden.detach().numpy(), atol=1e-6)
    assert logits.shape == (7, 5)


def test_embedding_map_is_seeded_and_deterministic(model, mnist_test):
    first = data_embedding(model, mnist_test, limit=300, seed=0)
    assert first.coordinates.shape == (300, 2) and np.isfinite(first.coordinates).all()
    assert len(first.labels) == len(first.predicted) == len(set(first.indices.tolist())) == 300
    assert (first.labels == mnist_test.labels.numpy()[first.indices]).all()
    assert first.mistakes.mean() < 0.1  # a 96 % model
    again = data_embedding(model, mnist_test, limit=300, seed=0)
    assert np.array_equal(first.coordinates, again.coordinates)
    assert np.array_equal(first.indices, again.indices)
    assert embedding_map(np.zeros((1, 4))).shape == (1, 2)


@pytest.mark.slow  # builds a whole report, or runs a model over all 10,000 test digits
def test_report_shows_the_attributions_and_the_embedding_map(drawn, tmp_path):  # noqa: F811
    run = current_format_run(tmp_path / "run")
    html_path, md_path = write_report(run, embedded=400)
    markdown, html = md_path.read_text(), html_path.read_text()
    assert "## Embedding map" in markdown and "<h2>Embedding map</h2>" in html
    assert "400 test images (a seeded sample)" in markdown
    for name in ("mistakes", "embedding"):
        assert f"figures/{name}.png" in markdown
        with Image.open(run / "figures" / f"{name}.png") as png:
            assert png.format == "PNG" and min(png.size) > 400
    assert "integrated gradients for the predicted (wrong) class" in markdown
    assert all(problems == [] for problems in drawn.values()), drawn


@pytest.mark.parametrize(
    "classes",
    [list("0123456789"), pytest.param([f"class {i}" for i in range(47)], id="emnist")],
)
@pytest.mark.slow  # builds a whole report, or runs a model over all 10,000 test digits
def test_new_figures_have_no_overlapping_text(drawn, tmp_path, classes, mnist_test):  # noqa: F811
    rng = np.random.default_rng(0)
    images = mnist_test.images[:25].numpy()
    maps = rng.normal(size=(25, 28, 28)) * (images > 0)
    names = ["T-shirt/top", "Ankle boot"] if len(classes) > 10 else ["7", "1"]
    explanation = Explanation(
        "photos/" + "a-very-long-file-name-" * 4 + ".png",
        images[0],
        names,
        [0.512, 0.3],
        maps[:2],
        "saliency",
    )
    figures.explanation_figure(explanation, tmp_path / "explained.png")
    captions = [f"{names[1]} → {names[0]} ({p}%)" for p in range(25)]
    figures.digit_grid(images, captions, tmp_path / "grid.png", "25 misclassified", attributions=maps)

    class FakeEmbedding:
        coordinates = rng.normal(size=(2000, 2))
        labels = rng.integers(0, len(classes), 2000)
        predicted = np.where(rng.random(2000) < 0.05, 0, labels)
        mistakes = predicted != labels

    FakeEmbedding.classes = classes
    figures.embedding_scatter(FakeEmbedding, tmp_path / "embedding.png")
    assert len(drawn) == 3 and all(problems == [] for problems in drawn.values()), drawn
