"""The models that ship inside the package: their files match their cards, they measure what
their cards say, and their names work wherever a checkpoint path does."""

import json
from pathlib import Path

import pytest

from digitlab.cli import main
from digitlab.engine.pretrained import file_sha256, model_cards, pretrained_folder
from digitlab.errors import CheckpointError
from digitlab.inference import Predictor

CARDS = model_cards()
EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"


def test_the_shipped_models_are_small_enough():
    assert "fast" in CARDS
    assert sum((pretrained_folder() / card.file).stat().st_size for card in CARDS.values()) <= 25 * 2**20


@pytest.mark.parametrize("name", sorted(CARDS))
def test_each_shipped_file_matches_its_card(name):
    card = CARDS[name]
    path = pretrained_folder() / card.file
    assert file_sha256(path) == card.sha256 and path.stat().st_size == card.size_bytes


@pytest.mark.parametrize("name", sorted(CARDS))
def test_each_shipped_model_scores_what_its_card_says_on_mnist(name, capsys):
    assert main(["test", name, "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["n"] == 10000
    assert abs(measured["errors"] - CARDS[name].mnist_test["errors"]) <= 2  # other CPUs round differently


def test_a_shipped_name_works_as_a_checkpoint_and_an_existing_path_wins(tmp_path, monkeypatch, capsys):
    assert main(["predict", "fast", f"{EXAMPLES}/seven-scan.jpg"]) == 0
    assert ": 7 (" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast").mkdir()  # a folder named like the shipped model, but not a run
    assert main(["test", "fast"]) == 2
    assert "fast/best.safetensors: checkpoint not found" in capsys.readouterr().err


def test_models_lists_and_shows_the_cards(capsys):
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "shipped models" in listing and "fast " in listing and "widecnn" in listing
    assert main(["models", "fast"]) == 0
    card = capsys.readouterr().out
    assert CARDS["fast"].sha256 in card and CARDS["fast"].command in card and "MNIST test" in card
    assert main(["models", "nope"]) == 2
    assert "no shipped model named 'nope'" in capsys.readouterr().err


def test_predictor_pretrained(capsys):
    predictor = Predictor.pretrained("fast")
    assert predictor.predict(f"{EXAMPLES}/two-transparent.png").label == "2"
    with pytest.raises(CheckpointError, match="shipped: "):
        Predictor.pretrained("nope")
