"""`digitlab tune`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from shlex import quote

from digitlab.cli.output import add_json_flag, print_json
from digitlab.cli.training_flags import add_training_flags, flag_fields, train_config_from_args
from digitlab.errors import ConfigError


def add_tune(commands) -> None:
    parser = commands.add_parser(
        "tune",
        help="search hyper-parameters with Optuna (resumable, several processes at once)",
        description="Search learning rate, batch size, weight decay, label smoothing (and dropout, "
        "for models that take it) with Optuna's TPE sampler seeded by --seed, pruning trials whose "
        "validation accuracy trails the median. Every training flag given is fixed, not searched. "
        "Each trial trains into OUT/trial-NNN; OUT gets trials.csv and best-config.json (replay it: "
        "digitlab train --config OUT/best-config.json). Run the same command again to continue the "
        "study; several processes may work on one --storage at once.",
    )
    add_training_flags(parser, "RUN_DIR", lists=False)
    search = parser.add_argument_group("search")
    search.add_argument(
        "--trials", type=int, default=20, help="finished (complete or pruned) trials in all (default 20)"
    )
    search.add_argument("--storage", help="Optuna storage URL (default sqlite:///OUT/study.db)")
    search.add_argument(
        "--study-name", default="tune", help="study in the storage (default tune; OUT defaults to runs/NAME)"
    )
    add_json_flag(parser, "no epoch lines; print the folder, trials and best config as one JSON object")
    parser.set_defaults(handler=run_tune)


def fixed_settings(args: argparse.Namespace) -> list[str]:
    """The TrainConfig fields whose flag was given: fixed, not searched."""
    return [f.name for f in flag_fields() if getattr(args, f.name) is not None]


def run_tune(args: argparse.Namespace) -> int:
    import optuna

    from digitlab.engine.tune import tune

    if args.resume:
        raise ConfigError("tune takes no --resume: the same tune command again continues its study")
    if args.run_name is not None:
        raise ConfigError("tune takes no --name: each trial's run folder is OUT/trial-NNN")
    quiet = args.quiet or args.json
    optuna.logging.set_verbosity(optuna.logging.WARNING if quiet else optuna.logging.INFO)
    folder = Path(args.out_dir or Path("runs") / args.study_name)
    try:
        result = tune(
            train_config_from_args(args),
            fixed_settings(args),
            args.trials,
            folder,
            args.storage,
            args.study_name,
            quiet=quiet,
        )
    except KeyboardInterrupt:
        print("tune: the same command continues the study", file=sys.stderr)
        raise
    if args.json:
        best = str(result.best_config) if result.best_config else None
        print_json({"folder": str(folder), "trials": result.rows, "best_config": best})
        return 0
    print(trials_table(result.rows), end="")
    print(f"tune folder: {folder} (trials.csv, trial-NNN run folders)")
    if result.best_config:
        print(f"replay the best: digitlab train --config {quote(str(result.best_config))}")
    return 0


def trials_table(rows: list[dict]) -> str:
    """The trials as a Markdown table, every number with 4 significant digits."""
    columns = [c for c in (rows[0] if rows else {}) if c != "run_dir"]

    def cell(value) -> str:
        return "—" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


COMMANDS = [add_tune]
