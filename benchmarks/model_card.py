"""Ship a finished run as a named model: copy its weights into the package and write its card,
measuring every figure of the card (MNIST test, calibration, real-world suite, size, latency).

    python benchmarks/model_card.py RUN --name fast --summary "..." --command "digitlab train ..."

Writes src/digitlab/pretrained/NAME.safetensors and the NAME entry of models.json.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time

from PIL import Image

from digitlab import load_dataset
from digitlab.analysis.metrics import calibration
from digitlab.analysis.realworld import build_suite, score_predictor
from digitlab.engine.checkpoint import load_checkpoint, save_checkpoint
from digitlab.engine.evaluate import ensemble_probabilities, metrics_from_logits
from digitlab.engine.pretrained import CARDS_FILE, ModelCard, file_sha256, pretrained_folder
from digitlab.inference import Predictor
from digitlab.models import count_parameters

MNIST_LICENSE = "MNIST (Y. LeCun, C. Cortes, C. J. C. Burges), CC BY-SA 3.0"
FASHION_LICENSE = "Fashion-MNIST (Zalando Research), MIT; DejaVu fonts, free licence (Bitstream Vera)"


def latency(predictor: Predictor, test, repeats: int = 60) -> dict:
    """p50/p95 milliseconds to read one 280x280 PNG, as the drawing page sends it."""
    pngs = []
    for image in test.images[:repeats].numpy():
        buffer = io.BytesIO()
        Image.fromarray(255 - image).resize((280, 280)).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    samples = []
    for data in pngs:
        start = time.perf_counter()
        predictor.predict(data)
        samples.append((time.perf_counter() - start) * 1000)
    samples = sorted(samples[5:])
    return {"p50": round(statistics.median(samples), 2), "p95": round(samples[int(0.95 * len(samples))], 2)}


def training_data(config: dict) -> str:
    """The sources training used, in words."""
    text = (
        f"{config['data']} training split: {1 - config['val_split']:.0%} trained on, "
        f"{config['val_split']:.0%} held out for validation (seed {config['seed']})"
    )
    if config.get("outliers"):
        text += (
            f"; plus {config['outliers']:.0%} as many not-a-digit images (class 'not a digit'): "
            "Fashion-MNIST training images, letters and symbols printed in the DejaVu fonts, "
            "pen-drawn shapes (polygons, nested rings, branches, crossed and boxed marks), scribbles, "
            "speckle (digitlab.data.outliers)"
        )
    return text


def calibration_figures(checkpoint, test, probabilities) -> dict:
    """Expected calibration error on the MNIST test set with the temperature the trainer fitted
    on validation, and without it (temperature 1)."""
    model = checkpoint.model
    temperature = float(model.temperature)
    model.temperature.fill_(1.0)
    raw = ensemble_probabilities([model], test.images)
    model.temperature.fill_(temperature)
    labels = test.labels.numpy()
    return {
        "ece": round(calibration(probabilities.numpy(), labels).ece, 5),
        "ece_without_temperature": round(calibration(raw.numpy(), labels).ece, 5),
        "temperature": round(temperature, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="run folder or checkpoint to ship")
    parser.add_argument("--name", required=True, help="the shipped model's name")
    parser.add_argument("--summary", required=True, help="one line: what the model is for")
    parser.add_argument("--command", required=True, help="the command that reproduces the weights")
    parser.add_argument("--count", type=int, default=500, help="images per real-world set")
    args = parser.parse_args()

    checkpoint = load_checkpoint(args.run)
    folder = pretrained_folder()
    weights = save_checkpoint(folder / f"{args.name}.safetensors", checkpoint.model, checkpoint.meta)
    weights.with_suffix(".json").unlink()  # the card and the header carry the metadata
    test = load_dataset("mnist", "test")
    probabilities = ensemble_probabilities([checkpoint.model], test.images)
    metrics = metrics_from_logits(probabilities.clamp_min(1e-12).log(), test.labels)
    predictor = Predictor([checkpoint])
    readings = predictor.predict_mnist(test.images.numpy())
    verdicts = [p.verdict for p in readings]
    labels = [predictor.classes[int(i)] for i in test.labels]
    rows = [{"set": s.name, **score_predictor(predictor, s)} for s in build_suite(test, args.count)]
    config = checkpoint.meta.config
    card = ModelCard(
        name=args.name,
        file=weights.name,
        sha256=file_sha256(weights),
        summary=args.summary,
        architecture=checkpoint.meta.model,
        parameters=count_parameters(checkpoint.model),
        training_data=training_data(config),
        command=args.command,
        mnist_test={
            "accuracy": metrics.accuracy,
            "errors": metrics.errors,
            "n": metrics.n,
            "verdict_digit": verdicts.count("digit") / len(verdicts),
            # the digit `predict` reads (the best digit class, even where the verdict is not "digit")
            "label_accuracy": sum(p.label == y for p, y in zip(readings, labels, strict=True)) / len(labels),
        },
        calibration=calibration_figures(checkpoint, test, probabilities),
        realworld=rows,
        size_bytes=weights.stat().st_size,
        latency_ms=latency(predictor, test),
        data_license=MNIST_LICENSE + ("; " + FASHION_LICENSE if config.get("outliers") else ""),
    )
    cards_path = folder / CARDS_FILE
    cards = json.loads(cards_path.read_text()) if cards_path.exists() else []
    cards = [c for c in cards if c["name"] != args.name] + [card.to_dict()]
    cards_path.write_text(json.dumps(cards, indent=2) + "\n")
    print(card.text())
    print(json.dumps({"name": args.name, "sha256": card.sha256, "mnist_test_accuracy": metrics.accuracy}))


if __name__ == "__main__":
    main()
