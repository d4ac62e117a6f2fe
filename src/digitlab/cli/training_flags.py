"""The training flags of `train` and `sweep`, derived from TrainConfig's fields: adding a
setting to TrainConfig adds its flag, with its help, type and choices."""

from __future__ import annotations

import argparse
from dataclasses import Field, fields
from pathlib import Path

from digitlab.config import TrainConfig, preset_config
from digitlab.errors import ConfigError

CONVERTERS = {"int": int, "float": float, "str": str, "bool": bool}


def flag_fields() -> list[Field]:
    """The TrainConfig fields that have a command-line flag."""
    return [f for f in fields(TrainConfig) if f.metadata.get("cli", False)]


def flag_name(config_field: Field) -> str:
    return config_field.metadata["flag"] or "--" + config_field.name.replace("_", "-")


def field_type(config_field: Field) -> type:
    return CONVERTERS[str(config_field.type)]


def add_training_flags(parser: argparse.ArgumentParser, resume_what: str, lists: bool) -> None:
    """--preset, --config, --resume and one flag per TrainConfig field.

    `lists`: every value may be a comma-separated list (a sweep's grid).
    """
    parser.add_argument("--preset", default=None, help="named set-up (see `digitlab presets`; default fast)")
    parser.add_argument("--config", type=Path, help="start from a run's config.json (replays it exactly)")
    parser.add_argument(
        "--resume", type=Path, metavar=resume_what, help="continue an interrupted run or sweep"
    )
    settings = parser.add_argument_group("settings (unset ones keep the preset's value)")
    for config_field in flag_fields():
        kind, text, choices = (
            field_type(config_field),
            config_field.metadata["help"].replace("%", "%%"),  # argparse formats help text with %
            config_field.metadata["choices"],
        )
        flag = flag_name(config_field)
        metavar = flag.removeprefix("--").upper().replace("-", "_")
        if kind is bool:  # the flag turns the setting on, or off where it defaults to on
            action = "store_false" if config_field.default is True else "store_true"
            settings.add_argument(flag, dest=config_field.name, action=action, default=None, help=text)
            continue
        bare = config_field.metadata.get("bare")  # the value of the flag given alone, if it may be
        optional = {"nargs": "?", "const": bare} if bare is not None else {}
        text += f" ({' | '.join(choices)})" if choices else ""
        if lists:
            settings.add_argument(
                flag,
                dest=config_field.name,
                metavar=metavar,
                help=f"{text}; comma-separated for several",
                **optional,
            )
        else:
            settings.add_argument(
                flag,
                dest=config_field.name,
                type=kind,
                choices=choices or None,
                metavar=metavar,
                help=text,
                **optional,
            )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars or epoch lines, only the results at the end"
    )


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Preset (or --config file) first, then every flag the user set on top."""
    overrides = {f.name: getattr(args, f.name) for f in flag_fields() if getattr(args, f.name) is not None}
    if args.config:
        if args.preset:
            raise ConfigError("give --preset or --config, not both")
        return TrainConfig.from_dict({**TrainConfig.from_json(args.config).to_dict(), **overrides})
    return preset_config(args.preset or "fast", **overrides)


def sweep_grid_from_args(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, list]]:
    """Split each flag's comma-separated values: single values set the base config, lists the grid."""
    grid = {}
    for config_field in flag_fields():
        text = getattr(args, config_field.name)
        kind = field_type(config_field)
        if text is None or kind is bool:
            continue
        try:
            values = [kind(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ConfigError(
                f"{flag_name(config_field)}: cannot read {text!r} as {kind.__name__} values"
            ) from None
        if len(values) > 1:
            grid[config_field.name] = values
        setattr(args, config_field.name, values[0] if len(values) == 1 else None)
    return train_config_from_args(args), grid
