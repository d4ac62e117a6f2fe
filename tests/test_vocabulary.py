"""One command-line vocabulary: --json on every command that prints results, --out that never
overwrites without --overwrite, --top-k for "how many", and a compare table of the few columns
a reader compares."""

import argparse
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitlab.cli import build_parser, main


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def command_parser(*names: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in names:
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = subparsers.choices[name]
    return parser


def one_json_object(out: str) -> dict:
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    value = json.loads(lines[0])
    assert isinstance(value, dict)
    return value


@pytest.fixture
def run_copy(trained_checkpoint, tmp_path) -> Path:
    """The trained run, copied: commands that write into a run folder leave the shared one alone."""
    return Path(shutil.copytree(trained_checkpoint, tmp_path / "run"))


def digit_png(path: Path, mnist_test, index: int = 0) -> Path:
    Image.fromarray(mnist_test.images[index].numpy().astype(np.uint8)).save(path)
    return path


RESULT_COMMANDS = [
    ("train",),
    ("sweep",),
    ("tune",),
    ("test",),
    ("compare",),
    ("report",),
    ("audit",),
    ("explain",),
    ("predict",),
    ("export",),
    ("models",),
    ("summary",),
    ("presets",),
    ("data", "list"),
    ("data", "info"),
    ("data", "fetch"),
    ("data", "verify"),
]


@pytest.mark.parametrize("names", RESULT_COMMANDS, ids=" ".join)
def test_every_result_printing_command_has_json(names):
    flags = {flag for action in command_parser(*names)._actions for flag in action.option_strings}
    assert "--json" in flags


@pytest.mark.parametrize(
    "args, keys",
    [
        (["models"], {"architectures", "shipped"}),
        (["presets"], {"fast", "report-004"}),
        (["summary", "digit"], {"name", "parameters", "layers"}),
        (["data", "list"], {"datasets"}),
        (["data", "info", "mnist"], {"classes", "splits"}),
        (["data", "verify"], {"name", "ok", "files"}),
    ],
)
def test_listing_commands_print_one_json_object(capsys, args, keys):
    code, out, _ = run_cli(capsys, *args, "--json")
    assert code == 0
    value = one_json_object(out)
    assert keys <= set(value)


def test_listing_json_carries_the_human_numbers(capsys):
    value = one_json_object(run_cli(capsys, "summary", "digit", "--json")[1])
    assert value["parameters"] == 1_007_590
    models = one_json_object(run_cli(capsys, "models", "--json")[1])
    assert {"name": "bncnn"}.items() <= next(
        a for a in models["architectures"] if a["name"] == "bncnn"
    ).items()
    verify = one_json_object(run_cli(capsys, "data", "verify", "--json")[1])
    assert verify["ok"] is True and len(verify["files"]) == 4


def test_compare_json_has_every_column(trained_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "compare", trained_checkpoint, "--json")
    assert code == 0
    value = one_json_object(out)
    (row,) = value["runs"]
    assert row["best_test_acc"] == 0.9649 and "last_val_loss" in row and "settings" in row
    assert value["wrote"] == [] and list(tmp_path.iterdir()) == []


@pytest.mark.slow  # builds a whole report, or runs a model over all 10,000 test digits
def test_report_json_prints_the_written_paths(run_copy, monkeypatch, capsys):
    from digitlab.analysis import report

    real = report.write_report
    monkeypatch.setattr(
        report, "write_report", lambda run_dir, mistakes, **kw: real(run_dir, mistakes, embedded=200, **kw)
    )
    code, out, _ = run_cli(capsys, "report", run_copy, "--json", "--top-k", "5")
    assert code == 0
    value = one_json_object(out)
    assert Path(value["html"]).exists() and Path(value["md"]).exists()


def test_audit_json_and_never_overwrites(trained_checkpoint, small_idx_dir, tmp_path, capsys):
    out_dir = tmp_path / "audit"
    args = ["audit", trained_checkpoint, "--data", small_idx_dir, "--out", out_dir, "--top-k", "4"]
    code, out, _ = run_cli(capsys, *args, "--json")
    assert code == 0
    value = one_json_object(out)
    assert value["scored"] == 200 and len(value["rows"]) == 4
    assert all(Path(path).exists() for path in value["wrote"])
    before = {path: path.read_bytes() for path in out_dir.iterdir()}
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and out == "" and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert {path: path.read_bytes() for path in out_dir.iterdir()} == before
    code, out, _ = run_cli(capsys, *args, "--overwrite")
    assert code == 0 and "wrote" in out


def test_explain_json_is_one_object_per_image(trained_checkpoint, mnist_test, tmp_path, capsys):
    images = [digit_png(tmp_path / f"d{i}.png", mnist_test, i) for i in range(2)]
    code, out, _ = run_cli(
        capsys,
        "explain",
        trained_checkpoint,
        *images,
        "--out",
        tmp_path / "maps",
        "--method",
        "saliency",
        "--json",
    )
    assert code == 0
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert [Path(line["wrote"]).exists() for line in lines] == [True, True]
    assert all(len(line["classes"]) == 2 for line in lines)


def test_predict_and_test_json(trained_checkpoint, mnist_test, tmp_path, capsys):
    image = digit_png(tmp_path / "seven.png", mnist_test, 0)
    code, out, _ = run_cli(capsys, "predict", trained_checkpoint, image, "--json")
    assert code == 0 and one_json_object(out)["image"] == str(image)


@pytest.mark.slow  # builds a whole report, or exports and checks a model with ONNX Runtime
def test_export_json(trained_checkpoint, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    code, out, _ = run_cli(capsys, "export", trained_checkpoint, "--out", tmp_path / "m.onnx", "--json")
    assert code == 0
    value = one_json_object(out)
    assert Path(value["path"]).exists() and value["agreement"] > 0.99


def test_compare_prints_only_without_out(trained_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "compare", trained_checkpoint)
    assert code == 0 and "| run |" in out and "wrote" not in out
    assert list(tmp_path.iterdir()) == []


def test_compare_writes_with_out_and_never_overwrites(trained_checkpoint, tmp_path, capsys):
    out_dir = tmp_path / "tables"
    code, out, _ = run_cli(capsys, "compare", trained_checkpoint, "--out", out_dir)
    assert code == 0 and "wrote" in out
    md, csv = out_dir / "compare.md", out_dir / "compare.csv"
    assert md.exists() and csv.exists()
    md.write_text("mine")
    csv_bytes = csv.read_bytes()
    code, out, err = run_cli(capsys, "compare", trained_checkpoint, "--out", out_dir)
    assert code == 2 and out == "" and "already exists" in err and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1
    assert md.read_text() == "mine" and csv.read_bytes() == csv_bytes
    code, _, _ = run_cli(capsys, "compare", trained_checkpoint, "--out", out_dir, "--overwrite")
    assert code == 0 and md.read_text() != "mine"


def test_compare_table_has_only_the_compared_columns(trained_checkpoint, tmp_path, capsys):
    other = Path(shutil.copytree(trained_checkpoint, tmp_path / "other"))
    config = json.loads((other / "config.json").read_text())
    config["lr"] = config["lr"] * 2
    (other / "config.json").write_text(json.dumps(config))

    code, out, _ = run_cli(capsys, "compare", trained_checkpoint)
    header = [cell.strip() for cell in out.splitlines()[0].strip("|").split("|")]
    assert header == ["run", "model", "preset", "best_val_acc", "best_test_acc", "time_s"]
    cells = [cell.strip() for cell in out.splitlines()[2].strip("|").split("|")]
    assert cells[3:] == ["97.25 %", "96.49 %", "0.5"]

    code, out, _ = run_cli(capsys, "compare", trained_checkpoint, other, "--out", tmp_path / "t")
    header = [cell.strip() for cell in out.splitlines()[0].strip("|").split("|")]
    assert header == ["run", "model", "preset", "lr", "best_val_acc", "best_test_acc", "time_s"]
    csv_header = (tmp_path / "t" / "compare.csv").read_text().splitlines()[0].split(",")
    assert {"last_test_loss", "best_epoch", "train_seconds", "preset"} <= set(csv_header)


def test_deprecated_aliases_still_work_and_are_hidden(capsys):
    audit = command_parser("audit")
    assert audit.parse_args(["run", "--top", "7"]).top_k == 7
    assert audit.parse_args(["run", "--top-k", "7"]).top_k == 7
    assert audit.parse_args(["run"]).top_k == 25
    report = command_parser("report")
    assert report.parse_args(["run", "--mistakes", "3"]).top_k == 3
    assert report.parse_args(["run"]).top_k == 25
    for parser, old in ((audit, "--top "), (report, "--mistakes")):
        text = parser.format_help()
        assert "--top-k" in text and old not in text


def test_deprecated_alias_runs_the_command(trained_checkpoint, small_idx_dir, tmp_path, capsys):
    code, out, _ = run_cli(
        capsys,
        "audit",
        trained_checkpoint,
        "--data",
        small_idx_dir,
        "--out",
        tmp_path,
        "--top",
        "3",
        "--json",
    )
    assert code == 0 and len(one_json_object(out)["rows"]) == 3


@pytest.mark.parametrize("command", ["train", "sweep", "tune"])
def test_training_commands_json_means_quiet(command):
    args = command_parser(command).parse_args(["--json"])
    assert args.json is True


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_step_progress_shows_each_step_on_a_terminal_and_nothing_with_json(monkeypatch):
    from digitlab.cli.output import step_progress

    for as_json, shown in ((False, True), (True, False)):
        terminal = Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        with step_progress(["data", "figures", "writing"], as_json, desc="report") as start:
            for step in ("data", "figures", "writing"):
                start(step)
        drawn = terminal.getvalue()
        assert ("report" in drawn and "2/3" in drawn and "writing" in drawn) == shown, drawn
