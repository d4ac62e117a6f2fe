"""The experiment report of a run folder, written by the tool: report.html and report.md."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from shlex import quote

import numpy as np

from digitlab.analysis import figures
from digitlab.analysis.document import Document
from digitlab.analysis.embedding import EMBEDDED, data_embedding
from digitlab.analysis.explain import attribute_images
from digitlab.analysis.metrics import calibration, confused_pairs, confusion_matrix, per_class_table
from digitlab.analysis.predictions import hardest_mistakes, predict
from digitlab.analysis.summary import model_summary
from digitlab.config import PRESETS, TrainConfig, preset_config
from digitlab.data.sources import load_dataset
from digitlab.engine.checkpoint import CheckpointMeta
from digitlab.engine.runs import Run
from digitlab.models import build_model, count_parameters


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.2f} %"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


RUN_PLACE = ("out_dir", "run_name", "preset")  # where a run was written, not how it trained


# what write_report does, in order: `on_step` hears each name as its step starts
REPORT_STEPS = ("summary", "data", "results", "error analysis", "embedding map", "writing")


def write_report(
    run_dir: str | Path,
    mistakes: int = 25,
    embedded: int = EMBEDDED,
    on_step: Callable[[str], None] = lambda step: None,
) -> tuple[Path, Path]:
    """Write report.html (self-contained) and report.md (+ figures/) into the run folder;
    `embedded` test images go on the embedding map; `on_step` is told each of REPORT_STEPS
    as it starts (for a progress bar).

    A crashed or unfinished run gets a report of what exists, saying what is missing.
    """
    on_step(REPORT_STEPS[0])
    run = Run.open(run_dir)
    config = run.config()
    rows = run.metrics()
    result = run.result()
    best = run.best_meta()
    figure_dir = run.path / "figures"
    doc = Document(f"{config.model} on {config.data} — {run.path.name}")

    missing = [
        name
        for name, present in (("metrics.jsonl", rows), ("best checkpoint", best), ("result.json", result))
        if not present
    ]
    doc.heading("Summary")
    model_kwargs = best.model_kwargs if best else config.model_kwargs  # with num_classes from the data
    params = count_parameters(build_model(config.model, **model_kwargs))
    if result and result.val:
        best_val = result.val.accuracy
    else:
        best_val = (best.val or {}).get("accuracy") if best else None
    test = result.test if result else None
    doc.table(
        ["", "this run"],
        [
            ["data set", config.data],
            ["model", f"{config.model} ({params:,} parameters)"],
            ["preset", config.preset or "—"],
            ["epochs run", f"{len(rows)} of {config.epochs}"],
            [
                "best epoch (by " + config.monitor + ")",
                result.best_epoch if result else best.epoch if best else "—",
            ],
            ["best validation accuracy", pct(best_val)],
            ["test accuracy (best checkpoint, measured once)", pct(test and test.accuracy)],
            ["test errors", f"{test.errors} of {test.n}" if test else "—"],
        ],
    )
    if missing:
        doc.warning(
            f"This run did not finish (crashed, interrupted or still running): missing "
            f"{', '.join(missing)}. The report shows what exists."
        )

    on_step("data")
    _data_section(doc, config, figure_dir)
    doc.heading("Model")
    doc.code(model_summary(config.model, **model_kwargs))
    _setup_section(doc, config, best)
    on_step("results")
    _results_section(doc, rows, result, figure_dir, config.model)
    on_step("error analysis")
    if best and config.test_at_end:
        checkpoint, test_data = _error_section(doc, run, config, figure_dir, mistakes)
        on_step("embedding map")
        _embedding_section(doc, checkpoint, test_data, figure_dir, embedded)
    else:
        doc.heading("Error analysis")
        if best:
            doc.paragraph(
                "This run was trained with --no-test: the test set stays unseen, so the report "
                f"analyses none of its images. `digitlab test {quote(str(run.path))}` measures it once."
            )
        else:
            doc.warning("No best checkpoint yet: no error analysis.")
    _timing_section(doc, rows, result)
    on_step("writing")
    return doc.write(run.path)


def _data_section(doc: Document, config, figure_dir: Path) -> None:
    train = load_dataset(config.data, "train")
    n_train = config.train_limit or len(train)
    n_val = int(round(n_train * config.val_split))
    test = load_dataset(config.data, "test")
    test_use = "used once at the end" if config.test_at_end else "not measured by this run (--no-test)"
    doc.heading("Data")
    doc.paragraph(
        f"{config.data}: {n_train:,} training images, of which {n_val:,} ({config.val_split:.0%}) are held "
        f"out for validation with seed {config.validation_seed}; {len(test):,} test images, {test_use}. "
        "Images are 28×28 greyscale; the model standardises them with the training split's mean and "
        "deviation, which it carries in its weights."
    )
    sample = train.images[:25].numpy()
    captions = [f"label {train.classes[y]}" for y in train.labels[:25].tolist()]
    doc.figure(
        figures.digit_grid(sample, captions, figure_dir / "samples.png", "training samples"),
        "The first 25 training images with their labels.",
    )


def _setup_section(doc: Document, config, best: CheckpointMeta | None) -> None:
    doc.heading("Set-up")
    settings = config.to_dict()
    baseline = preset_config(config.preset).to_dict() if config.preset in PRESETS else TrainConfig().to_dict()
    changed = [[k, json.dumps(v)] for k, v in settings.items() if v != baseline[k] and k not in RUN_PLACE]
    what = f"the preset {config.preset}" if config.preset in PRESETS else "digitlab's defaults"
    if changed:
        doc.paragraph(f"Settings that differ from {what}:")
        doc.table(["setting", "value"], changed)
    else:
        doc.paragraph(f"The settings of {what}, unchanged.")
    doc.table(["setting", "value"], [[k, json.dumps(v)] for k, v in settings.items()], folded="every setting")
    if best and best.versions:
        doc.paragraph("Versions: " + ", ".join(f"{k} {v}" for k, v in best.versions.items()))


def _results_section(doc: Document, rows, result, figure_dir: Path, model: str) -> None:
    doc.heading("Results")
    if not rows:
        doc.warning("No epoch finished: no curves.")
        return
    best_epoch = result.best_epoch if result else None
    tested = [r for r in rows if "test_acc" in r]  # --test-each-epoch
    if len(rows) < 2:
        doc.paragraph("One epoch: no curves to draw; its numbers are in the table.")
    else:
        doc.figure(
            figures.training_curves(rows, best_epoch, figure_dir / "curves.png", f"{model}: training curves"),
            "Loss and accuracy per epoch on the training and validation splits"
            + (" and on the test set (measured each epoch, never used to choose)" if tested else "")
            + "; learning rate.",
        )
    doc.table(
        ["epoch", "train loss", "train acc", "val loss", "val acc"]
        + (["test acc (each epoch)"] if tested else [])
        + ["lr", "seconds"],
        [
            [r["epoch"], num(r["train_loss"]), pct(r["train_acc"]), num(r["val_loss"]), pct(r["val_acc"])]
            + ([pct(r.get("test_acc"))] if tested else [])
            + [f"{r['lr']:.2e}", num(r["seconds"], 1)]
            for r in rows
        ],
    )
    if result and result.test_last:
        doc.paragraph(
            f"Test accuracy of the last epoch's weights, for comparison: {pct(result.test_last.accuracy)}."
        )
    if tested:
        peak = max(tested, key=lambda r: r["test_acc"])
        doc.paragraph(
            f"Chosen on the test set, as some reports did, the best epoch would be {peak['epoch']} with "
            f"{pct(peak['test_acc'])}: an optimistic figure, since the test set picked it. digitlab "
            "chooses on the validation split and measures the test set once."
        )


def _error_section(doc: Document, run: Run, config, figure_dir: Path, mistakes: int):
    """The error analysis; returns the checkpoint and the test set it loaded."""
    checkpoint = run.load_best()
    test_data = load_dataset(config.data, "test")
    predictions = predict([checkpoint], test_data)
    classes = predictions.classes
    matrix = confusion_matrix(predictions.labels, predictions.predicted, len(classes))
    doc.heading("Error analysis")
    doc.paragraph(
        f"The best checkpoint on the {len(predictions.labels):,} test images: "
        f"{int(matrix.trace()):,} right, {int(matrix.sum() - matrix.trace())} wrong "
        f"({pct(predictions.accuracy)})."
    )
    doc.figure(
        figures.confusion_heatmap(matrix, classes, figure_dir / "confusion.png"),
        "Confusion matrix: true label (rows) against predicted label (columns).",
    )
    doc.figure(
        figures.confusion_heatmap(matrix, classes, figure_dir / "confusion_errors.png", errors_only=True),
        "Only the mistakes: the error heat map of report 003.",
    )
    hardest = hardest_mistakes(predictions, mistakes)
    captions = [
        f"{classes[predictions.labels[i]]} → {classes[predictions.predicted[i]]} "
        f"({predictions.probabilities[i].max():.0%})"
        for i in hardest
    ]
    images = predictions.images[hardest]
    doc.figure(
        figures.digit_grid(
            images,
            captions,
            figure_dir / "mistakes.png",
            f"{len(hardest)} misclassified test images, most confident first",
            attributions=attribute_images(checkpoint.model, images, predictions.predicted[hardest]),
        ),
        "Misclassified test images: true → predicted (model confidence). Beside each, integrated "
        "gradients for the predicted (wrong) class: red pixels pushed the model towards it, blue "
        "away from it (colours scaled per image).",
    )
    pairs = confused_pairs(matrix, classes)
    doc.paragraph(
        "Most confused pairs (true → predicted): "
        + (", ".join(f"{t}→{p} ({n})" for t, p, n in pairs) or "none")
    )
    doc.table(
        ["class", "precision", "recall", "F1", "support"],
        [
            [r["class"], pct(r["precision"]), pct(r["recall"]), pct(r["f1"]), r["support"]]
            for r in per_class_table(matrix, classes)
        ],
    )
    calib = calibration(predictions.probabilities, predictions.labels)
    doc.figure(
        figures.reliability_diagram(calib, figure_dir / "reliability.png"),
        f"Calibration: expected calibration error {calib.ece * 100:.2f} % (15 bins).",
    )
    np.save(figure_dir / "confusion.npy", matrix)
    return checkpoint, test_data


def _embedding_section(doc: Document, checkpoint, test_data, figure_dir: Path, embedded: int) -> None:
    embedding = data_embedding(checkpoint.model, test_data, embedded)
    doc.heading("Embedding map")
    doc.paragraph(
        f"What the network's last hidden layer makes of {len(embedding.labels):,} test images"
        + (" (a seeded sample)" if len(test_data) > embedded else "")
        + ": their features (the input of the final linear layer) laid out in two dimensions by "
        "t-SNE, so images the network finds alike lie close together: each class should form its "
        f"own cluster, and mistakes (black x, {int(embedding.mistakes.sum())} here) sit where clusters meet "
        "or inside the wrong one."
    )
    doc.figure(
        figures.embedding_scatter(embedding, figure_dir / "embedding.png"),
        "t-SNE map of the penultimate-layer features, coloured by true class; x: misclassified.",
    )


def _timing_section(doc: Document, rows, result) -> None:
    doc.heading("Timings")
    if not rows:
        doc.paragraph("No epoch finished.")
        return
    seconds = [r["seconds"] for r in rows]
    doc.paragraph(
        f"{plural(len(rows), 'epoch')}, {sum(seconds):.1f} s in all ({np.mean(seconds):.1f} s per epoch, "
        f"training and validation)"
        + (f"; {result.train_seconds:.1f} s for the whole loop." if result else ".")
    )
