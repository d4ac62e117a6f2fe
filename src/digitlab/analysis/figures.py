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
        if any(f"test_{key}" in r for r in rows):  # --test-each-epoch: the reports' own protocol
            ax.plot(epochs, _values(rows, f"test_{key}"), "o-", ms=4, label="test (not used to choose)")
        ax.set_ylabel(label)
        ax.set_title(label.split(" ")[0])
    axes[2].plot(epochs, [r["lr"] for r in rows], "o-", ms=4, color="black")  # not a data line's colour
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
        # markers: a one-epoch run is a single point, which a bare line would not draw
        line = axes[0].plot(epochs, _values(rows, "val_loss"), "o-", ms=4, label=label)[0]
        axes[0].plot(epochs, _values(rows, "train_loss"), "o:", ms=3, color=line.get_color())
        axes[1].plot(epochs, _values(rows, "val_acc"), "o-", ms=4, label=label, color=line.get_color())
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
    images: np.ndarray,
    captions: list[str],
    path: str | Path,
    title: str,
    columns: int = 5,
    attributions: np.ndarray | None = None,
) -> Path:
    """Images (N, 28, 28) in a grid, each with a caption; with `attributions` (N, 28, 28), each
    image has its attribution overlay beside it (`attribution_overlay`, scaled per image)."""
    n = max(len(images), 1)
    rows = -(-n // columns)
    # long class names ("Ankle boot → Sneaker (90%)") wrap onto more lines and get wider cells
    captions = [textwrap.fill(caption, 16 if attributions is None else 30) for caption in captions]
    lines = max((caption.count("\n") + 1 for caption in captions), default=1)
    width = (1.25 if lines == 1 else 1.6) if attributions is None else 2.3
    size = (width * columns, (1.2 + 0.3 * lines) * rows)
    fig, axes = plt.subplots(rows, columns, figsize=size, squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, image, caption) in enumerate(zip(axes.flat, images, captions, strict=False)):
        if attributions is None:
            ax.imshow(image, cmap="gray_r", vmin=0, vmax=255)
        else:  # the digit, a white gap, the overlay: one picture, one caption centred over the pair
            gap = np.ones((28, 3, 3))
            digit = np.repeat(1 - np.asarray(image, np.float64)[..., None] / 255, 3, axis=2)
            ax.imshow(np.concatenate([digit, gap, attribution_overlay(image, attributions[i])], axis=1))
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


ATTRIBUTION_CMAP = "RdBu_r"  # red: raises the class's score; blue: lowers it; white: no effect
METHOD_TITLES = {"integrated-gradients": "integrated gradients", "saliency": "saliency (signed gradient)"}


def attribution_scale(attributions: np.ndarray) -> float:
    """The |attribution| that gets full colour: the 99th percentile, so one extreme pixel does
    not wash out the rest (larger values are clipped)."""
    magnitude = np.abs(np.asarray(attributions, np.float64))
    scale = float(np.quantile(magnitude, 0.99)) if magnitude.size else 0.0
    return scale if scale > 0 else float(magnitude.max(initial=0.0)) or 1.0


def attribution_overlay(image: np.ndarray, attribution: np.ndarray, scale: float | None = None) -> np.ndarray:
    """An RGB picture (28, 28, 3): the digit in grey (ink darker) under the attribution in a
    diverging colour map, opaque where |attribution| reaches `scale`, clear where it is 0."""
    scale = scale or attribution_scale(attribution)
    ink = np.asarray(image, np.float64) / 255
    grey = np.repeat((1 - 0.6 * ink)[..., None], 3, axis=2)
    relative = np.clip(np.asarray(attribution, np.float64) / scale, -1, 1)
    colour = plt.get_cmap(ATTRIBUTION_CMAP)((relative + 1) / 2)[..., :3]
    alpha = np.abs(relative)[..., None] ** 0.7  # faint attributions stay visible
    return alpha * colour + (1 - alpha) * grey


def _short(text: str, width: int) -> str:
    """`text` cut in the middle to at most `width` characters (long file paths in titles)."""
    return text if len(text) <= width else text[: width // 2 - 1] + "…" + text[-(width - width // 2) :]


def explanation_figure(explanation, path: str | Path) -> Path:
    """The input the model saw and the attribution overlays for its two likeliest classes, on
    one shared colour scale (an `explain.Explanation`)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    scale = attribution_scale(explanation.attributions)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.6), layout="constrained")
    axes[0].imshow(explanation.image, cmap="gray_r", vmin=0, vmax=255)
    axes[0].set_title("input, as the model sees it", fontsize=10)
    for ax, what, name, probability, attribution in zip(
        axes[1:],
        ("predicted", "runner-up"),
        explanation.classes,
        explanation.probabilities,
        explanation.attributions,
        strict=True,
    ):
        ax.imshow(attribution_overlay(explanation.image, attribution, scale))
        ax.set_title(f"{what}: {_short(name, 16)} ({probability:.1%})", fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    bar = fig.colorbar(
        ScalarMappable(Normalize(-scale, scale), ATTRIBUTION_CMAP), ax=axes[1:], shrink=0.8, pad=0.02
    )
    bar.set_label("attribution (red: for the class, blue: against)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    method = METHOD_TITLES.get(explanation.method, explanation.method)
    fig.suptitle(f"{_short(Path(explanation.name).name, 50)} — {method}")
    return _save(fig, path)


def embedding_scatter(embedding, path: str | Path, title: str = "") -> Path:
    """The 2-D map of an `embedding.Embedding`: one dot per image coloured by its true class,
    the model's mistakes marked with a black x, a legend of the class names."""
    classes = embedding.classes
    n = len(classes)
    palette = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "turbo")
    colours = [palette(i if n <= 20 else i / max(n - 1, 1)) for i in range(n)]
    columns = -(-n // 24)  # 47 EMNIST classes: two legend columns
    fig, ax = plt.subplots(figsize=(7.5 + 1.2 * columns, 6.4), layout="constrained")
    x, y = embedding.coordinates[:, 0], embedding.coordinates[:, 1]
    for c, name in enumerate(classes):
        chosen = embedding.labels == c
        if chosen.any():
            ax.scatter(x[chosen], y[chosen], s=7, color=colours[c], label=name, linewidths=0)
    wrong = embedding.mistakes
    ax.scatter(
        x[wrong], y[wrong], s=22, marker="x", color="black", linewidths=0.9, label=f"mistake ({wrong.sum()})"
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2")
    ax.legend(
        title="true class",
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize=8,
        ncols=columns,
        markerscale=2,
        frameon=False,
    )
    ax.set_title(title or f"t-SNE map of the penultimate-layer features ({len(x):,} test images)")
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
