"""The `digitlab` command line: parse arguments, call the library, print."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from digitlab.config import PRESETS, TrainConfig, preset_config
from digitlab.errors import ConfigError, DigitlabError

# Training flags: (flag, TrainConfig field, type, help). Unset flags leave the preset's value.
TRAIN_FLAGS = [
    ("--model", "model", str, "architecture name (see `digitlab models`)"),
    ("--data", "data", str, "'mnist' (shipped) or a folder of idx files / seed-002 tensor files"),
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
    train.add_argument("--preset", default=None, help="named set-up (see `digitlab presets`; default fast)")
    train.add_argument("--config", type=Path, help="replay a run: its config.json")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run")
    for flag, dest, kind, text in TRAIN_FLAGS:
        train.add_argument(flag, dest=dest, type=kind, default=None, help=text)
    train.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum for SGD")
    train.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    train.set_defaults(handler=cmd_train)

    test = commands.add_parser(
        "test",
        help="measure a checkpoint on a test set",
        description="Test loss, accuracy and error count of a checkpoint on the test split.",
    )
    test.add_argument("checkpoint", type=Path, help="run folder, best.safetensors, or a seed .pth")
    test.add_argument("--data", default="mnist", help="'mnist' or a data folder (default mnist)")
    test.add_argument("--model", help="architecture of a .pth state dict")
    test.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size")
    test.add_argument("--json", action="store_true", help="print one JSON object")
    test.set_defaults(handler=cmd_test)

    models = commands.add_parser("models", help="list the architectures")
    models.set_defaults(handler=cmd_models)

    summary = commands.add_parser("summary", help="layer table of one architecture")
    summary.add_argument("name", help="architecture name")
    summary.set_defaults(handler=cmd_summary)

    presets = commands.add_parser("presets", help="list the named training set-ups")
    presets.set_defaults(handler=cmd_presets)

    data = commands.add_parser("data", help="data set tools")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    verify = data_commands.add_parser("verify", help="check the shipped MNIST files against SHA256SUMS")
    verify.set_defaults(handler=cmd_data_verify)
    return parser


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Preset (or --config file) first, then every flag the user set on top."""
    overrides = {
        dest: getattr(args, dest) for _, dest, _, _ in TRAIN_FLAGS if getattr(args, dest) is not None
    }
    if args.nesterov:
        overrides["nesterov"] = True
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
    if result.run_dir and not args.quiet:
        print(f"run folder: {result.run_dir}")
        print(f"test it:    digitlab test {result.run_dir}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from digitlab.data import load_dataset
    from digitlab.engine.checkpoint import load_checkpoint
    from digitlab.engine.evaluate import evaluate

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    checkpoint = load_checkpoint(args.checkpoint, model_name=args.model)
    data = load_dataset(args.data, "test")
    metrics = evaluate(checkpoint.model, data, checkpoint.mean, checkpoint.std, args.batch_size)
    if args.json:
        print(json.dumps(metrics.to_dict()))
    else:
        print(
            f"{checkpoint.path}: test accuracy {metrics.accuracy * 100:.2f}%  "
            f"loss {metrics.loss:.4f}  errors {metrics.errors} of {metrics.n}"
        )
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


def cmd_data_verify(args: argparse.Namespace) -> int:
    from digitlab.data import verify_shipped

    results = verify_shipped()
    for name, ok in results:
        print(f"{'ok ' if ok else 'BAD'} {name}")
    if not all(ok for _, ok in results):
        print("digitlab: error: shipped MNIST files do not match SHA256SUMS", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except DigitlabError as err:
        print(f"digitlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("digitlab: interrupted", file=sys.stderr)
        return 130
