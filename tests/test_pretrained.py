"""The models that ship inside the package: their files match their cards, they measure what
their cards say, and their names work wherever a checkpoint path does."""

import json
from pathlib import Path

import pytest
import torch

from digitlab.cli import main
from digitlab.engine import pretrained
from digitlab.engine.checkpoint import load_checkpoint, save_checkpoint
from digitlab.engine.evaluate import ensemble_probabilities, predict_logits
from digitlab.engine.pretrained import ModelCard, file_sha256, model_cards, pretrained_folder, shipped_weights
from digitlab.errors import CheckpointError
from digitlab.inference import Predictor

CARDS = model_cards()
FILES = sorted(name for name, card in CARDS.items() if card.file)
EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"


def test_the_shipped_models_are_small_enough():
    assert "fast" in CARDS
    assert sum((pretrained_folder() / CARDS[name].file).stat().st_size for name in FILES) <= 25 * 2**20


@pytest.mark.parametrize("name", FILES)
def test_each_shipped_file_matches_its_card(name):
    card = CARDS[name]
    path = pretrained_folder() / card.file
    assert file_sha256(path) == card.sha256 and path.stat().st_size == card.size_bytes


def test_half_precision_storage_halves_the_file_and_keeps_the_predictions(tmp_path, mnist_test):
    shipped = load_checkpoint("fast")
    half = save_checkpoint(tmp_path / "half.safetensors", shipped.model, shipped.meta, half=True)
    assert half.stat().st_size < 0.6 * shipped.path.stat().st_size
    reloaded = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in reloaded.model.parameters())  # computes in float32
    images = mnist_test.images[:2000]
    before = predict_logits(shipped.model, images, 500).argmax(1)
    after = predict_logits(reloaded.model, images, 500).argmax(1)
    assert (before != after).sum() <= 2


def slow_when_heavy(names):
    """Ensembles and models over 100k parameters take 5-20 s over the test set: slow tier."""
    heavy = [n for n in names if CARDS[n].members or CARDS[n].parameters > 100_000]
    return [pytest.param(n, marks=pytest.mark.slow) if n in heavy else n for n in names]


@pytest.fixture(scope="session")
def shipped_probabilities(mnist_test):
    """NAME -> its MNIST test probabilities, each model's computed once: an ensemble's are its
    members' averaged in order, as `digitlab test NAME` averages them (the sixteen members
    would otherwise be run twice, 4-5 minutes on two cores)."""
    computed = {}

    def probabilities(name: str) -> torch.Tensor:
        if name not in computed:
            members = CARDS[name].members
            computed[name] = (
                sum(probabilities(member) for member in members) / len(members)
                if members
                else ensemble_probabilities([load_checkpoint(name).model], mnist_test.images)
            )
        return computed[name]

    return probabilities


@pytest.mark.parametrize("name", slow_when_heavy(sorted(CARDS)))
def test_each_shipped_model_scores_what_its_card_says_on_mnist(name, shipped_probabilities, mnist_test):
    probabilities = shipped_probabilities(name)
    assert len(probabilities) == len(mnist_test.labels) == 10000
    errors = int((probabilities.argmax(1) != mnist_test.labels).sum())
    assert abs(errors - CARDS[name].mnist_test["errors"]) <= 2  # other CPUs round differently


@pytest.mark.parametrize("name", sorted(set(CARDS) - set(FILES)))
def test_each_shipped_ensemble_is_made_of_shipped_models(name):
    card = CARDS[name]
    assert len(card.members) >= 2 and set(card.members) <= set(FILES) and not card.sha256
    assert card.size_bytes == sum(CARDS[member].size_bytes for member in card.members)
    assert card.parameters == sum(CARDS[member].parameters for member in card.members)


@pytest.fixture
def fast_pair(monkeypatch):
    """A shipped ensemble named 'pair' of the 'fast' model twice, beside the real cards."""
    pair = ModelCard(
        name="pair", summary="two fasts", architecture="fastcnn x2", parameters=0, training_data="",
        command="", mnist_test={}, calibration={}, members=["fast", "fast"],
    )  # fmt: skip
    monkeypatch.setattr(pretrained, "model_cards", lambda: {**CARDS, "pair": pair})
    return pair


def test_a_shipped_ensembles_name_loads_its_members(fast_pair, capsys):
    assert shipped_weights("pair") == shipped_weights("fast") * 2
    assert main(["test", "pair", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["errors"] == CARDS["fast"].mnist_test["errors"]
    assert main(["test", "pair", "fast"]) == 0  # a shipped ensemble beside another checkpoint
    assert "ensemble of 3" in capsys.readouterr().out
    assert len(Predictor.pretrained("pair").checkpoints) == 2
    assert main(["predict", "pair", f"{EXAMPLES}/seven-scan.jpg"]) == 0
    assert ": 7 (" in capsys.readouterr().out


def test_a_command_that_reads_one_model_refuses_an_ensemble_by_name(fast_pair, tmp_path, capsys):
    assert main(["export", "pair", "--out", str(tmp_path / "pair.onnx")]) == 2
    error = capsys.readouterr().err
    assert "'pair' is an ensemble of 2 models; this command reads one model" in error
    assert not (tmp_path / "pair.onnx").exists()


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


def test_predictor_pretrained_is_the_shipped_model_even_beside_a_same_named_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast").mkdir()
    assert Predictor.pretrained("fast").checkpoints[0].path == shipped_weights("fast")[0]


def test_predictor_pretrained(capsys):
    predictor = Predictor.pretrained("fast")
    assert predictor.predict(f"{EXAMPLES}/two-transparent.png").label == "2"
    with pytest.raises(CheckpointError, match="shipped: "):
        Predictor.pretrained("nope")


@pytest.mark.slow  # builds a whole report, or runs a model over all 10,000 test digits
def test_the_default_model_ships_reads_mnist_and_says_not_a_digit(mnist_test):
    predictor = Predictor.pretrained()  # the default
    assert predictor.classes[-1] == "not a digit"
    # the digit predict reads, measured here (`digitlab test` is strict, a digit read as "not a
    # digit" counting as an error, and is checked against the card by the test above)
    readings = predictor.predict_mnist(mnist_test.images.numpy())
    right = sum(p.label == str(int(y)) for p, y in zip(readings, mnist_test.labels, strict=True)) / len(
        readings
    )
    assert right >= 0.995 and abs(right - CARDS["default"].mnist_test["label_accuracy"]) <= 2e-4
    assert predictor.predict(f"{EXAMPLES}/seven-scan.jpg").verdict == "digit"


def test_predict_without_a_checkpoint_uses_the_default_model(capsys):
    assert main(["predict", f"{EXAMPLES}/seven-scan.jpg", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["digit"] == "7" and line["verdict"] == "digit"
