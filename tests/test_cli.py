import gc
import json
import subprocess
import sys

import pytest
import torch

from digitlab.cli import main
from digitlab.config import PRESETS, preset_config
from digitlab.engine.train import validate_config
from digitlab.models import build_model, list_models


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


QUICK = ["--train-limit", "2000", "--epochs", "1", "--batch-size", "64", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    assert main(["train", "--out", str(out), "--name", "r", *QUICK]) == 0
    return out / "r"


@pytest.mark.slow
def test_train_then_test_json(trained_run, capsys):
    code, out, _ = run_cli(capsys, "test", trained_run, "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"accuracy", "loss", "errors", "n"}
    recorded = json.loads((trained_run / "result.json").read_text())["test"]
    assert result["accuracy"] == recorded["accuracy"] and result["errors"] == recorded["errors"]
    assert result["loss"] == pytest.approx(recorded["loss"], rel=1e-5)
    code, out, _ = run_cli(capsys, "test", trained_run / "best.safetensors")
    assert code == 0 and "test accuracy" in out and "errors" in out


@pytest.mark.slow
def test_config_replays_a_run_exactly(trained_run, tmp_path, capsys):
    code, out, _ = run_cli(
        capsys,
        "train",
        "--config",
        trained_run / "config.json",
        "--out",
        tmp_path,
        "--name",
        "replay",
        "--quiet",
    )
    assert code == 0
    replay = json.loads((tmp_path / "replay" / "result.json").read_text())
    original = json.loads((trained_run / "result.json").read_text())
    assert (replay["val"], replay["test"]) == (original["val"], original["test"])
    assert out == f"{tmp_path / 'replay'}: test accuracy {replay['test']['accuracy'] * 100:.2f}%\n"  # --quiet


def test_preset_values_and_flag_overrides(tmp_path, capsys):
    from digitlab.cli import build_parser
    from digitlab.cli.training_flags import train_config_from_args

    args = build_parser().parse_args(["train", "--preset", "report-002", "--lr", "0.01"])
    config = train_config_from_args(args)
    assert (config.model, config.batch_size, config.patience, config.grad_clip) == ("myconvnet", 16, 8, 10.0)
    assert config.lr == 0.01 and config.preset == "report-002"


def test_listing_commands(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "1,007,590" in out and "bncnn" in out
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0 and "report-004" in out and "report-001" in out and "fast" in out
    code, out, _ = run_cli(capsys, "summary", "digit")
    assert code == 0 and "1,007,590" in out
    code, out, _ = run_cli(capsys, "data", "verify")
    assert code == 0 and out.count("ok") == 4


def test_seed_style_pth_state_dict(tmp_path, capsys, small_idx_dir):
    torch.manual_seed(0)
    path = tmp_path / "hw7_21000000_zhangsan.pth"
    torch.save(build_model("myconvnet").state_dict(), path)
    code, out, _ = run_cli(capsys, "test", path, "--model", "myconvnet", "--data", small_idx_dir, "--json")
    assert code == 0 and json.loads(out)["n"] == 200
    code, _, err = run_cli(capsys, "test", path)
    assert code == 2 and "--model" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--model", "resnet9"], "unknown model 'resnet9'"),
        (["train", "--preset", "seed-999"], "unknown preset 'seed-999'"),
        (["train", "--lr", "-1"], "lr must be > 0"),
        (["train", "--val-split", "1"], "val_split must be in [0, 1)"),
        (["train", "--batch-size", "0"], "batch_size must be >= 1"),
        (["train", "--aug-stroke", "1.5"], "aug_stroke is a share of images, at most 1, got 1.5"),
        (["train", "--aug-erase", "2"], "aug_erase is a share of images, at most 1, got 2.0"),
        (["train", "--resume", "/nonexistent/run"], "/nonexistent/run: run folder not found"),
        (["train", "--config", "/nonexistent/config.json"], "config file not found"),
        (["test", "/nonexistent/best.safetensors"], "checkpoint not found"),
        (["summary", "nope"], "unknown model 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, message, tmp_path):
    code, _, err = run_cli(capsys, *args, *(["--out", tmp_path] if args[0] == "train" else []))
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_checkpoint_of_another_architecture(trained_checkpoint, tmp_path, capsys):
    path = tmp_path / "bn.pth"
    torch.save(build_model("bncnn").state_dict(), path)
    code, _, err = run_cli(capsys, "test", path, "--model", "digit")
    assert code == 2 and "do not fit model 'digit'" in err
    code, _, err = run_cli(capsys, "test", trained_checkpoint, "--model", "bncnn")
    assert code == 2 and "another architecture" in err


def test_corrupt_checkpoint_and_data_are_reported_and_left_alone(trained_checkpoint, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "best.safetensors").write_bytes(b"garbage")
    (broken / "best.json").write_text((trained_checkpoint / "best.json").read_text())
    code, _, err = run_cli(capsys, "test", broken)
    assert code == 2 and "not a readable safetensors file" in err
    assert (broken / "best.safetensors").read_bytes() == b"garbage"

    data = tmp_path / "data"
    data.mkdir()
    (data / "t10k-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03" + b"\0" * 10)
    (data / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\x01\x07")
    code, _, err = run_cli(capsys, "test", trained_checkpoint, "--data", data)
    assert code == 2 and "t10k-images-idx3-ubyte" in err and "truncated" in err
    assert (data / "t10k-images-idx3-ubyte").read_bytes() == b"\0\0\x08\x03" + b"\0" * 10


@pytest.mark.slow  # a separate process
def test_console_script_runs_as_module():
    done = subprocess.run(
        [sys.executable, "-m", "digitlab", "train", "--epochs", "0"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "epochs must be >= 1" in done.stderr


def test_the_program_returns_mains_code_collects_less_often_and_freezes_what_is_left(monkeypatch, capsys):
    from digitlab.cli import run

    monkeypatch.setattr(sys, "argv", ["digitlab", "presets"])
    thresholds = gc.get_threshold()
    try:
        assert run() == 0 and gc.get_freeze_count() > 0 and gc.get_threshold()[0] == 100_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    assert "fast" in capsys.readouterr().out


def command_parser(name: str):
    from digitlab.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    return subparsers.choices[name]


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_every_config_field_has_a_flag_and_every_flag_a_field(command):
    from dataclasses import fields

    from digitlab.config import TrainConfig

    own_flags = {"help", "preset", "config", "resume", "quiet", "report", "json"}
    actions = [a for a in command_parser(command)._actions if a.dest not in own_flags]
    with_flags = {f.name for f in fields(TrainConfig) if f.metadata["cli"]}
    assert {a.dest for a in actions} == with_flags
    assert with_flags | {"model_kwargs", "preset"} == {f.name for f in fields(TrainConfig)}
    assert all(a.help for a in actions)


def test_flags_carry_their_field_types_and_choices(capsys):
    from digitlab.cli.training_flags import train_config_from_args

    parser = command_parser("train")
    args = parser.parse_args(["--optimizer", "sgd", "--nesterov", "--eval-batch-size", "50", "--out", "x"])
    config = train_config_from_args(args)
    assert (config.optimizer, config.nesterov, config.eval_batch_size, config.out_dir) == (
        "sgd",
        True,
        50,
        "x",
    )
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--optimizer", "lbfgs"])
    assert exit_info.value.code == 2 and "invalid choice: 'lbfgs'" in capsys.readouterr().err


def test_an_old_preset_name_says_what_it_is_called_now(capsys):
    code, _, err = run_cli(capsys, "train", "--preset", "seed-004")
    assert code == 2 and "renamed 'report-004'" in err


def test_a_bare_digitlab_prints_its_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: digitlab" in out and "predict" in out and "serve" in out


def test_every_command_has_a_help_page(capsys):
    from digitlab.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        with pytest.raises(SystemExit) as exit_code:
            main([name, "--help"])
        assert exit_code.value.code == 0, name
        assert f"usage: digitlab {name}" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_set_up(name):
    config = validate_config(preset_config(name))
    assert config.preset == name and config.model in list_models()


def test_the_fashion_preset_mirrors_and_erases_clothes_not_digits():
    fashion = preset_config("fashion")
    assert (fashion.data, fashion.model) == ("fashion-mnist", "resnet")
    assert fashion.aug_flip > 0 and fashion.aug_erase > 0
    assert all(
        preset_config(name).aug_flip == 0 for name in PRESETS if name != "fashion"
    )  # digits have a handedness


def test_help_and_the_package_import_do_not_import_torch():
    """`digitlab --help` answers in a fraction of a second: torch (seconds) and the serving
    stack (numpy, asyncio) load when a command runs."""
    script = (
        "import sys\n"
        "import digitlab, digitlab.cli\n"
        "from digitlab.cli import build_parser\n"
        "for command in ('', 'train', 'predict', 'serve', 'test'):\n"
        "    try:\n"
        "        build_parser().parse_args([command, '--help'] if command else ['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'PIL', 'scipy', 'numpy', 'asyncio') if m in sys.modules))\n"
        "print(digitlab.TrainConfig.__name__, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-2:] == ["[]", "TrainConfig False"]
