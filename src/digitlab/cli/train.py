"""`digitlab train` and `digitlab sweep`."""

from __future__ import annotations

import argparse
from shlex import quote

from digitlab.cli.output import add_json_flag, print_json, step_progress
from digitlab.cli.training_flags import (
    add_training_flags,
    flag_fields,
    flag_name,
    sweep_grid_from_args,
    train_config_from_args,
)
from digitlab.errors import ConfigError


def add_train(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="train a model into a new run folder",
        description="Train a model. Start from a --preset (default: fast) and override any "
        "setting with flags, replay a run with --config, or continue one with --resume.",
    )
    add_training_flags(parser, "RUN_DIR", lists=False)
    parser.add_argument("--report", action="store_true", help="write report.html/report.md at the end")
    add_json_flag(parser, "no epoch lines; print the result (result.json and run_dir) as one JSON object")
    parser.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from digitlab.engine.distributed import current_world
    from digitlab.engine.train import train

    quiet = args.quiet or args.json
    if args.resume:
        check_resume_flags(args)
        result = train(None, resume=args.resume, quiet=quiet, epochs=args.epochs)
    else:
        result = train(train_config_from_args(args), quiet=quiet)
    if not current_world().is_main:  # under torchrun, rank 0 alone reports
        return 0
    html_path = None
    if args.report:
        from digitlab.analysis.report import REPORT_STEPS, write_report

        with step_progress(REPORT_STEPS, args.json or quiet, desc="report") as on_step:
            html_path, _ = write_report(result.run_dir, on_step=on_step)
    if args.json:
        values = {**result.to_dict(), "run_dir": str(result.run_dir)}
        if html_path:
            values["report"] = str(html_path)
        print_json(values)
        return 0
    if args.quiet:  # one line: what a script needs to find the run and its figure
        test = f"test accuracy {result.test.accuracy * 100:.2f}%" if result.test else "test not measured"
        print(f"{result.run_dir}: {test}")
        return 0
    if html_path:
        print(f"report:     {html_path}")
    print(f"run folder: {result.run_dir}")
    print(f"test it:    digitlab test {quote(str(result.run_dir))}")
    return 0


def check_resume_flags(args: argparse.Namespace) -> None:
    """--resume continues a run with its own settings; only --epochs may extend it."""
    from digitlab.engine.runs import Run

    Run.open(args.resume)  # a missing run folder is the first thing to say
    given = [flag_name(f) for f in flag_fields() if f.name != "epochs" and getattr(args, f.name) is not None]
    given += [flag for flag in ("--preset", "--config") if getattr(args, flag[2:]) is not None]
    if given:
        raise ConfigError(
            f"--resume continues {args.resume} with its own settings; {', '.join(given)} cannot change "
            f"them (only --epochs can extend it). For a new run: digitlab train --config "
            f"{args.resume / 'config.json'} {given[0]} ..."
        )


def add_sweep(commands) -> None:
    parser = commands.add_parser(
        "sweep",
        help="train a grid of settings and tabulate the results",
        description="Train one run per point of a grid: give several comma-separated values to any "
        "training flag (e.g. --lr 1e-3,5e-4,1e-4 --batch-size 64,128). Writes a sweep folder with "
        "the results table (Markdown, CSV), an overlay of all curves and a report. "
        "--resume SWEEP_DIR continues an interrupted sweep.",
    )
    add_training_flags(parser, "SWEEP_DIR", lists=True)
    add_json_flag(parser, "no epoch lines; print the folder and every run's results as one JSON object")
    parser.set_defaults(handler=run_sweep)


def run_sweep(args: argparse.Namespace) -> int:
    from digitlab.analysis.compare import markdown_table
    from digitlab.analysis.sweep_report import write_sweep_report
    from digitlab.engine import sweep

    folder = args.resume or sweep.start_sweep(*sweep_grid_from_args(args))
    rows = write_sweep_report(sweep.run_sweep(folder, quiet=args.quiet or args.json))
    if args.json:
        print_json({"folder": str(folder), "runs": rows})
        return 0
    print(markdown_table(rows), end="")
    print(f"sweep folder: {folder} (results.md, results.csv, curves.png, report.html)")
    return 0


COMMANDS = [add_train, add_sweep]
