"""The figures of an experiment report, as PNG files (matplotlib, Agg backend)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from digitlab.analysis.metrics import Calibration  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _values(rows: list[dict], key: str) -> list[float]:
    """A metric per epoch, NaN where it was not measured (no validation split)."""
    return [float("nan") if r.get(key) is None else r[key] for r in rows]


def _epoch_axis(ax, epochs: list[int]) -> None:
    """Whole epochs on the x axis, with room either side of a single epoch."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    if len(epochs) == 1:
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def training_curves(rows: list[dict], best_epoch: int | None, path: str | Path, title: str = "") -> Path:
    """Loss, accuracy and learning rate per epoch, train vs validation, best epoch marked."""
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
    for ax, key, label in ((axes[0], "loss", "loss (cross-entropy)"), (axes[1], "acc", "accuracy")):
        ax.plot(epochs, _values(rows, f"train_{key}"), "o-", ms=4, label="train")
        ax.plot(epochs, _values(rows, f"val_{key}"), "o-", ms=4, label="validation")
        ax.set_ylabel(label)
        ax.set_title(label.split(" ")[0])
    axes[2].plot(epochs, [r["lr"] for r in rows], "o-", ms=4, color="tab:green")
    axes[2].set_yscale("log")  # one-cycle and step schedules span decades
    axes[2].set(ylabel="learning rate (end of epoch)", title="learning rate")
    for ax in axes:
        _epoch_axis(ax, epochs)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch {best_epoch}")
    axes[0].legend(fontsize=8)
    fig.suptitle(title or "training curves")
    return _save(fig, path)


def sweep_curves(curves: dict[str, list[dict]], path: str | Path, title: str = "sweep") -> Path:
    """Validation loss and accuracy of several runs on shared axes."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for label, rows in curves.items():
        epochs = [r["epoch"] for r in rows]
        line = axes[0].plot(epochs, _values(rows, "val_loss"), label=label)[0]
        axes[0].plot(epochs, _values(rows, "train_loss"), ls=":", color=line.get_color())
        axes[1].plot(epochs, _values(rows, "val_acc"), label=label, color=line.get_color())
    axes[0].set(ylabel="loss (solid: validation, dotted: train)", title="loss")
    axes[1].set(ylabel="validation accuracy", title="validation accuracy")
    longest = max((len(rows) for rows in curves.values()), default=0)
    for ax in axes:
        _epoch_axis(ax, list(range(1, longest + 1)))
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def confusion_heatmap(
    matrix: np.ndarray, classes: list[str], path: str | Path, errors_only: bool = False
) -> Path:
    """Counts as a heat map, true label vs predicted; `errors_only` removes the diagonal."""
    shown = matrix.copy()
    if errors_only:
        np.fill_diagonal(shown, 0)
    n = len(classes)
    side = max(6.4, 0.25 * n)  # 47 EMNIST classes need a bigger canvas than 10 digits
    fig, ax = plt.subplots(figsize=(side, side * 0.875), layout="constrained")
    image = ax.imshow(shown, cmap="Reds" if errors_only else "Blues")
    fig.colorbar(image, ax=ax, label="images")
    top = shown.max() or 1
    fontsize = 7 if n <= 20 else 5
    for i in range(n):
        for j in range(n):
            if shown[i, j] or not errors_only:
                color = "white" if shown[i, j] > top / 2 else "black"
                ax.text(j, i, str(shown[i, j]), ha="center", va="center", fontsize=fontsize, color=color)
    long_names = max(len(name) for name in classes) > 2  # "T-shirt/top" would overlap its neighbours
    ax.set_xticks(range(n), classes, rotation=90 if long_names else 0)
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted label", ylabel="true label")
    ax.set_title("mistakes only (diagonal removed)" if errors_only else "confusion matrix")
    return _save(fig, path)


def digit_grid(
    images: np.ndarray, captions: list[str], path: str | Path, title: str, columns: int = 5
) -> Path:
    """Images (N, 28, 28) in a grid, each with a caption."""
    n = max(len(images), 1)
    rows = -(-n // columns)
    # long class names ("Ankle boot → Sneaker (90%)") wrap onto more lines and get wider cells
    captions = [textwrap.fill(caption, 16) for caption in captions]
    lines = max((caption.count("\n") + 1 for caption in captions), default=1)
    size = ((1.25 if lines == 1 else 1.6) * columns, (1.2 + 0.3 * lines) * rows)
    fig, axes = plt.subplots(rows, columns, figsize=size, squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions, strict=False):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def reliability_diagram(result: Calibration, path: str | Path) -> Path:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration."""
    fig, ax = plt.subplots(figsize=(5, 4.4), layout="constrained")
    centres = (result.bin_edges[:-1] + result.bin_edges[1:]) / 2
    used = result.bin_count > 0
    width = result.bin_edges[1] - result.bin_edges[0]
    ax.bar(centres[used], result.bin_accuracy[used], width=width * 0.9, alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set(xlabel="confidence (top-class probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(f"reliability diagram (ECE {result.ece * 100:.2f} %)")
    ax.legend(loc="upper left")
    return _save(fig, path)
