"""Ship a finished run as a named model: copy its weights into the package and write its card,
measuring every figure of the card (MNIST test, calibration, real-world suite, size, latency).

    python benchmarks/model_card.py RUN --name fast --summary "..." --command "digitlab train ..."
    python benchmarks/model_card.py --name ensemble --members best best-2 ... --summary ... --command ...

The first writes src/digitlab/pretrained/NAME.safetensors and the NAME entry of models.json;
the second an ensemble's entry, whose members are models shipped already (no file of its own).
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
from digitlab.engine.checkpoint import load_checkpoint, load_checkpoints, save_checkpoint
from digitlab.engine.evaluate import ensemble_probabilities, metrics_from_logits
from digitlab.engine.pretrained import (
    CARDS_FILE,
    ModelCard,
    file_sha256,
    model_cards,
    pretrained_folder,
    shipped_weights,
)
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


def calibration_figures(models, test, probabilities) -> dict:
    """Expected calibration error on the MNIST test set with the temperatures the trainer fitted
    on validation, and without them (temperature 1); a single model's temperature."""
    temperatures = [float(model.temperature) for model in models]
    for model in models:
        model.temperature.fill_(1.0)
    raw = ensemble_probabilities(models, test.images)
    for model, temperature in zip(models, temperatures, strict=True):
        model.temperature.fill_(temperature)
    labels = test.labels.numpy()
    figures = {
        "ece": round(calibration(probabilities.numpy(), labels).ece, 5),
        "ece_without_temperature": round(calibration(raw.numpy(), labels).ece, 5),
    }
    return figures | ({"temperature": round(temperatures[0], 4)} if len(models) == 1 else {})


def ship_weights(run: str, name: str, half: bool):
    """Copy the run's best checkpoint into the package as NAME.safetensors (float16 when `half`);
    (checkpoint as shipped, file). The card measures the shipped file, so its figures are those
    of the float16 weights where they are stored so."""
    checkpoint = load_checkpoint(run)
    weights = save_checkpoint(
        pretrained_folder() / f"{name}.safetensors", checkpoint.model, checkpoint.meta, half=half
    )
    weights.with_suffix(".json").unlink()  # the card and the header carry the metadata
    return load_checkpoint(weights), weights


def architecture_of(checkpoints) -> str:
    """`widecnn`, or for an ensemble its architectures counted: `widecnn x3, resnet x2`."""
    names = [c.meta.model for c in checkpoints]
    if len(names) == 1:
        return names[0]
    return ", ".join(f"{n} x{names.count(n)}" for n in dict.fromkeys(names))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", nargs="?", help="run folder or checkpoint to ship")
    parser.add_argument(
        "--members", nargs="+", default=[], help="an ensemble: the names of shipped models to average"
    )
    parser.add_argument("--name", required=True, help="the shipped model's name")
    parser.add_argument("--summary", required=True, help="one line: what the model is for")
    parser.add_argument("--command", required=True, help="the command that reproduces the weights")
    parser.add_argument("--count", type=int, default=500, help="images per real-world set")
    parser.add_argument(
        "--half", action="store_true", help="store the weights as float16 (half the size of float32)"
    )
    args = parser.parse_args()
    if bool(args.run) == bool(args.members):
        parser.error("give either RUN (one model) or --members (an ensemble of shipped models)")
    singles = [name for name, card in model_cards().items() if card.file]
    if set(args.members) - set(singles):
        parser.error(f"--members: not shipped single models: {sorted(set(args.members) - set(singles))}")

    if args.run:
        checkpoint, weights = ship_weights(args.run, args.name, args.half)
        checkpoints, files = [checkpoint], {"file": weights.name, "sha256": file_sha256(weights)}
        size = weights.stat().st_size
    else:
        checkpoints = load_checkpoints(args.members)
        files = {"members": args.members}
        size = sum(path.stat().st_size for member in args.members for path in shipped_weights(member))
    models = [c.model for c in checkpoints]
    test = load_dataset("mnist", "test")
    probabilities = ensemble_probabilities(models, test.images)
    metrics = metrics_from_logits(probabilities.clamp_min(1e-12).log(), test.labels)
    predictor = Predictor(checkpoints)
    readings = predictor.predict_mnist(test.images.numpy())
    verdicts = [p.verdict for p in readings]
    labels = [predictor.classes[int(i)] for i in test.labels]
    rows = [{"set": s.name, **score_predictor(predictor, s)} for s in build_suite(test, args.count)]
    configs = [c.meta.config for c in checkpoints]
    card = ModelCard(
        name=args.name,
        **files,
        summary=args.summary,
        architecture=architecture_of(checkpoints),
        parameters=sum(count_parameters(model) for model in models),
        training_data="; ".join(dict.fromkeys(training_data(config) for config in configs)),
        command=args.command,
        mnist_test={
            "accuracy": metrics.accuracy,
            "errors": metrics.errors,
            "n": metrics.n,
            "verdict_digit": verdicts.count("digit") / len(verdicts),
            # the digit `predict` reads (the best digit class, even where the verdict is not "digit")
            "label_accuracy": sum(p.label == y for p, y in zip(readings, labels, strict=True)) / len(labels),
        },
        calibration=calibration_figures(models, test, probabilities),
        realworld=rows,
        size_bytes=size,
        latency_ms=latency(predictor, test),
        data_license=MNIST_LICENSE
        + ("; " + FASHION_LICENSE if any(c.get("outliers") for c in configs) else ""),
    )
    cards_path = pretrained_folder() / CARDS_FILE
    cards = json.loads(cards_path.read_text()) if cards_path.exists() else []
    names = [c["name"] for c in cards]
    if args.name in names:  # a model shipped again keeps its place in `digitlab models`
        cards[names.index(args.name)] = card.to_dict()
    else:
        cards.append(card.to_dict())
    cards_path.write_text(json.dumps(cards, indent=2) + "\n")
    print(card.text())
    print(json.dumps({"name": args.name, "sha256": card.sha256, "mnist_test_accuracy": metrics.accuracy}))


if __name__ == "__main__":
    main()
