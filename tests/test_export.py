import numpy as np
import onnx
import onnxruntime

from digitlab.cli import main


def test_onnx_export_matches_pytorch_with_a_dynamic_batch(trained_checkpoint, tmp_path, capsys, mnist_test):
    out = tmp_path / "model.onnx"
    assert main(["export", str(trained_checkpoint), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "same prediction on 100.00%" in printed and "1000 MNIST test images" in printed
    model = onnx.load(str(out))
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["digitlab_model"] == "fastcnn" and "mean" not in metadata  # inside the graph
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        images = mnist_test.images[:batch].numpy()[:, None] / 255.0  # pixels in [0, 1], nothing else
        logits = session.run(["logits"], {"images": images.astype(np.float32)})[0]
        assert logits.shape == (batch, 10)
        assert (logits.argmax(1) == mnist_test.labels[:batch].numpy()).mean() >= 0.85
