"""Commands that measure and explain trained models: `test`, `compare`, `report`, `audit`, `explain`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from digitlab.cli.output import (
    add_deprecated_alias,
    add_json_flag,
    add_overwrite_flag,
    print_json,
    progress,
    step_progress,
)
from digitlab.config import EVAL_BATCH_SIZE
from digitlab.errors import ConfigError
from digitlab.fileio import refuse_existing


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
        help="run folder, best.safetensors, a seed .pth or a shipped model (`digitlab models`); several "
        "are ensembled",
    )
    parser.add_argument(
        "--data", help="data set name, file or folder (default: the one the checkpoint was trained on)"
    )
    parser.add_argument("--model", help="architecture of a .pth state dict")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=EVAL_BATCH_SIZE,
        help=f"images per forward pass (default {EVAL_BATCH_SIZE})",
    )
    parser.add_argument("--tta", action="store_true", help="average over one-pixel shifts")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run_test)


def run_test(args: argparse.Namespace) -> int:
    from digitlab.data import load_dataset
    from digitlab.engine.checkpoint import load_checkpoints
    from digitlab.engine.evaluate import evaluate_ensemble

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    checkpoints = load_checkpoints(args.checkpoints, model_name=args.model)
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
        description="Print the results table of several runs: run, model, preset, the settings that "
        "differ between them, best validation and test accuracy, training time. --out DIR also "
        "writes DIR/compare.md and DIR/compare.csv (every column); --json prints every column.",
    )
    parser.add_argument("runs", type=Path, nargs="+", help="run folders")
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="folder to write compare.md and compare.csv into (created)"
    )
    add_overwrite_flag(parser)
    add_json_flag(parser, "print one JSON object: every column of every run")
    parser.set_defaults(handler=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from digitlab.analysis.compare import compare_runs, markdown_table, table_paths, write_tables

    if args.out:
        refuse_existing(table_paths(args.out, "compare"), args.overwrite)
    rows = compare_runs(args.runs)
    written = list(write_tables(rows, args.out, "compare")) if args.out else []
    if args.json:
        print_json({"runs": rows, "wrote": [str(path) for path in written]})
        return 0
    print(markdown_table(rows), end="")
    if written:
        print(f"wrote {written[0]} and {written[1]}")
    return 0


def add_report(commands) -> None:
    parser = commands.add_parser(
        "report",
        help="write the experiment report of a run",
        description="Write report.html (self-contained) and report.md (figures in figures/) "
        "into the run folder (replacing an earlier report of it).",
    )
    parser.add_argument("run_dir", type=Path, help="run folder")
    parser.add_argument("--top-k", type=int, default=25, help="misclassified digits to show (default 25)")
    add_deprecated_alias(parser, "--mistakes", "top_k", type=int)
    add_json_flag(parser, "print the written paths as one JSON object")
    parser.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    from digitlab.analysis.report import REPORT_STEPS, write_report

    if args.top_k < 0:
        raise ConfigError(f"--top-k must be >= 0, got {args.top_k}")
    with step_progress(REPORT_STEPS, args.json, desc="report") as on_step:
        html_path, md_path = write_report(args.run_dir, mistakes=args.top_k, on_step=on_step)
    if args.json:
        print_json({"html": str(html_path), "md": str(md_path)})
        return 0
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
    parser.add_argument(
        "checkpoints",
        type=Path,
        nargs="+",
        help="run folders, .safetensors files or shipped models (several are ensembled)",
    )
    parser.add_argument("--split", choices=("test", "train"), default="test", help="which images to audit")
    parser.add_argument(
        "--data", help="data set of the test split (default: the one the checkpoint was trained on)"
    )
    parser.add_argument(
        "--top-k", type=int, default=25, help="issues to print and show in the grid (default 25)"
    )
    add_deprecated_alias(parser, "--top", "top_k", type=int)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("audit"),
        metavar="DIR",
        help="folder to write label_issues_SPLIT.csv and .png into (created; default audit)",
    )
    add_overwrite_flag(parser)
    add_json_flag(parser, "print one JSON object: counts, the top-k rows and the written paths")
    parser.set_defaults(handler=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    from digitlab.analysis.audit import audit_labels, write_audit
    from digitlab.engine.checkpoint import load_checkpoint, with_ensembles_expanded

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    outputs = [args.out / f"label_issues_{args.split}.{suffix}" for suffix in ("csv", "png")]
    refuse_existing(outputs, args.overwrite)  # before any work
    paths = with_ensembles_expanded(args.checkpoints)
    checkpoints = [load_checkpoint(path) for path in progress(paths, args.json, desc="loading", unit="model")]
    result = audit_labels(checkpoints, args.split, args.data or checkpoints[0].meta.dataset, args.top_k)
    if args.json:
        csv_path, grid_path = write_audit(result, args.out, args.split, args.top_k)
        print_json(
            {
                "split": args.split,
                "scored": result.scored,
                "flagged": result.flagged,
                "rows": result.rows[: args.top_k],
                "wrote": [str(csv_path), str(grid_path)],
            }
        )
        return 0
    print(
        f"{result.flagged} of {result.scored:,} {args.split} images flagged as label issues by confident "
        f"learning; the {min(args.top_k, len(result.rows))} with the lowest label quality:"
    )
    for row in result.rows[: args.top_k]:
        flag = "  flagged" if row["flagged"] else ""
        file = f"  {row['file']}" if row["file"] else ""
        print(
            f"  {args.split} #{row['index']:<6} given {row['given']}  suggested {row['suggested']}  "
            f"p(given) {row['p_given']:.3f}{flag}{file}"
        )
    csv_path, grid_path = write_audit(result, args.out, args.split, args.top_k)
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
    add_json_flag(parser, "one JSON object per image (per line)")
    parser.set_defaults(handler=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    from digitlab.analysis.explain import explain_files, output_paths
    from digitlab.engine.checkpoint import load_checkpoint

    output_paths(args.images, args.out, args.overwrite)  # refuse before loading anything
    checkpoint = load_checkpoint(args.checkpoint)
    for explanation, written in explain_files(checkpoint, args.images, args.out, args.method, args.overwrite):
        (first, second), (p_first, p_second) = explanation.classes, explanation.probabilities
        if args.json:
            print_json(
                {
                    "image": explanation.name,
                    "classes": explanation.classes,
                    "probabilities": [float(p) for p in explanation.probabilities],
                    "method": explanation.method,
                    "wrote": str(written),
                }
            )
            continue
        print(
            f"{explanation.name}: {first} ({p_first:.1%})  runner-up {second} ({p_second:.1%})  "
            f"wrote {written}"
        )
    return 0


COMMANDS = [add_test, add_compare, add_report, add_audit, add_explain]
