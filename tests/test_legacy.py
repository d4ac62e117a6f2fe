"""Run folders of digitlab 0.1 (checkpoint format 1: bare network weights, standardisation in
the metadata) keep loading and give the numbers they gave then; broken metadata is one line.

tests/data/legacy-run-v1 was written by digitlab 0.1 itself (a fastcnn trained on 3,600
images for one epoch); its expected.json holds what 0.1 measured with it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from digitlab.cli import main
from digitlab.engine.checkpoint import FORMAT_VERSION, META_KEY, load_checkpoint
from digitlab.inference import Predictor

LEGACY_RUN = Path(__file__).parent / "data" / "legacy-run-v1"
EXPECTED = json.loads((LEGACY_RUN / "expected.json").read_text())
EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"


@pytest.fixture
def legacy_run(tmp_path) -> Path:
    """A writable copy (reports write into the run folder)."""
    return Path(shutil.copytree(LEGACY_RUN, tmp_path / "run"))


def test_a_format_1_checkpoint_loads_with_its_standardisation_inside_the_model():
    checkpoint = load_checkpoint(LEGACY_RUN)
    assert checkpoint.meta.format_version == FORMAT_VERSION and checkpoint.meta.model == "fastcnn"
    assert checkpoint.meta.val["accuracy"] == 0.9725  # format 1 kept it under metrics.val
    assert checkpoint.model.mean.item() == pytest.approx(EXPECTED["mean"])
    assert checkpoint.model.std.item() == pytest.approx(EXPECTED["std"])


def test_a_format_1_run_tests_to_the_same_numbers(capsys):
    assert main(["test", str(LEGACY_RUN), "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert (measured["accuracy"], measured["errors"]) == (
        EXPECTED["test"]["accuracy"],
        EXPECTED["test"]["errors"],
    )
    assert measured["loss"] == pytest.approx(EXPECTED["test"]["loss"], rel=1e-5)


def test_a_format_1_run_predicts_the_same_probabilities(mnist_test):
    predictor = Predictor.from_paths(LEGACY_RUN)
    for name, expected in EXPECTED["examples"].items():
        prediction = predictor.predict(EXAMPLES / name)
        assert prediction.label == expected["digit"]
        assert prediction.probabilities == pytest.approx(expected["probabilities"], abs=1e-5)
    probabilities = predictor.probabilities(mnist_test.images[:20].numpy())
    assert probabilities == pytest.approx(np.array(EXPECTED["first20_probabilities"]), abs=1e-5)


def test_a_format_1_run_is_compared(legacy_run, capsys, tmp_path):
    assert main(["compare", str(legacy_run), "--out", str(tmp_path)]) == 0
    assert "96.49 %" in capsys.readouterr().out


def rewrite_metadata(checkpoint: Path, meta) -> None:
    text = meta if isinstance(meta, str) else json.dumps(meta)
    save_file(load_file(str(checkpoint)), str(checkpoint), metadata={META_KEY: text})


GOOD_META = json.loads((LEGACY_RUN / "best.json").read_text())


@pytest.mark.parametrize(
    "meta, message",
    [
        ("{not json", "metadata in the header is not valid JSON"),
        ([1, 2], "metadata is not a JSON object"),
        ({**GOOD_META, "model": None}, "field 'model' should be a model name"),
        ({k: v for k, v in GOOD_META.items() if k != "model"}, "names no model"),
        ({**GOOD_META, "classes": "0123456789"}, "field 'classes' should be a list of class names"),
        ({**GOOD_META, "classes": [0, 1]}, "field 'classes' should list class names"),
        ({**GOOD_META, "model_kwargs": {"widths": "wide"}}, "model 'fastcnn': bad arguments"),
        ({**GOOD_META, "model": "vit"}, "unknown model 'vit'"),
        ({**GOOD_META, "format_version": 99}, "checkpoint format 99"),
        ({**GOOD_META, "format_version": 2, "epoch": "one"}, "field 'epoch' should be an epoch number"),
    ],
)
def test_wrong_checkpoint_metadata_is_one_line_naming_the_file(legacy_run, capsys, meta, message):
    checkpoint = legacy_run / "best.safetensors"
    rewrite_metadata(checkpoint, meta)
    before = checkpoint.read_bytes()
    assert main(["test", str(legacy_run)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(checkpoint) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert checkpoint.read_bytes() == before
