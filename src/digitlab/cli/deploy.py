"""Commands that put trained models to use: `predict`, `serve`, `export`."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from shlex import quote
from typing import TYPE_CHECKING

from digitlab.cli.output import add_json_flag, print_json
from digitlab.cli.output import progress as output_progress
from digitlab.engine.pretrained import DEFAULT_MODEL, shipped_weights
from digitlab.errors import ConfigError, DigitlabError
from digitlab.fileio import atomic_write, refuse_existing
from digitlab.serve.settings import Batching

if TYPE_CHECKING:  # the model-side imports wait until a command needs them (`train` never does)
    from digitlab.inference.batch import BatchResult

DEFAULT_WORKERS = min(os.cpu_count() or 1, 4)  # digitlab serve's processes
SUBMISSION = Path("submission.csv")  # predict --csv's default --out
RESULT_COLUMNS = ["image", "digit", "probability", "verdict", "error"]


def add_predict(commands) -> None:
    parser = commands.add_parser(
        "predict",
        help="read digits in users' images",
        description="Predict the digit in each image (any format Pillow reads; any size, colour or "
        "polarity). Give one or more checkpoints (run folders or .safetensors; several are "
        "ensembled) followed by images or folders of images.",
    )
    parser.add_argument(
        "paths",
        type=Path,
        nargs="*",
        metavar="CHECKPOINT|IMAGE|FOLDER",
        help=f"checkpoints (run folders, .safetensors, shipped models; default {DEFAULT_MODEL}), then images",
    )
    parser.add_argument("--top-k", type=int, default=3, help="how many classes to list per image")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--multi", action="store_true", help="images hold several digits: read them all")
    parser.add_argument("--tta", action="store_true", help="average over one-pixel shifts")
    parser.add_argument(
        "--workers", type=int, default=0, help="processes decoding images (default: one per core)"
    )
    parser.add_argument(
        "--csv",
        type=Path,
        help="predict every row of a Kaggle-layout CSV (pixel0..pixel783) instead of images",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="a CSV file to write: for images, one row per image (image,digit,probability,verdict,error); "
        f"with --csv, Kaggle's ImageId,Label (default {SUBMISSION})",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.set_defaults(handler=run_predict)


def split_checkpoints_and_images(
    paths: list[Path], need_images: bool = True
) -> tuple[list[Path], list[Path]]:
    """Checkpoints (run folders, .safetensors, .pth, shipped models' names) first; images and
    folders of images after. No checkpoint: the shipped `default` model."""
    from digitlab.data.imagefolder import iter_image_files

    checkpoints, images = [], []
    for path in paths:
        if path.suffix in (".safetensors", ".pth", ".pt") or (
            path.is_dir() and (path / "config.json").exists()
        ):
            checkpoints.append(path)
        elif not path.exists() and shipped_weights(str(path)):
            checkpoints.append(path)  # a shipped model's name
        elif path.is_dir():
            if next(iter_image_files(path), None) is None:
                raise ConfigError(no_images_message(path))
            images.append(path)
        elif not path.exists():
            raise ConfigError(f"{path}: no such file or folder")
        else:
            images.append(path)
    if not checkpoints and shipped_weights(DEFAULT_MODEL):
        checkpoints.append(Path(DEFAULT_MODEL))
    if not checkpoints:
        raise ConfigError("give a checkpoint (run folder, .safetensors or a shipped model) before the images")
    if need_images and not images:
        raise ConfigError("give at least one image or folder of images after the checkpoint")
    return checkpoints, images


def no_images_message(folder: Path) -> str:
    from digitlab.data.imagefolder import IMAGE_SUFFIXES, is_image_folder

    suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
    message = f"{folder}: folder holds no images ({suffixes}); sub-folders are not searched"
    if is_image_folder(folder):
        message += (
            f"; to measure a model on its class folders: digitlab test CHECKPOINT --data {quote(str(folder))}"
        )
    return message


def each_image(sources: list[Path]) -> Iterator[Path]:
    """The image files among `sources`, folders streamed (never listed whole)."""
    from digitlab.data.imagefolder import iter_image_files

    for source in sources:
        yield from iter_image_files(source) if source.is_dir() else [source]


def run_predict(args: argparse.Namespace) -> int:
    """Exit status 0 if every image was read, 1 if some failed (each failure gets its line)."""
    from digitlab.inference import Predictor
    from digitlab.inference.batch import predict_files

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    checkpoint_paths, sources = split_checkpoints_and_images(args.paths, need_images=not args.csv)
    out = args.out or (SUBMISSION if args.csv else None)
    refuse_existing([out] if out else [], args.overwrite)
    predictor = Predictor.from_paths(checkpoint_paths, tta=args.tta, top_k=args.top_k)
    if args.csv:
        return predict_csv(predictor, args.csv, out)
    if args.multi:
        results = (read_number(predictor, path) for path in each_image(sources))
    else:
        results = predict_files(predictor, each_image(sources), workers=args.workers)
    if out is None:
        return report_results(results, args.json)
    status = []

    def write_rows(tmp: Path) -> None:  # rows stream into the temporary; it replaces `out` at the end
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            status.append(report_results(results, args.json, csv.writer(handle)))

    atomic_write(out, write_rows)
    print(f"wrote {out}", file=sys.stderr)
    return status[0]


def report_results(results: Iterator[BatchResult], as_json: bool, rows=None) -> int:
    """Print each result as it comes (and write its CSV row to `rows`, a csv.writer);
    1 if some image failed, else 0."""
    failed = 0
    if rows is not None:
        rows.writerow(RESULT_COLUMNS)
    progress = output_progress(results, as_json, unit="image")
    for result in progress:
        failed += result.error is not None
        progress.clear()
        print_result(result, as_json)
        if rows is not None:
            rows.writerow(result_row(result))
    return 1 if failed else 0


def result_row(result: BatchResult) -> list:
    """image, digit (a number's digits joined), probability (a number's least sure digit), verdict,
    error: one CSV row."""
    if result.error:
        return [result.path, "", "", "", result.error]
    readings = result.number if result.number is not None else [result.prediction]
    least = min(readings, key=lambda p: p.probability)
    verdicts = {p.verdict for p in readings}
    verdict = next(v for v in ("not-a-digit", "unsure", "digit") if v in verdicts)
    return [result.path, "".join(p.label for p in readings), f"{least.probability:.4f}", verdict, ""]


def read_number(predictor, path: Path) -> BatchResult:
    from digitlab.inference.batch import BatchResult

    try:
        return BatchResult(str(path), number=predictor.predict_number(path, str(path)))
    except DigitlabError as err:
        return BatchResult(str(path), error=str(err))


def print_result(result: BatchResult, as_json: bool) -> None:
    if result.error:
        if as_json:
            print(json.dumps({"image": result.path, "error": result.error}))
        else:
            print(f"digitlab: error: {result.error}", file=sys.stderr)
    elif result.number is not None:
        print_number(result.path, result.number, as_json)
    else:
        print_prediction(result.path, result.prediction, as_json)


def print_prediction(path: str, prediction, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"image": str(path), **prediction.to_dict()}))
        return
    if prediction.verdict == "not-a-digit":
        likeliest = (
            f" (most like {prediction.label} {prediction.probability:.1%})" if prediction.label else ""
        )
        print(f"{path}: not a digit{likeliest}")
        return
    runners_up = ", ".join(f"{label} {p:.1%}" for label, p in prediction.top[1:])
    unsure = "unsure: " if prediction.verdict == "unsure" else ""
    print(
        f"{path}: {unsure}{prediction.label} ({prediction.probability:.1%})"
        + (f"  then {runners_up}" if runners_up else "")
    )


def print_number(path: str, digits: list, as_json: bool) -> None:
    number = "".join(d.label for d in digits)
    if as_json:
        print(json.dumps({"image": str(path), "number": number, "digits": [d.to_dict() for d in digits]}))
    else:
        readings = ", ".join(
            f"{d.label} {d.probability:.1%}{'' if d.verdict == 'digit' else ' ' + d.verdict}" for d in digits
        )
        print(f"{path}: {number}  ({readings})")


def predict_csv(predictor, csv_path: Path, out: Path) -> int:
    """Kaggle Digit Recognizer: predict every row of a CSV, write ImageId,Label."""
    from digitlab.data.csvdata import read_csv_images, write_submission

    images, labels = read_csv_images(csv_path)
    predicted = predictor.probabilities(images).argmax(1)
    write_submission(out, [predictor.classes[i] for i in predicted])
    print(f"wrote {out}: {len(predicted):,} predictions for {csv_path}")
    if labels is not None:
        print(f"accuracy on its labels: {(predicted == labels).mean() * 100:.2f}%")
    return 0


def add_serve(commands) -> None:
    parser = commands.add_parser(
        "serve",
        help="web page to draw digits on, and a JSON API",
        description="Serve a page to draw (or upload) a digit and see the model read it live, and "
        "the API: POST /api/predict, POST /api/explain, GET /api/health, GET /api/model, and "
        "Prometheus figures at GET /metrics; OpenAPI docs at /docs.",
    )
    parser.add_argument(
        "checkpoints",
        type=Path,
        nargs="*",
        help=f"run folders, .safetensors or shipped models (ensembled; default: {DEFAULT_MODEL})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=8000, help="port, 1-65535 (default 8000)")
    parser.add_argument("--tta", action="store_true", help="average over one-pixel shifts")
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help=f"server processes (default: one per core, at most 4; here {DEFAULT_WORKERS}): preprocessing is "
        "Python work that one process cannot spread over cores; torch's threads are shared out",
    )
    tuning = parser.add_argument_group("micro-batching: concurrent requests share model batches")
    defaults = Batching()
    tuning.add_argument(
        "--max-batch",
        type=int,
        default=defaults.max_batch,
        help="images per model batch (default %(default)s)",
    )
    tuning.add_argument(
        "--max-wait-ms",
        type=float,
        default=defaults.max_wait_ms,
        help="how long a request waits for others (default %(default)s)",
    )
    tuning.add_argument(
        "--max-pending",
        type=int,
        default=defaults.max_pending,
        help="requests in progress at once per worker; more are answered 503 with Retry-After "
        "(default %(default)s)",
    )
    parser.set_defaults(handler=run_serve)


def port_number(text: str) -> int:
    """argparse type of --port: a TCP port number."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def run_serve(args: argparse.Namespace) -> int:
    from digitlab.serve.server import serve, torch_threads

    for flag, value in (
        ("--workers", args.workers),
        ("--max-batch", args.max_batch),
        ("--max-pending", args.max_pending),
    ):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    if args.max_wait_ms < 0:
        raise ConfigError(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}")
    batching = Batching(args.max_batch, args.max_wait_ms, args.max_pending, torch_threads(args.workers))
    checkpoints = [str(path) for path in args.checkpoints] or [DEFAULT_MODEL]

    def announce() -> None:
        host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address
        url = f"http://{host}:{args.port}/"
        print(f"digitlab: serving on {url}  (API docs at /docs; Ctrl-C stops)", flush=True)

    serve(checkpoints, args.tta, args.host, args.port, args.workers, batching, on_ready=announce)
    return 0


def add_export(commands) -> None:
    parser = commands.add_parser(
        "export",
        help="export a checkpoint to ONNX",
        description="Write an ONNX model (dynamic batch axis; input: (N, 1, 28, 28) pixels in [0, 1], "
        "standardisation inside the graph) and check it with ONNX Runtime against PyTorch on real "
        "test images. Needs digitlab[export].",
    )
    parser.add_argument("checkpoint", type=Path, help="run folder, .safetensors or shipped model")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="the .onnx file to write (default: the checkpoint's name with .onnx, beside it)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing .onnx file")
    add_json_flag(parser, "print one JSON object: the file, its size and the check's numbers")
    parser.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from digitlab.inference.export import export_onnx

    report = export_onnx(args.checkpoint, args.out, overwrite=args.overwrite)
    if args.json:
        print_json(
            {
                "path": str(report.path),
                "size_bytes": report.size_bytes,
                "images": report.images,
                "max_abs_diff": float(report.max_abs_diff),
                "agreement": float(report.agreement),
            }
        )
        return 0
    print(f"wrote {report.path} ({report.size_bytes / 1024:.0f} KiB)")
    print(
        f"checked on {report.images} MNIST test images with ONNX Runtime: max |logit difference| "
        f"{report.max_abs_diff:.2e}, same prediction on {report.agreement:.2%}"
    )
    return 0


COMMANDS = [add_predict, add_serve, add_export]
