"""Export a checkpoint to ONNX (dynamic batch axis) and check it against PyTorch."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from digitlab.data.digitdata import to_pixels
from digitlab.data.sources import load_dataset
from digitlab.engine.checkpoint import load_checkpoint
from digitlab.errors import DigitlabError
from digitlab.fileio import atomic_write_bytes, refuse_existing


@dataclass
class ExportReport:
    path: Path
    size_bytes: int
    images: int  # real test images compared
    max_abs_diff: float  # largest |logit difference| between ONNX Runtime and PyTorch
    agreement: float  # fraction of images where both predict the same class


def export_onnx(
    checkpoint_path: str | Path,
    out: str | Path | None = None,
    check_images: int = 1000,
    overwrite: bool = False,
) -> ExportReport:
    """Write the model as ONNX: input `images` (N, 1, 28, 28) pixels in [0, 1], output `logits`.

    The standardisation is inside the graph (the model owns it); the class names go into
    the file's metadata. An existing `out` is replaced only with `overwrite`.
    """
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise DigitlabError("ONNX export needs the export extra: pip install 'digitlab[export]'") from None
    checkpoint = load_checkpoint(checkpoint_path)
    out = Path(out) if out else Path(checkpoint.path).with_suffix(".onnx")
    refuse_existing([out], overwrite)
    model = checkpoint.model.to(memory_format=torch.contiguous_format).eval()
    example = torch.zeros(2, 1, 28, 28)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # torchvision-op notices are noise here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            verbose=False,
        )
    proto = program.model_proto
    for key, value in {
        "digitlab_model": checkpoint.model_name,
        "classes": json.dumps(checkpoint.classes),
    }.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    payload = proto.SerializeToString()
    atomic_write_bytes(out, payload)

    test = load_dataset("mnist", "test").subset(slice(0, check_images))
    inputs = to_pixels(test.images.unsqueeze(1))
    with torch.inference_mode():
        expected = model(inputs).numpy()
    session = onnxruntime.InferenceSession(payload, providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"images": inputs.numpy()})[0]
    return ExportReport(
        out,
        len(payload),
        len(test),
        float(np.abs(got - expected).max()),
        float((got.argmax(1) == expected.argmax(1)).mean()),
    )
