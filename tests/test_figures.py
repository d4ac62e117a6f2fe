"""Every report figure is checked as drawn: no two pieces of text overlap (titles, tick
labels, axis labels, cell numbers, captions), for short and long runs, digits and EMNIST."""

from __future__ import annotations

import matplotlib.text
import numpy as np
import pytest

from digitlab.analysis import figures
from digitlab.analysis.metrics import calibration


def drawn_texts(fig) -> list[matplotlib.text.Text]:
    """The texts a reader sees: figure titles; per shown axes its titles, labels, tick labels,
    offset texts, annotations and legend entries (axes switched off show no ticks)."""
    texts = list(fig.texts)
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.axison:
            texts += in_view(ax.get_xticklabels(), ax.get_xlim(), 0) + in_view(
                ax.get_yticklabels(), ax.get_ylim(), 1
            )
            texts += [ax.xaxis.label, ax.yaxis.label]
            texts += [ax.xaxis.get_offset_text(), ax.yaxis.get_offset_text()]
        if ax.get_legend():
            texts += ax.get_legend().get_texts()
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def in_view(labels, limits, coordinate: int) -> list:
    """Tick labels at positions inside the axis's view (the others are not drawn)."""
    low, high = sorted(limits)
    return [label for label in labels if low <= label.get_position()[coordinate] <= high]


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of drawn texts of `fig` whose boxes overlap (boxes shrunk a little: touching is fine)."""
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    texts = drawn_texts(fig)
    boxes = np.array([t.get_window_extent(renderer).shrunk(0.95, 0.9).extents for t in texts]).reshape(-1, 4)
    x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
    overlap = (
        (x0[:, None] < x1[None])
        & (x0[None] < x1[:, None])
        & (y0[:, None] < y1[None])
        & (y0[None] < y1[:, None])
    )
    first, second = np.nonzero(np.triu(overlap, 1))
    return [(texts[i].get_text(), texts[j].get_text()) for i, j in zip(first, second, strict=True)]


@pytest.fixture
def drawn(monkeypatch):
    """Figures as they are saved, checked before they are closed."""
    problems = {}
    real_save = figures._save

    def checking_save(fig, path):
        problems[str(path)] = overlapping_texts(fig)
        return real_save(fig, path)

    monkeypatch.setattr(figures, "_save", checking_save)
    return problems


def epoch_rows(n: int) -> list[dict]:
    return [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "train_acc": 1 - 0.1 / e,
            "val_loss": 1.1 / e,
            "val_acc": 1 - 0.12 / e,
            "lr": 3e-3 * (1 - e / (n + 1)) + 1e-7,
        }
        for e in range(1, n + 1)
    ]


@pytest.mark.parametrize(
    "epochs", [1, 20, pytest.param(2, marks=pytest.mark.slow), pytest.param(50, marks=pytest.mark.slow)]
)
def test_training_curves(drawn, tmp_path, epochs):
    figures.training_curves(epoch_rows(epochs), 1, tmp_path / "curves.png", "widecnn: training curves")
    assert drawn[str(tmp_path / "curves.png")] == []


def test_training_curves_with_the_test_set_each_epoch(drawn, tmp_path):
    rows = [{**r, "test_loss": r["val_loss"] * 0.9, "test_acc": r["val_acc"] + 0.01} for r in epoch_rows(10)]
    figures.training_curves(rows, 4, tmp_path / "curves.png", "bncnn: training curves")
    assert drawn[str(tmp_path / "curves.png")] == []  # the legend names three lines without overlaps


@pytest.mark.parametrize(
    "classes",
    [
        list("0123456789"),
        pytest.param([f"class {i}" for i in range(47)], marks=pytest.mark.slow, id="emnist"),
    ],
)
def test_confusion_heatmaps(drawn, tmp_path, classes):
    rng = np.random.default_rng(0)
    n = len(classes)
    matrix = np.diag(rng.integers(900, 1200, n)) + rng.integers(0, 3, (n, n))
    for errors_only in (False, True):
        path = tmp_path / f"confusion-{errors_only}.png"
        figures.confusion_heatmap(matrix, classes, path, errors_only=errors_only)
        assert drawn[str(path)] == []


def test_digit_grid_and_reliability_and_sweep(drawn, tmp_path, mnist_test):
    images = mnist_test.images[:25].numpy()
    captions = [f"Ankle boot → Sneaker ({p}%)" for p in range(25)]
    figures.digit_grid(
        images, captions, tmp_path / "grid.png", "25 misclassified test images, most confident first"
    )
    probabilities = np.random.default_rng(0).dirichlet(np.ones(10) * 0.1, 1000)
    figures.reliability_diagram(calibration(probabilities, np.zeros(1000, int)), tmp_path / "rel.png")
    figures.sweep_curves({f"lr={lr}": epoch_rows(8) for lr in (1e-3, 5e-4, 1e-4)}, tmp_path / "sweep.png")
    assert all(problems == [] for problems in drawn.values()), drawn
