"""The results table of report 004 for any set of runs: best and last epoch side by side.

The printed (Markdown) table keeps the few columns a reader compares: the run, its model and
preset, the settings that differ between the runs, best validation and test accuracy and the
training time, each kind of number in one format. The CSV (and `compare --json`) has everything.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from digitlab.engine.runs import Run
from digitlab.errors import DigitlabError
from digitlab.fileio import atomic_write_text

COLUMNS = [  # the CSV's columns (then preset, train_seconds and any setting that differs)
    "run",
    "model",
    "optimizer",
    "lr",
    "batch_size",
    "epochs_run",
    "best_epoch",
    "best_train_loss",
    "best_train_acc",
    "best_val_loss",
    "best_val_acc",
    "best_test_loss",
    "best_test_acc",
    "last_train_loss",
    "last_train_acc",
    "last_val_loss",
    "last_val_acc",
    "last_test_loss",
    "last_test_acc",
    "preset",
    "train_seconds",
]
ACCURACY_COLUMNS = ("best_val_acc", "best_test_acc")
TIME_COLUMN = "time_s"
# settings that never explain a difference in results: where the run went, how it was run
NOT_COMPARED = {"model", "preset", "data", "out_dir", "run_name", "device", "threads", "compile"}
NOT_COMPARED |= {"tensorboard", "mlflow", "eval_batch_size", "model_kwargs"}


def run_row(path: str | Path) -> dict:
    """One row of the table for a finished run; `settings` holds its whole training set-up."""
    run = Run.open(path)
    config = run.config()
    result = run.finished_result()
    rows = run.metrics()
    best = next((r for r in rows if r["epoch"] == result.best_epoch), None)
    if best is None:
        raise DigitlabError(f"{run.metrics_path}: no row for the best epoch {result.best_epoch}")
    last = rows[-1]
    row = {
        "run": run.path.name,
        "model": config.model,
        "optimizer": config.optimizer,
        "lr": config.lr,
        "batch_size": config.batch_size,
        "epochs_run": len(rows),
        "best_epoch": result.best_epoch,
        "data": config.data,
        "preset": config.preset or None,
        "train_seconds": result.train_seconds,
    }
    for prefix, epoch_row, test in (("best", best, result.test), ("last", last, result.test_last)):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            row[f"{prefix}_{key}"] = epoch_row[key]
        row[f"{prefix}_test_loss"] = test.loss if test else None  # None: trained with --no-test
        row[f"{prefix}_test_acc"] = test.accuracy if test else None
    row["settings"] = {k: v for k, v in config.to_dict().items() if k not in NOT_COMPARED}
    return row


def compare_runs(paths: list[str | Path]) -> list[dict]:
    """Rows for every run; runs measured on different data sets cannot share a table."""
    if not paths:
        raise DigitlabError("no runs to compare")
    rows = [run_row(path) for path in paths]
    data_sets = {row["data"] for row in rows}
    if len(data_sets) > 1:
        raise DigitlabError(
            f"runs use different data sets ({', '.join(sorted(data_sets))}); compare like with like"
        )
    return rows


def differing_settings(rows: list[dict]) -> list[str]:
    """The training settings whose value is not the same in every row, in config order."""
    if len(rows) < 2:
        return []
    names = list(rows[0].get("settings", {}))
    return [name for name in names if len({repr(row.get("settings", {}).get(name)) for row in rows}) > 1]


def table_columns(rows: list[dict]) -> list[str]:
    """The printed table's columns: run, model, preset, differing settings, accuracies, time."""
    return ["run", "model", "preset", *differing_settings(rows), *ACCURACY_COLUMNS, TIME_COLUMN]


def table_cell(row: dict, column: str) -> str:
    """Accuracies as xx.xx %, the time in seconds with one decimal, settings by format_cell."""
    if column == TIME_COLUMN:
        seconds = row.get("train_seconds")
        return "—" if seconds is None else f"{seconds:.1f}"
    value = row.get(column) if column in row else row.get("settings", {}).get(column)
    if column in ACCURACY_COLUMNS:
        return "—" if value is None else f"{value * 100:.2f} %"
    return format_cell(value)


def format_cell(value) -> str:
    """A table cell: 4 significant digits for numbers, a dash for a missing value."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}" if value >= 1e-3 or value == 0 else f"{value:.1e}"
    return str(value)


def markdown_table(rows: list[dict]) -> str:
    columns = table_columns(rows)
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join(" --- " for _ in columns) + "|"
    body = ["| " + " | ".join(table_cell(row, c) for c in columns) + " |" for row in rows]
    return "\n".join([header, rule, *body]) + "\n"


def csv_columns(rows: list[dict]) -> list[str]:
    return COLUMNS + [name for name in differing_settings(rows) if name not in COLUMNS]


def csv_table(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, csv_columns(rows), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row.get("settings", {}), **row} for row in rows)
    return buffer.getvalue()


def table_paths(folder: Path, stem: str = "results") -> tuple[Path, Path]:
    return folder / f"{stem}.md", folder / f"{stem}.csv"


def write_tables(rows: list[dict], folder: Path, stem: str = "results") -> tuple[Path, Path]:
    md_path, csv_path = table_paths(folder, stem)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(md_path, markdown_table(rows))
    atomic_write_text(csv_path, csv_table(rows))
    return md_path, csv_path
