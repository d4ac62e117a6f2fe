import json
import re
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from conftest import ctrl_c, current_format_run, on_second_epoch, quick_config
from digitlab import load_checkpoint, train
from digitlab.analysis.compare import compare_runs
from digitlab.analysis.metrics import calibration, confused_pairs, confusion_matrix, per_class_table
from digitlab.analysis.predictions import predict
from digitlab.analysis.report import REPORT_STEPS, write_report
from digitlab.analysis.sweep_report import write_sweep_report
from digitlab.cli import main
from digitlab.engine.runs import Run
from digitlab.engine.sweep import run_sweep, start_sweep, time_left
from digitlab.errors import DigitlabError


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    return current_format_run(tmp_path_factory.mktemp("analysis") / "run")


def test_confusion_matrix_matches_accuracy(finished_run, mnist_test):
    predictions = predict([load_checkpoint(finished_run)], mnist_test)
    matrix = confusion_matrix(predictions.labels, predictions.predicted, 10)
    assert matrix.sum() == 10000
    assert matrix.trace() / 10000 == pytest.approx(Run(finished_run).result().test.accuracy)
    assert matrix.sum(1).tolist() == np.bincount(mnist_test.labels.numpy()).tolist()
    table = per_class_table(matrix, predictions.classes)
    assert sum(r["support"] for r in table) == 10000
    pairs = confused_pairs(matrix, predictions.classes, top=3)
    assert pairs and pairs[0][2] == max(matrix[i, j] for i in range(10) for j in range(10) if i != j)


def test_metrics_on_hand_made_cases():
    matrix = confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2)
    assert matrix.tolist() == [[1, 1], [0, 2]]
    rows = per_class_table(matrix, ["a", "b"])
    assert rows[0]["precision"] == 1.0 and rows[0]["recall"] == 0.5 and rows[1]["precision"] == 2 / 3
    # confidence 0.9 everywhere, 60 % right: ECE = |0.6 - 0.9| = 0.3
    probabilities = np.tile([0.9, 0.1], (10, 1))
    labels = np.array([0] * 6 + [1] * 4)
    assert calibration(probabilities, labels).ece == pytest.approx(0.3)


def assert_png(path, min_side=200):
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= min_side


@pytest.fixture(scope="module")
def report(finished_run):
    """report.html and report.md of the finished run, written once for the tests that read them."""
    steps = []
    written = write_report(finished_run, on_step=steps.append)
    assert steps == list(REPORT_STEPS)  # each step announced once, in order
    return written


@pytest.mark.slow  # builds a whole report, or runs a model over all 10,000 test digits
def test_report_is_self_contained_and_holds_the_numbers(finished_run, report):
    html_path, md_path = report
    test = Run(finished_run).result().test
    html = html_path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*['"](?!data:)""", html)  # nothing fetched from outside
    assert f"{test.accuracy * 100:.2f} %" in html
    assert f"{test.errors} of 10000" in html
    for name in ("confusion", "confusion_errors", "mistakes", "reliability", "samples"):
        assert_png(finished_run / "figures" / f"{name}.png")
        assert f"figures/{name}.png" in md_path.read_text()
    confusion = np.load(finished_run / "figures" / "confusion.npy")
    assert confusion.sum() == 10000 and confusion.trace() == 10000 - test.errors


@pytest.mark.slow  # builds a whole report, or exports and checks a model with ONNX Runtime
def test_report_reads_well_for_a_one_epoch_run(report):
    """No lone-dot curves, no "1 epochs", no empty header, no enum names, the set-up as a diff."""
    _, md_path = report
    markdown = md_path.read_text()
    assert "figures/curves.png" not in markdown and "One epoch: no curves" in markdown
    assert "1 epochs" not in markdown and "1 epoch, " in markdown
    assert "|  |  |" not in markdown and "Units." not in markdown
    differences = markdown.split("Settings that differ from digitlab's defaults:")[1].split("<details>")[0]
    assert "| train_limit | 4000 |" in differences and "| epochs | 1 |" in differences
    assert "| momentum |" not in differences and "out_dir" not in differences  # unchanged; where it ran
    assert "| momentum | 0.9 |" in markdown.split("<details>")[1]  # every setting, folded


def test_report_of_a_crashed_run_says_what_is_missing(finished_run, tmp_path):
    crashed = tmp_path / "crashed"
    shutil.copytree(finished_run, crashed)
    for name in ("result.json", "best.json", "best.safetensors"):
        (crashed / name).unlink()
    steps = []
    html_path, _ = write_report(crashed, on_step=steps.append)
    assert steps == [s for s in REPORT_STEPS if s != "embedding map"]  # no checkpoint to embed with
    html = html_path.read_text()
    assert "did not finish" in html and "result.json" in html and "No best checkpoint" in html


@pytest.mark.slow
def test_sweep_tables_hold_each_runs_values_and_resume_after_interrupt(tmp_path, capsys):
    base = quick_config(tmp_path, epochs=1, train_limit=1500, run_name="sweep")
    folder = start_sweep(base, {"lr": [1e-3, 3e-3, 1e-2]})
    with on_second_epoch(ctrl_c), pytest.raises(KeyboardInterrupt):  # Ctrl-C in the second point
        run_sweep(folder, quiet=True)
    first_result = folder / "runs" / "lr=0.001" / "result.json"
    stamp = first_result.stat().st_mtime_ns

    capsys.readouterr()
    rows = write_sweep_report(run_sweep(folder))
    assert first_result.stat().st_mtime_ns == stamp  # the finished point was not trained again
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("--- sweep point")]
    assert said[0] == "--- sweep point 2 of 3: lr=0.003"  # where it stands; the first point is done
    assert said[1].startswith("--- sweep point 3 of 3: lr=0.01, about ") and said[1].endswith(" left")
    assert [row["lr"] for row in rows] == [1e-3, 3e-3, 1e-2]
    assert sorted(p.name for p in (folder / "runs").iterdir()) == ["lr=0.001", "lr=0.003", "lr=0.01"]
    for row in rows:
        recorded = json.loads((folder / "runs" / row["run"] / "result.json").read_text())
        assert row["best_test_acc"] == recorded["test"]["accuracy"]
        assert row["best_epoch"] == recorded["best_epoch"]
    csv_lines = (folder / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and csv_lines[0].startswith("run,model,optimizer,lr")
    assert "lr=0.003" in (folder / "results.md").read_text()
    assert_png(folder / "curves.png")
    assert (folder / "report.html").exists()


def test_a_sweep_says_how_long_it_has_left():
    assert time_left(time.monotonic(), 0, 5) == ""  # nothing trained yet: nothing to go by
    assert time_left(time.monotonic() - 20, 2, 5) == ", about 30 s left"  # 10 s a point, 3 to go
    assert time_left(time.monotonic() - 600, 1, 4) == ", about 30 min left"


@pytest.mark.slow  # trains a second run, on other data
def test_compare_refuses_mismatched_and_unfinished_runs(finished_run, tmp_path, small_idx_dir, capsys):
    other = train(quick_config(tmp_path, data=str(small_idx_dir), train_limit=0, epochs=1), quiet=True)
    with pytest.raises(DigitlabError, match="different data sets"):
        compare_runs([finished_run, other.run_dir])
    unfinished = tmp_path / "unfinished"
    shutil.copytree(finished_run, unfinished)
    (unfinished / "result.json").unlink()
    with pytest.raises(DigitlabError, match="has not finished"):
        compare_runs([unfinished])
    assert main(["compare", str(finished_run), "--out", str(tmp_path)]) == 0
    assert "best_test_acc" in capsys.readouterr().out and (tmp_path / "compare.csv").exists()
    assert main(["sweep", "--lr", "1e-3", "--out", str(tmp_path)]) == 2
    assert "several values" in capsys.readouterr().err


@pytest.mark.slow  # builds a whole report, or runs a model over all 10,000 test digits
def test_audit_ranks_deliberately_wrong_labels_first(finished_run, mnist_test, tmp_path):
    from digitlab.analysis.audit import audit_labels, write_audit
    from digitlab.data import write_idx

    images, labels = mnist_test.images[:2000].numpy(), mnist_test.labels[:2000].numpy().astype(np.uint8)
    rng = np.random.default_rng(0)
    flipped = rng.choice(2000, 20, replace=False)
    labels = labels.copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, 20)) % 10
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)

    result = audit_labels([load_checkpoint(finished_run)], "test", str(tmp_path), top=30)
    top = {row["index"] for row in result.rows[:30]}
    assert len(top & set(flipped.tolist())) >= 16
    assert result.flagged >= 10 and result.scored == 2000
    csv_path, grid_path = write_audit(result, tmp_path / "audit", "test")
    assert len(csv_path.read_text().splitlines()) == len(result.rows) + 1
    assert_png(grid_path)


@pytest.mark.slow  # a real run and its whole report
def test_a_run_measured_on_the_test_set_each_epoch_says_what_choosing_on_it_would_give(tmp_path):
    result = train(quick_config(tmp_path, epochs=2, train_limit=1500, test_each_epoch=True), quiet=True)
    _, md_path = write_report(result.run_dir, embedded=200)
    markdown = md_path.read_text()
    rows = Run(result.run_dir).metrics()
    peak = max(rows, key=lambda r: r["test_acc"])
    assert "| test acc (each epoch) |" in markdown
    assert f"the best epoch would be {peak['epoch']} with {peak['test_acc'] * 100:.2f} %" in markdown
    assert "on the test set (measured each epoch, never used to choose)" in markdown
