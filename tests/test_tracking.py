"""TensorBoard and MLflow tracking of training runs, read back with each tool's own reader."""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
from types import SimpleNamespace

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from conftest import ctrl_c, on_second_epoch, quick_config
from digitlab.cli import main
from digitlab.engine.evaluate import Metrics
from digitlab.engine.runs import Run, RunResult
from digitlab.engine.tracking import MLFLOW_MISSING, TAGS, MLflow, Tracking
from digitlab.engine.train import train

LIMIT = 1000  # at 600 images the validation split is too small for a finite fitted temperature


def events(run_dir) -> EventAccumulator:
    return EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0}).Reload()


def steps(accumulator: EventAccumulator, tag: str) -> list[int]:
    return [event.step for event in accumulator.Scalars(tag)]


def assert_scalars_match_metrics(accumulator: EventAccumulator, run_dir) -> None:
    rows = Run(run_dir).metrics()
    for key, tag in TAGS.items():
        if rows[0].get(key) is None:
            continue
        logged = {event.step: event.value for event in accumulator.Scalars(tag)}
        assert list(logged) == [row["epoch"] for row in rows], tag  # each epoch once, in order
        assert list(logged.values()) == pytest.approx([row[key] for row in rows], rel=1e-6), tag


@pytest.mark.slow
def test_a_run_writes_tensorboard_scalars_images_and_hparams(tmp_path):
    result = train(quick_config(tmp_path, train_limit=LIMIT, run_name="r"), quiet=True)
    folder = result.run_dir / "tensorboard"
    assert [p.is_file() for p in folder.iterdir()] == [True]  # one event file, no timestamped subfolder
    accumulator = events(result.run_dir)
    assert_scalars_match_metrics(accumulator, result.run_dir)
    assert steps(accumulator, "loss/train") == [1, 2]
    assert [e.step for e in accumulator.Images("train/first_batch")] == [0]
    (confusion,) = accumulator.Images("test/confusion_matrix")
    assert confusion.step == 2 and confusion.width > 200
    assert accumulator.Scalars("hparam/test_acc")[0].value == pytest.approx(result.test.accuracy)
    hparams = accumulator.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(3e-3)
    assert start.hparams["model"].string_value == "fastcnn"
    experiment = HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert "hparam/test_acc" in {m.name.tag for m in experiment.metric_infos}


@pytest.mark.slow
def test_no_tensorboard_flag_writes_no_event_files(tmp_path, capsys):
    args = ["--train-limit", LIMIT, "--epochs", 1, "--threads", 1, "--quiet", "--no-tensorboard"]
    assert main(["train", "--out", str(tmp_path), "--name", "r", *map(str, args)]) == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["tensorboard"] is False
    assert (tmp_path / "r" / "result.json").exists() and not (tmp_path / "r" / "tensorboard").exists()


@pytest.mark.slow
def test_a_resumed_run_appends_each_epoch_once(tmp_path):
    config = quick_config(tmp_path, train_limit=LIMIT, run_name="r")
    with on_second_epoch(ctrl_c), pytest.raises(KeyboardInterrupt):
        train(config, quiet=True)
    run_dir = tmp_path / "runs" / "r"
    assert steps(events(run_dir), "loss/train") == [1]
    train(None, resume=run_dir, quiet=True)
    assert len(list((run_dir / "tensorboard").iterdir())) == 2  # one event file per process
    accumulator = events(run_dir)
    assert_scalars_match_metrics(accumulator, run_dir)
    assert steps(accumulator, "loss/train") == [1, 2]
    assert len(accumulator.Images("train/first_batch")) == 1


@pytest.mark.slow
def test_a_full_disk_under_tensorboard_is_one_clear_error(tmp_path, capsys, monkeypatch):
    from tensorboard.compat.tensorflow_stub.io import gfile

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fill_the_disk(trainer) -> None:
        monkeypatch.setattr(gfile.LocalFileSystem, "append", disk_full)

    thread_failures = []
    monkeypatch.setattr(threading, "excepthook", thread_failures.append)  # what would print a traceback
    args = ["--train-limit", LIMIT, "--epochs", 2, "--threads", 1, "--quiet", "--name", "full"]
    with on_second_epoch(fill_the_disk):
        code = main(["train", "--out", str(tmp_path), *map(str, args)])
    err = capsys.readouterr().err
    assert code == 2 and err.splitlines() == [
        "digitlab: error: No space left on device; files written before are intact "
        "(every write goes to a temporary file first)"
    ]
    assert thread_failures == [] and threading.excepthook == thread_failures.append
    assert len(Run(tmp_path / "full").metrics()) == 2  # the run's own records come first


def test_flags_turn_tensorboard_off_and_mlflow_on():
    from digitlab.cli.training_flags import train_config_from_args
    from test_cli import command_parser

    parser = command_parser("train")
    parse = lambda *argv: train_config_from_args(parser.parse_args(argv))  # noqa: E731
    assert (parse().tensorboard, parse().mlflow) == (True, "")
    assert parse("--no-tensorboard").tensorboard is False
    assert parse("--mlflow").mlflow == "default"  # MLflow's own default store, what `mlflow ui` shows
    assert parse("--mlflow", "--epochs", "3").mlflow == "default"
    assert parse("--mlflow", "http://mlflow:5000").mlflow == "http://mlflow:5000"


def test_mlflow_without_the_package_fails_before_any_run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    code = main(["train", "--out", str(tmp_path / "runs"), "--mlflow", "./mlruns", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.splitlines() == [f"digitlab: error: {MLFLOW_MISSING}"]
    assert MLFLOW_MISSING == "--mlflow needs the mlflow package: pip install 'digitlab[mlflow]'"
    assert not (tmp_path / "runs").exists()


def test_only_rank_0_tracks(tmp_path):
    config = quick_config(tmp_path, mlflow="./mlruns")
    assert Tracking.open(config, Run(tmp_path), main=False).trackers == []


class FakeClient:
    """The few MlflowClient methods the tracker uses, recording what they were given."""

    def __init__(self):
        self.runs, self.params, self.metrics, self.artifacts, self.status = [], {}, [], [], []

    def get_experiment_by_name(self, name):
        return None

    def create_experiment(self, name):
        return "7"

    def create_run(self, experiment_id, run_name, tags):
        self.runs.append((experiment_id, run_name, tags))
        return SimpleNamespace(info=SimpleNamespace(run_id=f"id{len(self.runs)}"))

    def update_run(self, run_id, status):
        self.status.append((run_id, status))

    def set_terminated(self, run_id, status):
        self.status.append((run_id, status))

    def log_param(self, run_id, key, value):
        self.params[key] = value

    def log_metric(self, run_id, key, value, step):
        self.metrics.append((run_id, key, value, step))

    def log_artifact(self, run_id, path):
        self.artifacts.append(path)


def test_mlflow_tracker_logs_params_metrics_and_checkpoint_and_resumes_its_run(tmp_path):
    run = Run(tmp_path)
    run.best_path.write_bytes(b"weights")
    config = quick_config(tmp_path, model_kwargs={"width": 8})
    client = FakeClient()
    with Tracking([MLflow(run, config, client)]).start(0) as tracking:
        tracking.epoch({"epoch": 1, "train_loss": 0.5, "val_loss": None, "lr": 0.1})
    test = Metrics(0.1, 0.97, 3, 100)
    with pytest.raises(KeyboardInterrupt), Tracking([MLflow(run, config, client)]).start(1) as tracking:
        tracking.end(RunResult(1, 1, False, None, test, test, 1.0), None, [])
        raise KeyboardInterrupt
    assert client.runs == [("7", tmp_path.name, {"digitlab.run_folder": str(tmp_path.resolve())})]
    assert client.params["lr"] == config.lr and client.params["model_kwargs"] == '{"width": 8}'
    assert client.metrics == [
        ("id1", "train_loss", 0.5, 1),
        ("id1", "lr", 0.1, 1),
        ("id1", "test_acc", 0.97, 1),
        ("id1", "test_loss", 0.1, 1),
        ("id1", "best_epoch", 1, 1),
    ]
    assert client.artifacts == [str(run.best_path)]
    assert client.status == [("id1", "FINISHED"), ("id1", "RUNNING"), ("id1", "KILLED")]


@pytest.mark.slow
def test_mlflow_store_holds_params_metrics_and_checkpoint(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow-skinny has no database store
    store = (tmp_path / "mlruns").as_uri()
    result = train(quick_config(tmp_path, train_limit=LIMIT, mlflow=store), quiet=True)
    client = MlflowClient(store)
    (found,) = client.search_runs([client.get_experiment_by_name("digitlab").experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == result.run_dir.name
    assert found.data.params["lr"] == "0.003" and found.data.params["epochs"] == "2"
    rows = Run(result.run_dir).metrics()
    history = client.get_metric_history(found.info.run_id, "val_acc")
    assert [(m.step, m.value) for m in history] == [(r["epoch"], pytest.approx(r["val_acc"])) for r in rows]
    assert found.data.metrics["test_acc"] == pytest.approx(result.test.accuracy)
    assert {a.path for a in client.list_artifacts(found.info.run_id)} == {"best.safetensors", "best.json"}
