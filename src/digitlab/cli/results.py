"""Commands that measure and explain trained models: `test`, `compare`, `report`, `audit`, `explain`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from digitlab.errors import ConfigError


def add_test(commands) -> None:
    parser = commands.add_parser(
        "test",
        help="measure a checkpoint on a test set",
        description="Test loss, accuracy and error count of a checkpoint on the test split. Several "
        "checkpoints are tested as an ensemble that averages their probabilities.",
    )
    parser.add_argument(
        "checkpoints",
        type=Path,
        nargs="+",
        metavar="CHECKPOINT",
        help="run folder, best.safetensors, or a seed .pth; several are ensembled",
    )
    parser.add_argument(
        "--data", help="data set name, file or folder (default: the one the checkpoint was trained on)"
    )
    parser.add_argument("--model", help="architecture of a .pth state dict")
    parser.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size")
    parser.add_argument("--tta", action="store_true", help="average over one-pixel shifts")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run_test)


def run_test(args: argparse.Namespace) -> int:
    from digitlab.data import load_dataset
    from digitlab.engine.checkpoint import load_checkpoint
    from digitlab.engine.evaluate import evaluate_ensemble

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    checkpoints = [load_checkpoint(path, model_name=args.model) for path in args.checkpoints]
    data = load_dataset(args.data or checkpoints[0].meta.dataset, "test")
    for checkpoint in checkpoints:
        checkpoint.check_classes(data)
    models = [checkpoint.model for checkpoint in checkpoints]
    metrics = evaluate_ensemble(models, data, args.tta, args.batch_size)
    if args.json:
        print(json.dumps(metrics.to_dict()))
        return 0
    what = str(args.checkpoints[0]) if len(checkpoints) == 1 else f"ensemble of {len(checkpoints)}"
    print(
        f"{what}: test accuracy {metrics.accuracy * 100:.2f}%  "
        f"loss {metrics.loss:.4f}  errors {metrics.errors} of {metrics.n}"
    )
    return 0


def add_compare(commands) -> None:
    parser = commands.add_parser(
        "compare",
        help="results table of several runs",
        description="Print the best/last-epoch results table of several runs; write it as Markdown and CSV.",
    )
    parser.add_argument("runs", type=Path, nargs="+", help="run folders")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for compare.md/compare.csv")
    parser.set_defaults(handler=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from digitlab.analysis.compare import compare_runs, markdown_table, write_tables

    rows = compare_runs(args.runs)
    print(markdown_table(rows))
    md_path, csv_path = write_tables(rows, args.out, "compare")
    print(f"wrote {md_path} and {csv_path}")
    return 0


def add_report(commands) -> None:
    parser = commands.add_parser(
        "report",
        help="write the experiment report of a run",
        description="Write report.html (self-contained) and report.md (figures in figures/) "
        "into a run folder.",
    )
    parser.add_argument("run_dir", type=Path, help="run folder")
    parser.add_argument("--mistakes", type=int, default=25, help="misclassified digits to show")
    parser.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    from digitlab.analysis.report import write_report

    html_path, md_path = write_report(args.run_dir, mistakes=args.mistakes)
    print(f"wrote {html_path}\nwrote {md_path}")
    return 0


def add_audit(commands) -> None:
    parser = commands.add_parser(
        "audit",
        help="find images whose labels are most likely wrong",
        description="Rank test (or training) images by how likely their label is wrong, using "
        "confident learning (cleanlab) on the checkpoints' predictions. Training images are scored "
        "out-of-fold: only by checkpoints whose validation split held them out.",
    )
    parser.add_argument("checkpoints", type=Path, nargs="+", help="run folders or best.safetensors files")
    parser.add_argument("--split", choices=("test", "train"), default="test", help="which images to audit")
    parser.add_argument(
        "--data", help="data set of the test split (default: the one the checkpoint was trained on)"
    )
    parser.add_argument("--top", type=int, default=25, help="issues to print and show in the grid")
    parser.add_argument("--out", type=Path, default=Path("audit"), help="folder for the CSV and grid")
    parser.set_defaults(handler=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    from digitlab.analysis.audit import audit_labels, write_audit
    from digitlab.engine.checkpoint import load_checkpoint

    checkpoints = [load_checkpoint(path) for path in args.checkpoints]
    result = audit_labels(checkpoints, args.split, args.data or checkpoints[0].meta.dataset, args.top)
    print(
        f"{result.flagged} of {result.scored:,} {args.split} images flagged as label issues by confident "
        f"learning; the {min(args.top, len(result.rows))} with the lowest label quality:"
    )
    for row in result.rows[: args.top]:
        flag = "  flagged" if row["flagged"] else ""
        print(
            f"  {args.split} #{row['index']:<6} given {row['given']}  suggested {row['suggested']}  "
            f"p(given) {row['p_given']:.3f}{flag}"
        )
    csv_path, grid_path = write_audit(result, args.out, args.split, args.top)
    print(f"wrote {csv_path} and {grid_path}")
    return 0


def add_explain(commands) -> None:
    parser = commands.add_parser(
        "explain",
        help="show which pixels made a model read an image as it did",
        description="For each image (brought into MNIST's form as `predict` does), draw attribution "
        "maps (Captum) for the predicted class and the runner-up over the 28x28 digit the model saw: "
        "red pixels raise the class's score, blue lower it. One PNG per image, named after it.",
    )
    parser.add_argument(
        "checkpoint", type=Path, metavar="CHECKPOINT", help="run folder, best.safetensors or a shipped model"
    )
    parser.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument(
        "--out", type=Path, default=Path("explain"), metavar="DIR", help="folder for the PNGs (created)"
    )
    parser.add_argument(
        "--method",
        choices=("integrated-gradients", "saliency"),
        default="integrated-gradients",
        help="integrated gradients from a black image (default), or saliency (the signed gradient)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing PNGs in --out")
    parser.set_defaults(handler=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    from digitlab.analysis.explain import explain_files, output_paths
    from digitlab.engine.checkpoint import load_checkpoint

    output_paths(args.images, args.out, args.overwrite)  # refuse before loading anything
    checkpoint = load_checkpoint(args.checkpoint)
    for explanation, written in explain_files(checkpoint, args.images, args.out, args.method, args.overwrite):
        (first, second), (p_first, p_second) = explanation.classes, explanation.probabilities
        print(
            f"{explanation.name}: {first} ({p_first:.1%})  runner-up {second} ({p_second:.1%})  "
            f"wrote {written}"
        )
    return 0


COMMANDS = [add_test, add_compare, add_report, add_audit, add_explain]
