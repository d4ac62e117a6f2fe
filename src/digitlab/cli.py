"""The `digitlab` command line: parse arguments, call the library, print."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from digitlab.config import PRESETS, TrainConfig, preset_config
from digitlab.data.imagefolder import IMAGE_SUFFIXES, image_files
from digitlab.errors import ConfigError, DigitlabError

# Training flags: (flag, TrainConfig field, type, help). Unset flags leave the preset's value.
TRAIN_FLAGS = [
    ("--model", "model", str, "architecture name (see `digitlab models`)"),
    (
        "--data",
        "data",
        str,
        "data set name (`digitlab data list`), .npz/.csv file, or folder (idx, tensors, images)",
    ),
    ("--epochs", "epochs", int, "number of passes over the training split"),
    ("--batch-size", "batch_size", int, "images per optimiser step (global, across ranks)"),
    ("--lr", "lr", float, "learning rate (peak rate for --schedule onecycle)"),
    ("--optimizer", "optimizer", str, "adam | adamw | sgd | adadelta"),
    ("--momentum", "momentum", float, "SGD momentum"),
    ("--weight-decay", "weight_decay", float, "L2 weight decay"),
    ("--schedule", "schedule", str, "learning-rate schedule: none | step | cosine | onecycle"),
    ("--step-size", "step_size", int, "epochs between decays for --schedule step"),
    ("--gamma", "gamma", float, "decay factor for --schedule step"),
    ("--label-smoothing", "label_smoothing", float, "cross-entropy label smoothing in [0, 1)"),
    ("--aug-rotate", "aug_rotate", float, "augment: random rotation, max degrees (0 = off)"),
    ("--aug-scale", "aug_scale", float, "augment: random zoom, max relative change (0.1 = 0.9..1.1)"),
    ("--aug-shift", "aug_shift", float, "augment: random shift, max pixels"),
    ("--aug-shear", "aug_shear", float, "augment: random shear, max degrees"),
    ("--grad-clip", "grad_clip", float, "clip the gradient norm to this value (0 = off)"),
    ("--ema", "ema", float, "keep an exponential moving average of the weights, decay e.g. 0.999 (0 = off)"),
    ("--val-split", "val_split", float, "fraction of training images held out for validation"),
    ("--patience", "patience", int, "stop after this many epochs without improvement (0 = off)"),
    ("--monitor", "monitor", str, "val_acc | val_loss: picks the best checkpoint"),
    ("--seed", "seed", int, "random seed (same seed, same numbers on CPU)"),
    ("--train-limit", "train_limit", int, "use only the first N training images (0 = all)"),
    ("--device", "device", str, "auto | cpu | cuda | cuda:N"),
    ("--threads", "threads", int, "CPU threads for torch (0 = default)"),
    ("--out", "out_dir", str, "parent folder for run folders"),
    ("--name", "run_name", str, "run folder name (default <time>-<model>)"),
]


def add_training_flags(parser: argparse.ArgumentParser, resume_what: str, lists: bool) -> None:
    """--preset, --config, --resume and every TrainConfig flag; `lists`: values may be comma lists."""
    parser.add_argument("--preset", default=None, help="named set-up (see `digitlab presets`; default fast)")
    parser.add_argument("--config", type=Path, help="start from a run's config.json (replays it exactly)")
    parser.add_argument(
        "--resume", type=Path, metavar=resume_what, help="continue an interrupted run or sweep"
    )
    for flag, dest, kind, text in TRAIN_FLAGS:
        if lists:
            parser.add_argument(flag, dest=dest, default=None, help=f"{text}; comma-separated for several")
        else:
            parser.add_argument(flag, dest=dest, type=kind, default=None, help=text)
    parser.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum for SGD")
    parser.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the model for training (pays off on a GPU; minutes of compiling on a CPU)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digitlab",
        description="Train, test and inspect handwritten-digit recognisers on MNIST.",
        epilog="Run `digitlab COMMAND --help` for the options of one command.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a model into a new run folder",
        description="Train a model. Start from a --preset (default: fast) and override any "
        "setting with flags, replay a run with --config, or continue one with --resume.",
    )
    add_training_flags(train, "RUN_DIR", lists=False)
    train.add_argument("--report", action="store_true", help="write report.html/report.md at the end")
    train.set_defaults(handler=cmd_train)

    test = commands.add_parser(
        "test",
        help="measure a checkpoint on a test set",
        description="Test loss, accuracy and error count of a checkpoint on the test split. Several "
        "checkpoints are tested as an ensemble that averages their probabilities.",
    )
    test.add_argument(
        "checkpoints",
        type=Path,
        nargs="+",
        metavar="CHECKPOINT",
        help="run folder, best.safetensors, or a seed .pth; several are ensembled",
    )
    test.add_argument(
        "--data", help="data set name, file or folder (default: the one the checkpoint was trained on)"
    )
    test.add_argument("--model", help="architecture of a .pth state dict")
    test.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size")
    test.add_argument("--json", action="store_true", help="print one JSON object")
    test.set_defaults(handler=cmd_test)

    sweep = commands.add_parser(
        "sweep",
        help="train a grid of settings and tabulate the results",
        description="Train one run per point of a grid: give several comma-separated values to any "
        "training flag (e.g. --lr 1e-3,5e-4,1e-4 --batch-size 64,128). Writes a sweep folder with "
        "the results table (Markdown, CSV), an overlay of all curves and a report. "
        "--resume SWEEP_DIR continues an interrupted sweep.",
    )
    add_training_flags(sweep, "SWEEP_DIR", lists=True)
    sweep.set_defaults(handler=cmd_sweep)

    compare = commands.add_parser(
        "compare",
        help="results table of several runs",
        description="Print the best/last-epoch results table of several runs; write it as Markdown and CSV.",
    )
    compare.add_argument("runs", type=Path, nargs="+", help="run folders")
    compare.add_argument("--out", type=Path, default=Path("."), help="folder for compare.md/compare.csv")
    compare.set_defaults(handler=cmd_compare)

    audit = commands.add_parser(
        "audit",
        help="find images whose labels are most likely wrong",
        description="Rank test (or training) images by how likely their label is wrong, using "
        "confident learning (cleanlab) on the checkpoints' predictions. Training images are scored "
        "out-of-fold: only by checkpoints whose validation split held them out.",
    )
    audit.add_argument("checkpoints", type=Path, nargs="+", help="run folders or best.safetensors files")
    audit.add_argument("--split", choices=("test", "train"), default="test", help="which images to audit")
    audit.add_argument("--data", default="mnist", help="data set of the test split (default mnist)")
    audit.add_argument("--top", type=int, default=25, help="issues to print and show in the grid")
    audit.add_argument("--out", type=Path, default=Path("audit"), help="folder for the CSV and grid")
    audit.set_defaults(handler=cmd_audit)

    predict = commands.add_parser(
        "predict",
        help="read digits in users' images",
        description="Predict the digit in each image (any format Pillow reads; any size, colour or "
        "polarity). Give one or more checkpoints (run folders or .safetensors; several are "
        "ensembled) followed by images or folders of images.",
    )
    predict.add_argument("paths", type=Path, nargs="+", metavar="CHECKPOINT|IMAGE|FOLDER")
    predict.add_argument("--top-k", type=int, default=3, help="how many classes to list per image")
    predict.add_argument("--json", action="store_true", help="one JSON object per line")
    predict.add_argument("--multi", action="store_true", help="images hold several digits: read them all")
    predict.add_argument("--tta", action="store_true", help="average over one-pixel shifts")
    predict.add_argument(
        "--csv",
        type=Path,
        help="predict every row of a Kaggle-layout CSV (pixel0..pixel783) instead of images",
    )
    predict.add_argument(
        "--out", type=Path, default=Path("submission.csv"), help="with --csv: the ImageId,Label file to write"
    )
    predict.add_argument(
        "--overwrite", action="store_true", help="with --csv: replace an existing --out file"
    )
    predict.set_defaults(handler=cmd_predict)

    serve = commands.add_parser(
        "serve",
        help="web page to draw digits on, and a JSON API",
        description="Serve a page to draw (or upload) a digit and see the model read it live, and "
        "the API: POST /api/predict, GET /api/health, GET /api/model; OpenAPI docs at /docs.",
    )
    serve.add_argument("checkpoints", type=Path, nargs="+", help="run folders or .safetensors (ensembled)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--tta", action="store_true", help="average over one-pixel shifts")
    serve.set_defaults(handler=cmd_serve)

    export = commands.add_parser(
        "export",
        help="export a checkpoint to ONNX",
        description="Write an ONNX model (dynamic batch axis; input: normalised (N, 1, 28, 28) images) "
        "and check it with ONNX Runtime against PyTorch on real test images. Needs digitlab[export].",
    )
    export.add_argument("checkpoint", type=Path, help="run folder or best.safetensors")
    export.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    export.add_argument("--out", type=Path, help="output file (default: beside the checkpoint)")
    export.set_defaults(handler=cmd_export)

    report = commands.add_parser(
        "report",
        help="write the experiment report of a run",
        description="Write report.html (self-contained) and report.md (figures in figures/) "
        "into a run folder.",
    )
    report.add_argument("run_dir", type=Path, help="run folder")
    report.add_argument("--mistakes", type=int, default=25, help="misclassified digits to show")
    report.set_defaults(handler=cmd_report)

    models = commands.add_parser("models", help="list the architectures")
    models.set_defaults(handler=cmd_models)

    summary = commands.add_parser("summary", help="layer table of one architecture")
    summary.add_argument("name", help="architecture name")
    summary.set_defaults(handler=cmd_summary)

    presets = commands.add_parser("presets", help="list the named training set-ups")
    presets.set_defaults(handler=cmd_presets)

    data = commands.add_parser("data", help="data set tools")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    data_list = data_commands.add_parser("list", help="the named data sets and where they are")
    data_list.set_defaults(handler=cmd_data_list)
    info = data_commands.add_parser(
        "info", help="sizes, classes and class balance of a data set, file or folder"
    )
    info.add_argument("source", help="data set name, .npz/.csv file or folder")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=cmd_data_info)
    fetch = data_commands.add_parser(
        "fetch",
        help="download a named data set into the cache",
        description="Download a data set into the cache ($DIGITLAB_DATA, else ~/.cache/digitlab), "
        "trying its mirrors in order and verifying every file's checksum before it is used. "
        "Offline? Download the files by hand and import them with --from DIR.",
    )
    fetch.add_argument("name", help="data set name (see `digitlab data list`)")
    fetch.add_argument(
        "--from", dest="from_dir", type=Path, metavar="DIR", help="import files downloaded by hand"
    )
    fetch.add_argument(
        "--mirror", action="append", default=[], metavar="URL", help="a mirror to try first (repeatable)"
    )
    fetch.add_argument(
        "--timeout", type=float, default=30.0, help="seconds without data before a mirror is dropped"
    )
    fetch.set_defaults(handler=cmd_data_fetch)
    verify = data_commands.add_parser(
        "verify", help="check a data set's files against their checksums (default: the shipped MNIST)"
    )
    verify.add_argument("name", nargs="?", default="mnist", help="data set name (default mnist)")
    verify.set_defaults(handler=cmd_data_verify)
    return parser


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Preset (or --config file) first, then every flag the user set on top."""
    overrides = {
        dest: getattr(args, dest) for _, dest, _, _ in TRAIN_FLAGS if getattr(args, dest) is not None
    }
    for switch in ("nesterov", "compile"):
        if getattr(args, switch):
            overrides[switch] = True
    if args.config:
        if args.preset:
            raise ConfigError("give --preset or --config, not both")
        return TrainConfig.from_dict({**TrainConfig.from_json(args.config).to_dict(), **overrides})
    return preset_config(args.preset or "fast", **overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from digitlab.engine.train import train

    if args.resume:
        result = train(None, resume=args.resume, quiet=args.quiet)
    else:
        result = train(train_config_from_args(args), quiet=args.quiet)
    if args.report:
        from digitlab.analysis.report import write_report

        html_path, _ = write_report(result.run_dir)
        if not args.quiet:
            print(f"report:     {html_path}")
    if not args.quiet:
        print(f"run folder: {result.run_dir}")
        print(f"test it:    digitlab test {result.run_dir}")
    return 0


def sweep_grid_from_args(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, list]]:
    """Split each training flag's comma-separated values: single values set the base config."""
    kinds = {dest: (flag, kind) for flag, dest, kind, _ in TRAIN_FLAGS}
    grid, single = {}, {}
    for dest, (flag, kind) in kinds.items():
        text = getattr(args, dest)
        if text is None:
            continue
        try:
            values = [kind(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ConfigError(f"{flag}: cannot read {text!r} as {kind.__name__} values") from None
        if len(values) > 1:
            grid[dest] = values
        elif values:
            single[dest] = values[0]
    for dest, value in single.items():
        setattr(args, dest, value)
    for dest in grid:
        setattr(args, dest, None)
    return train_config_from_args(args), grid


def cmd_sweep(args: argparse.Namespace) -> int:
    from digitlab.engine.sweep import run_sweep, start_sweep

    folder = args.resume or start_sweep(*sweep_grid_from_args(args))
    result = run_sweep(folder, quiet=args.quiet)
    from digitlab.analysis.compare import markdown_table

    print(markdown_table(result.rows))
    print(f"sweep folder: {result.folder} (results.md, results.csv, curves.png, report.html)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from digitlab.analysis.compare import compare_runs, markdown_table, write_tables

    rows = compare_runs(args.runs)
    print(markdown_table(rows))
    md_path, csv_path = write_tables(rows, args.out, "compare")
    print(f"wrote {md_path} and {csv_path}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from digitlab.data import load_dataset
    from digitlab.engine.checkpoint import load_checkpoint
    from digitlab.engine.evaluate import evaluate, evaluate_ensemble

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    checkpoints = [load_checkpoint(path, model_name=args.model) for path in args.checkpoints]
    data = load_dataset(args.data or checkpoints[0].meta.get("dataset", "mnist"), "test")
    for checkpoint in checkpoints:
        checkpoint.check_classes(data)
    if len(checkpoints) == 1:
        checkpoint = checkpoints[0]
        metrics = evaluate(checkpoint.model, data, checkpoint.mean, checkpoint.std, args.batch_size)
        what = str(checkpoint.path)
    else:
        metrics = evaluate_ensemble(checkpoints, data, args.batch_size)
        what = f"ensemble of {len(checkpoints)}"
    if args.json:
        print(json.dumps(metrics.to_dict()))
    else:
        print(
            f"{what}: test accuracy {metrics.accuracy * 100:.2f}%  "
            f"loss {metrics.loss:.4f}  errors {metrics.errors} of {metrics.n}"
        )
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from digitlab.analysis.audit import audit_labels, write_audit
    from digitlab.engine.checkpoint import load_checkpoint

    checkpoints = [load_checkpoint(path) for path in args.checkpoints]
    result = audit_labels(checkpoints, args.split, args.data, args.top)
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


def split_checkpoints_and_images(
    paths: list[Path], need_images: bool = True
) -> tuple[list[Path], list[Path]]:
    """Checkpoints (run folders, .safetensors, .pth) first; images and image folders after."""
    checkpoints, images = [], []
    for path in paths:
        if path.suffix in (".safetensors", ".pth", ".pt") or (
            path.is_dir() and (path / "config.json").exists()
        ):
            checkpoints.append(path)
        elif path.is_dir():
            found = image_files(path)
            if not found:
                raise ConfigError(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            images.extend(found)
        elif not path.exists():
            raise ConfigError(f"{path}: no such file or folder")
        else:
            images.append(path)
    if not checkpoints:
        raise ConfigError("give a checkpoint (run folder or .safetensors) before the images")
    if need_images and not images:
        raise ConfigError("give at least one image or folder of images after the checkpoint")
    return checkpoints, images


def cmd_predict(args: argparse.Namespace) -> int:
    from digitlab.inference import Predictor

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    checkpoint_paths, image_paths = split_checkpoints_and_images(args.paths, need_images=not args.csv)
    predictor = Predictor.from_paths(checkpoint_paths, tta=args.tta, top_k=args.top_k)
    if args.csv:
        return predict_csv(predictor, args.csv, args.out, args.overwrite)
    for path in image_paths:
        if args.multi:
            digits = predictor.predict_number(path, str(path))
            if args.json:
                print(
                    json.dumps(
                        {
                            "image": str(path),
                            "number": "".join(d.digit for d in digits),
                            "digits": [d.to_dict() for d in digits],
                        }
                    )
                )
            else:
                print(
                    f"{path}: {''.join(d.digit for d in digits)}  "
                    f"({', '.join(f'{d.digit} {d.probability:.1%}' for d in digits)})"
                )
            continue
        prediction = predictor.predict(path, str(path))
        if args.json:
            print(json.dumps({"image": str(path), **prediction.to_dict()}))
        else:
            runners_up = ", ".join(f"{d} {p:.1%}" for d, p in prediction.top[1:])
            print(
                f"{path}: {prediction.digit} ({prediction.probability:.1%})"
                + (f"  then {runners_up}" if runners_up else "")
            )
    return 0


def predict_csv(predictor, csv_path: Path, out: Path, overwrite: bool) -> int:
    """Kaggle Digit Recognizer: predict every row of a CSV, write ImageId,Label."""
    from digitlab.data.csvdata import read_csv_images, write_submission

    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: already exists; pass --overwrite or choose another --out")
    images, labels = read_csv_images(csv_path)
    predicted = predictor.probabilities(images).argmax(1)
    write_submission(out, [predictor.classes[i] for i in predicted])
    print(f"wrote {out}: {len(predicted):,} predictions for {csv_path}")
    if labels is not None:
        print(f"accuracy on its labels: {(predicted == labels).mean() * 100:.2f}%")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from digitlab.inference import Predictor
    from digitlab.serve.app import create_app

    app = create_app(Predictor.from_paths(args.checkpoints, tta=args.tta))
    print(f"digitlab: serving on http://{args.host}:{args.port}/  (API docs at /docs; Ctrl-C stops)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from digitlab.inference.export import export_onnx

    report = export_onnx(args.checkpoint, args.out)
    print(f"wrote {report.path} ({report.size_bytes / 1024:.0f} KiB)")
    print(
        f"checked on {report.images} MNIST test images with ONNX Runtime: max |logit difference| "
        f"{report.max_abs_diff:.2e}, same prediction on {report.agreement:.2%}"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from digitlab.analysis.report import write_report

    html_path, md_path = write_report(args.run_dir, mistakes=args.mistakes)
    print(f"wrote {html_path}\nwrote {md_path}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from digitlab.models import build_model, count_parameters, list_models, model_description

    for name in list_models():
        print(f"{name:<10} {count_parameters(build_model(name)):>10,}  {model_description(name)}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from digitlab.analysis.summary import model_summary

    print(model_summary(args.name))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    for name, preset in PRESETS.items():
        settings = " ".join(f"{k}={v}" for k, v in preset.settings.items())
        print(f"{name:<13} {preset.description}\n{'':<13} {settings}")
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    from digitlab.data.info import catalogue

    print(f"{'name':16} {'classes':>7} {'train':>8} {'test':>7}  where")
    for row in catalogue():
        train, test = (f"{row[split]:,}" if row[split] else "?" for split in ("train", "test"))
        print(f"{row['name']:16} {row['classes']:7d} {train:>8} {test:>7}  {row['where']}")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from digitlab.data.info import balance_line, describe

    info = describe(args.source)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key in ("title", "where", "homepage", "license"):
        if info.get(key):
            print(f"{key}: {info[key]}")
    print(f"classes ({len(info['classes'])}): {', '.join(info['classes'])}")
    for split, details in info["splits"].items():
        print(f"{split}: {details['images']:,} images; {balance_line(details['per_class'])}")
        print("  " + "  ".join(f"{name}: {count:,}" for name, count in details["per_class"].items()))
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from digitlab.data import store

    folder = store.fetch(args.name, mirrors=args.mirror, from_dir=args.from_dir, timeout=args.timeout)
    print(f"{args.name}: ready in {folder}")
    return 0


def cmd_data_verify(args: argparse.Namespace) -> int:
    from digitlab.data import store, verify_shipped

    results = verify_shipped() if args.name == "mnist" else store.verify(args.name)
    for name, ok in results:
        print(f"{'ok ' if ok else 'BAD'} {name}")
    if not all(ok for _, ok in results):
        print(f"digitlab: error: {args.name} files do not match their checksums", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except DigitlabError as err:
        print(f"digitlab: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`digitlab ... | head`): not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:  # disk full, read-only folder, permissions: the machine, not a bug
        where = f"{err.filename}: " if err.filename else ""
        print(
            f"digitlab: error: {where}{err.strerror or err}; files written before are intact "
            "(every write goes to a temporary file first)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("digitlab: interrupted", file=sys.stderr)
        return 130
