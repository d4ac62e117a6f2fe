"""The results of a finished sweep: tables (Markdown, CSV), overlaid curves and a report."""

from __future__ import annotations

from digitlab.analysis import figures
from digitlab.analysis.compare import compare_runs, table_cell, table_columns, write_tables
from digitlab.analysis.document import Document
from digitlab.engine.runs import Run
from digitlab.engine.sweep import SweepResult


def write_sweep_report(sweep: SweepResult) -> list[dict]:
    """Write results.md/.csv, curves.png and report.html/.md into the sweep folder; return the rows."""
    folder = sweep.folder
    rows = compare_runs(sweep.run_dirs)
    write_tables(rows, folder)
    curves = {run_dir.name: Run(run_dir).metrics() for run_dir in sweep.run_dirs}
    doc = Document(f"sweep {folder.name}")
    doc.paragraph("Grid: " + "; ".join(f"{k} = {', '.join(map(str, v))}" for k, v in sweep.grid.items()))
    validated = [row for row in rows if row["best_val_acc"] is not None]
    if validated:
        best = max(validated, key=lambda r: r["best_val_acc"])
        doc.paragraph(
            f"Best on validation: {best['run']} (val acc {table_cell(best, 'best_val_acc')}, "
            f"test acc {table_cell(best, 'best_test_acc')})."
        )
    doc.figure(
        figures.sweep_curves(curves, folder / "curves.png", f"sweep {folder.name}"),
        "Validation loss (solid), training loss (dotted) and validation accuracy per run.",
    )
    columns = table_columns(rows)  # the compared few; results.csv has every column
    doc.table(columns, [[table_cell(row, c) for c in columns] for row in rows])
    doc.write(folder)
    return rows
