"""`digitlab tune`: what is searched, errors, pruning, resuming, two processes on one study."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import FixedTrial, TrialState

from conftest import ctrl_c, on_second_epoch, quick_config
from digitlab.cli import build_parser, main
from digitlab.cli.training_flags import train_config_from_args
from digitlab.cli.tune import fixed_settings
from digitlab.engine.runs import Run
from digitlab.engine.tune import (
    check_same_search,
    open_storage,
    open_study,
    searched_settings,
    study_settings,
    trial_config,
    trial_heading,
    tune,
)
from digitlab.errors import ConfigError

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def tune_flags(data: Path, out: Path, trials: int) -> list[str]:
    """A study of seconds-long trials: fastcnn, 540 training images, two epochs."""
    return [
        "tune", "--model", "fastcnn", "--data", str(data), "--epochs", "2", "--threads", "1",
        "--trials", str(trials), "--out", str(out),
    ]  # fmt: skip


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="tune", storage=f"sqlite:///{out / 'study.db'}")


def test_flags_given_are_fixed_and_the_rest_is_searched(tmp_path):
    args = build_parser().parse_args(["tune", "--preset", "fast", "--epochs", "2", "--lr", "1e-3"])
    base, fixed = train_config_from_args(args), fixed_settings(args)
    assert set(fixed) == {"epochs", "lr"}
    searched = searched_settings(base, fixed)
    assert searched == ["batch_size", "weight_decay", "label_smoothing"]  # fastcnn takes no dropout
    # a FixedTrial refuses any suggestion it was not given: lr is never asked for
    trial = FixedTrial({"batch_size": 256, "weight_decay": 1e-5, "label_smoothing": 0.1}, number=7)
    config = trial_config(trial, base, searched, tmp_path)
    assert (config.lr, config.epochs, config.batch_size, config.label_smoothing) == (1e-3, 2, 256, 0.1)
    assert (config.out_dir, config.run_name, config.schedule) == (str(tmp_path), "trial-007", "onecycle")

    wide = train_config_from_args(build_parser().parse_args(["tune", "--model", "widecnn"]))
    assert searched_settings(wide, ["model"]) == [
        "lr",
        "batch_size",
        "weight_decay",
        "label_smoothing",
        "dropout",
    ]
    config = trial_config(FixedTrial({"dropout": 0.3}), wide, ["dropout"], tmp_path)
    assert config.model_kwargs == {"dropout": 0.3}


def test_a_study_continues_only_with_the_settings_it_started_with(tmp_path):
    def settings(*flags: str) -> dict:
        args = build_parser().parse_args(["tune", "--preset", "fast", *flags])
        base, fixed = train_config_from_args(args), fixed_settings(args)
        return study_settings(base, searched_settings(base, fixed))

    study = open_study(open_storage(f"sqlite:///{tmp_path / 'study.db'}"), "tune", 0, None)
    check_same_search(study, settings("--epochs", "1"))  # recorded
    check_same_search(study, settings("--epochs", "1", "--threads", "2"))  # how trials run: no matter
    with pytest.raises(ConfigError, match=r"other settings \(epochs, lr differ\)"):
        check_same_search(study, settings("--epochs", "2", "--lr", "1e-3"))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # study.ask() outside optimize
def test_the_seed_makes_a_study_reproducible_and_a_joining_worker_draws_afresh(tmp_path):
    base = quick_config(tmp_path)
    searched = searched_settings(base, [])

    def draws(study: optuna.Study) -> list[float]:
        return [trial_config(study.ask(), base, searched, tmp_path).lr for _ in range(3)]

    first, second = (open_study(open_storage(f"sqlite:///{tmp_path}/{n}.db"), "s", 7, None) for n in "ab")
    drawn = draws(first)
    assert draws(second) == drawn
    joiner = open_study(open_storage(f"sqlite:///{tmp_path}/a.db"), "s", 7, None)
    assert len(joiner.trials) == 3 and draws(joiner) != drawn  # seeded, it would draw the same again


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--trials", "0"], "--trials must be >= 1, got 0"),
        (["--storage", "nosuch://db"], "--storage nosuch://db: Can't load plugin"),
        (["--storage", "not a url"], "--storage not a url: Could not parse"),
        (["--val-split", "0"], "needs --val-split > 0"),
        (["--resume", "runs/x"], "tune takes no --resume"),
    ],
)
def test_errors_are_one_line(tmp_path, capsys, flags, message):
    assert main(["tune", "--out", str(tmp_path / "t"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_a_pruned_trial_stops_after_its_epoch_and_is_recorded(small_idx_dir, tmp_path):
    always = optuna.pruners.ThresholdPruner(lower=1.01)  # no accuracy reaches it
    base = quick_config(tmp_path, data=str(small_idx_dir), train_limit=0)
    result = tune(base, ["epochs"], 1, tmp_path / "t", quiet=True, pruner=always)
    (row,) = result.rows
    assert row["state"] == "PRUNED" and 0 < row["test_acc"] <= 1 and result.best_config is None
    run_result = Run.open(row["run_dir"]).finished_result()
    assert (run_result.epochs_run, run_result.stopped_early) == (1, True)


@pytest.mark.slow
def test_an_interrupted_study_continues(small_idx_dir, tmp_path):
    out = tmp_path / "t"
    with on_second_epoch(ctrl_c):  # Ctrl-C in the middle of trial 0
        assert main([*tune_flags(small_idx_dir, out, 2), "--quiet"]) == 130
    assert [t.state for t in load(out).trials] == [TrialState.FAIL]
    assert main([*tune_flags(small_idx_dir, out, 2), "--quiet"]) == 0
    assert main([*tune_flags(small_idx_dir, out, 3), "--quiet"]) == 0  # one more
    assert main([*tune_flags(small_idx_dir, out, 3), "--quiet"]) == 0  # nothing left to do
    trials = load(out).trials
    assert [t.number for t in trials if t.state in FINISHED] == [1, 2, 3]
    assert sorted(p.name for p in out.glob("trial-*")) == ["trial-000", "trial-001", "trial-002", "trial-003"]
    with open(out / "trials.csv") as f:
        assert [row["state"] for row in csv.DictReader(f)] == [t.state.name for t in trials]


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(small_idx_dir, tmp_path, capsys):
    out = tmp_path / "t"
    command = [sys.executable, "-m", "digitlab", *tune_flags(small_idx_dir, out, 4)]
    workers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs

    # each worker ran trials of its own; together they finished the study's 4
    ran = [{int(n) for n in re.findall(r"^--- trial (\d+) ", stdout, re.M)} for stdout, _ in outputs]
    assert all(ran) and not ran[0] & ran[1], ran
    finished = [t for t in load(out).trials if t.state in FINISHED]
    # optuna's guarantee: 4, or one more when both workers finish a trial at the same instant
    assert 4 <= len(finished) <= 5 and {t.number for t in finished} <= ran[0] | ran[1]
    assert all(Path(t.user_attrs["run_dir"]).parent == out for t in finished)
    assert all(Run(t.user_attrs["run_dir"]).result_path.exists() for t in finished)

    # the best trial's config replays exactly
    best = load(out).best_trial
    assert main(["train", "--config", str(out / "best-config.json")]) == 0
    replay = Path(re.search(r"run folder: (.*)", capsys.readouterr().out).group(1))
    assert replay.parent == out and json.loads((out / "best-config.json").read_text())["run_name"] == ""
    assert Run.open(replay).finished_result().val.accuracy == best.value


def test_each_trial_is_announced_with_the_study_s_standing():
    study = optuna.create_study(direction="maximize")
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    for value in (0.9871, 0.95):
        study.add_trial(optuna.trial.create_trial(params={"lr": 1e-3}, distributions={"lr": lr}, value=value))
    study.add_trial(
        optuna.trial.create_trial(params={"lr": 1e-2}, distributions={"lr": lr}, state=TrialState.PRUNED)
    )
    trial = study.ask({"lr": lr})
    heading = trial_heading(trial, study, 10)
    assert heading.startswith("--- trial 3 (3 of 10 done, best val 98.71 % in trial 0): lr=")
    assert trial_heading(optuna.create_study().ask({"lr": lr}), optuna.create_study(), 4).startswith(
        "--- trial 0 (0 of 4 done): lr="
    )
