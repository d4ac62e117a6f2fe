"""ONNX export: a format-1 checkpoint of digitlab 0.1 exports to the numbers it gave then,
with its standardisation inside the graph and a dynamic batch axis."""

import json

import numpy as np
import onnx
import onnxruntime
import pytest

from conftest import LEGACY_RUN
from digitlab.cli import main


@pytest.mark.slow  # builds a whole report, or runs a model over all 10,000 test digits
def test_onnx_export_has_the_standardisation_inside_and_a_dynamic_batch(tmp_path, capsys, mnist_test):
    out = tmp_path / "model.onnx"
    assert main(["export", str(LEGACY_RUN), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "same prediction on 100.00%" in printed and "1000 MNIST test images" in printed
    model = onnx.load(str(out))
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["digitlab_model"] == "fastcnn" and "mean" not in metadata  # inside the graph
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        pixels = mnist_test.images[:batch].numpy()[:, None] / 255.0  # pixels in [0, 1], nothing else
        logits = session.run(["logits"], {"images": pixels.astype(np.float32)})[0]
        assert logits.shape == (batch, 10)
    pixels = mnist_test.images[:20].numpy()[:, None].astype(np.float32) / 255
    logits = session.run(["logits"], {"images": pixels})[0]
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    expected = json.loads((LEGACY_RUN / "expected.json").read_text())["first20_probabilities"]
    assert probabilities == pytest.approx(np.array(expected), abs=1e-5)  # what digitlab 0.1 computed


def test_export_never_replaces_a_file_without_overwrite(tmp_path, capsys):
    out = tmp_path / "seven.png"
    out.write_bytes(b"a user's picture")
    assert main(["export", str(LEGACY_RUN), "--out", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"a user's picture"
