"""Commands that list what digitlab has: `models`, `summary`, `presets`, `data ...`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from digitlab.cli.output import add_json_flag, print_json


def add_models(commands) -> None:
    parser = commands.add_parser(
        "models",
        help="list the architectures and the shipped models",
        description="List the architectures and the trained models that ship with digitlab; "
        "`digitlab models NAME` shows a shipped model's card.",
    )
    parser.add_argument("name", nargs="?", help="a shipped model: show its card")
    add_json_flag(parser, "print one JSON object (the card, with NAME)")
    parser.set_defaults(handler=run_models)


def run_models(args: argparse.Namespace) -> int:
    from digitlab.engine.pretrained import model_card, model_cards
    from digitlab.models import build_model, count_parameters, list_models, model_description

    if args.name:
        card = model_card(args.name)
        if args.json:
            print_json(card.to_dict())
        else:
            print(card.text())
        return 0
    if args.json:
        architectures = [
            {
                "name": name,
                "parameters": count_parameters(build_model(name)),
                "description": model_description(name),
            }
            for name in list_models()
        ]
        print_json({"architectures": architectures, "shipped": [c.to_dict() for c in model_cards().values()]})
        return 0
    print("architectures (digitlab train --model NAME):")
    names = list_models()
    width = max(map(len, names))
    for name in names:
        print(f"  {name:<{width}} {count_parameters(build_model(name)):>10,}  {model_description(name)}")
    print("shipped models (use the name as a checkpoint; `digitlab models NAME` shows the card):")
    cards = model_cards().values()
    width = max((len(card.name) for card in cards), default=0)
    for card in cards:
        accuracy = card.mnist_test["accuracy"] * 100
        kind = f"{len(card.members)} models" if card.members else card.architecture
        print(f"  {card.name:<{width}} {kind:<10} MNIST test {accuracy:.2f} %  {card.summary}")
    return 0


def add_summary(commands) -> None:
    parser = commands.add_parser("summary", help="layer table of one architecture")
    parser.add_argument("name", help="architecture name")
    add_json_flag(parser, "print one JSON object: parameters and the layers")
    parser.set_defaults(handler=run_summary)


def run_summary(args: argparse.Namespace) -> int:
    from digitlab.analysis.summary import model_summary

    if args.json:
        print_json(summary_dict(args.name))
        return 0
    print(model_summary(args.name))
    return 0


def summary_dict(name: str) -> dict:
    """The layer table as data: name, parameters, and per layer its depth, type, shape, parameters."""
    from torchinfo import summary

    from digitlab.models import build_model

    stats = summary(build_model(name), input_size=(1, 1, 28, 28), depth=3, verbose=0, device="cpu")
    layers = [
        {
            "depth": layer.depth,
            "layer": layer.class_name,
            "name": layer.var_name,
            "output_shape": layer.output_size,
            "parameters": layer.num_params,
        }
        for layer in stats.summary_list
    ]
    return {
        "name": name,
        "parameters": stats.total_params,
        "trainable_parameters": stats.trainable_params,
        "layers": layers,
    }


def add_presets(commands) -> None:
    parser = commands.add_parser("presets", help="list the named training set-ups")
    add_json_flag(parser, "print one JSON object: name -> description and settings")
    parser.set_defaults(handler=run_presets)


def run_presets(args: argparse.Namespace) -> int:
    from digitlab.config import PRESETS

    if args.json:
        print_json(
            {name: {"description": p.description, "settings": p.settings} for name, p in PRESETS.items()}
        )
        return 0
    for name, preset in PRESETS.items():
        settings = " ".join(f"{k}={v}" for k, v in preset.settings.items())
        print(f"{name:<15} {preset.description}\n{'':<15} {settings}")
    return 0


def add_data(commands) -> None:
    parser = commands.add_parser("data", help="data set tools")
    actions = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the named data sets and where they are")
    add_json_flag(listing, "print one JSON object: the data sets")
    listing.set_defaults(handler=run_data_list)

    info = actions.add_parser("info", help="sizes, classes and class balance of a data set, file or folder")
    info.add_argument("source", help="data set name, .npz/.csv file or folder")
    add_json_flag(info, "print one JSON object")
    info.set_defaults(handler=run_data_info)

    fetch = actions.add_parser(
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
    add_json_flag(fetch, "print one JSON object: the data set and its folder")
    fetch.set_defaults(handler=run_data_fetch)

    verify = actions.add_parser(
        "verify", help="check a data set's files against their checksums (default: the shipped MNIST)"
    )
    verify.add_argument("name", nargs="?", default="mnist", help="data set name (default mnist)")
    add_json_flag(verify, "print one JSON object: each file and whether it matches")
    verify.set_defaults(handler=run_data_verify)


def run_data_list(args: argparse.Namespace) -> int:
    from digitlab.data.info import catalogue

    if args.json:
        print_json({"datasets": catalogue()})
        return 0
    print(f"{'name':16} {'classes':>7} {'train':>8} {'test':>7}  where")
    for row in catalogue():
        train, test = (f"{row[split]:,}" if row[split] else "?" for split in ("train", "test"))
        print(f"{row['name']:16} {row['classes']:7d} {train:>8} {test:>7}  {row['where']}")
    return 0


def run_data_info(args: argparse.Namespace) -> int:
    from digitlab.data.info import balance_line, describe

    info = describe(args.source)
    if args.json:
        print_json(info)
        return 0
    for key in ("title", "where", "homepage", "license"):
        if info.get(key):
            print(f"{key}: {info[key]}")
    print(f"classes ({len(info['classes'])}): {', '.join(info['classes'])}")
    for split, details in info["splits"].items():
        if "per_class" not in details:  # not downloaded: the catalogue's sizes only
            print(f"{split}: {details['images']:,} images")
            continue
        print(f"{split}: {details['images']:,} images; {balance_line(details['per_class'])}")
        print("  " + "  ".join(f"{name}: {count:,}" for name, count in details["per_class"].items()))
    return 0


def run_data_fetch(args: argparse.Namespace) -> int:
    from digitlab.data import store

    folder = store.fetch(args.name, mirrors=args.mirror, from_dir=args.from_dir, timeout=args.timeout)
    if args.json:
        print_json({"name": args.name, "folder": str(folder)})
        return 0
    print(f"{args.name}: ready in {folder}")
    return 0


def run_data_verify(args: argparse.Namespace) -> int:
    from digitlab.data import store, verify_shipped

    results = verify_shipped() if args.name == "mnist" else store.verify(args.name)
    if args.json:
        files = [{"file": name, "ok": ok} for name, ok in results]
        print_json({"name": args.name, "ok": all(ok for _, ok in results), "files": files})
    else:
        for name, ok in results:
            print(f"{'ok ' if ok else 'BAD'} {name}")
    if not all(ok for _, ok in results):
        print(f"digitlab: error: {args.name} files do not match their checksums", file=sys.stderr)
        return 2
    return 0


COMMANDS = [add_models, add_summary, add_presets, add_data]
