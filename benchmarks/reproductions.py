"""The reproduction table: for each seed report's full-length run, what the report claimed,
what digitlab measures with the report's own protocol, and with the honest one (checkpoint
chosen on the validation split, the test set measured once).

    digitlab train --preset report-004 --seed 0 --test-each-epoch --name report-004-full
    python benchmarks/reproductions.py runs/report-*-full

The report's protocol needs the test set after every epoch (`--test-each-epoch`) where the
report chose on it; a run without those figures gets "—" there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# preset: (the report's claim as it wrote it, how it chose what it reported)
REPORTS = {
    "report-000": ("99.848 %", "best test accuracy over the epochs"),
    "report-001": ("98.6 %", "best test accuracy over the epochs"),
    "report-002": ("98.32 %", "best validation accuracy (as digitlab)"),
    "report-003-mlp": ("98.5 %", "the last epoch"),
    "report-003-cnn": ("99.3 %", "the last epoch"),
    "report-004": ("99.18 %", "lowest test loss"),
}


def report_protocol(preset: str, rows: list[dict], result: dict) -> float | None:
    """The test accuracy the report's own way of choosing would have printed."""
    tested = [r for r in rows if "test_acc" in r]
    if preset == "report-002":
        return result["test"]["accuracy"]
    if preset.startswith("report-003"):
        return result["test_last"]["accuracy"]
    if not tested:
        return None
    if preset == "report-004":
        return min(tested, key=lambda r: r["test_loss"])["test_acc"]
    return max(r["test_acc"] for r in tested)


def row(run: Path) -> dict:
    config = json.loads((run / "config.json").read_text())
    result = json.loads((run / "result.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    preset = config["preset"]
    claimed, how = REPORTS[preset]
    return {
        "preset": preset,
        "model": config["model"],
        "claimed": claimed,
        "report_protocol": report_protocol(preset, rows, result),
        "chosen_by": how,
        "honest": result["test"]["accuracy"],
        "epochs": f"{result['epochs_run']} of {config['epochs']} (best {result['best_epoch']})",
        # the median epoch, not the total: these long runs shared the CPU and were paused at times
        "median_epoch_s": round(statistics.median(r["seconds"] for r in rows), 1),
        "run": str(run),
    }


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.2f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of report-* presets")
    args = parser.parse_args()
    finished = [run for run in args.runs if (run / "result.json").exists()]
    for run in sorted(set(args.runs) - set(finished)):
        print(f"{run}: not finished (no result.json); left out", file=sys.stderr)
    rows = sorted((row(run) for run in finished), key=lambda r: r["preset"])
    for r in rows:
        print(json.dumps(r))
    print(
        "| preset | model | report claimed | report's protocol | chosen by | honest | epochs | s an epoch |"
    )
    print("| --- | --- | ---: | ---: | --- | ---: | --- | ---: |")
    for r in rows:
        print(
            f"| `{r['preset']}` | {r['model']} | {r['claimed']} | {pct(r['report_protocol'])} | "
            f"{r['chosen_by']} | {pct(r['honest'])} | {r['epochs']} | {r['median_epoch_s']} |"
        )


if __name__ == "__main__":
    main()
