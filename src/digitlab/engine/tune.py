"""Hyper-parameter search with Optuna: a seeded TPE sampler over the settings the user did
not fix, a median pruner fed every epoch's validation accuracy, one run folder per trial.
The study lives in an RDB storage (SQLite by default): running again continues it, and
several processes may work on it at once."""

from __future__ import annotations

import csv
import inspect
import io
import json
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from digitlab.config import TrainConfig
from digitlab.engine.evaluate import Metrics
from digitlab.engine.runs import Run
from digitlab.engine.train import train, validate_config
from digitlab.errors import ConfigError, TrainingDiverged
from digitlab.fileio import atomic_write_json, atomic_write_text
from digitlab.models import build_model

# the search space, by TrainConfig field; dropout goes to model_kwargs, for models that take it
SPACE: dict[str, Callable[[optuna.Trial], object]] = {
    "lr": lambda trial: trial.suggest_float("lr", 1e-4, 1e-2, log=True),
    "batch_size": lambda trial: trial.suggest_categorical("batch_size", [64, 128, 256]),
    "weight_decay": lambda trial: trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True),
    "label_smoothing": lambda trial: trial.suggest_float("label_smoothing", 0.0, 0.2),
    "dropout": lambda trial: trial.suggest_float("dropout", 0.0, 0.5),
}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
UNDER_WAY = (*FINISHED, TrialState.RUNNING)  # what other workers will finish: not to be run twice


@dataclass
class TuneResult:
    folder: Path
    rows: list[dict]  # one per trial, by number: see `trial_rows`
    best_config: Path | None  # None while no trial has completed


def searched_settings(config: TrainConfig, fixed: Iterable[str]) -> list[str]:
    """The names of SPACE that a study of `config` searches: all but the `fixed` ones, and
    dropout only for a model that takes it and when model_kwargs does not set it."""
    names = [name for name in SPACE if name != "dropout" and name not in fixed]
    model_args = inspect.signature(type(build_model(config.model))).parameters
    if "dropout" in model_args and "dropout" not in config.model_kwargs:
        names.append("dropout")
    return names


def trial_config(trial: optuna.Trial, base: TrainConfig, searched: list[str], folder: Path) -> TrainConfig:
    """`base` with the trial's suggestions, to train into folder/trial-NNN."""
    values = {name: SPACE[name](trial) for name in searched}
    model_kwargs = dict(base.model_kwargs)
    if "dropout" in values:
        model_kwargs["dropout"] = values.pop("dropout")
    return replace(
        base, **values, model_kwargs=model_kwargs, out_dir=str(folder), run_name=f"trial-{trial.number:03d}"
    )


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The RDB storage at `url`, with heartbeats so that a killed worker's trial is failed
    (not waited for). Retried: two workers creating one SQLite file's tables at once collide."""
    sqlite = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=sqlite, heartbeat_interval=30, grace_period=120
                )
        except (OperationalError, IntegrityError) as err:
            if attempt == 4:
                raise ConfigError(f"--storage {url}: {str(err).splitlines()[0]}") from None
            time.sleep(0.2 * (attempt + 1))
        except (SQLAlchemyError, ImportError) as err:
            raise ConfigError(f"--storage {url}: {str(err).splitlines()[0]}") from None


def open_study(
    storage: optuna.storages.RDBStorage, name: str, seed: int, pruner: optuna.pruners.BasePruner | None
) -> optuna.Study:
    """Create the study, its sampler seeded for a reproducible search; a worker that joins an
    existing study samples from fresh randomness, so that two never draw the same settings."""
    try:
        return optuna.create_study(
            storage=storage,
            study_name=name,
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=pruner,
        )
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(
            storage=storage, study_name=name, sampler=optuna.samplers.TPESampler(), pruner=pruner
        )


# where a trial's run goes and how fast it computes: not what is searched or how trials compare
HOW_RUN = {"eval_batch_size", "device", "threads", "compile", "tensorboard", "mlflow", "out_dir", "run_name"}


def study_settings(base: TrainConfig, searched: list[str]) -> dict:
    """What makes a study's trials comparable: the settings searched, and the others' values."""
    fixed = {k: v for k, v in base.to_dict().items() if k not in HOW_RUN and k not in searched}
    return {"searched": searched, "fixed": fixed}


def check_same_search(study: optuna.Study, settings: dict) -> None:
    """Record the study's settings when it starts; refuse to continue it with others, since its
    trials would then not be comparable (a changed flag would otherwise be silently ignored)."""
    settings = json.loads(json.dumps(settings))  # as the storage gives it back: lists, not tuples
    recorded = study.user_attrs.get("settings")
    if recorded is None:
        study.set_user_attr("settings", settings)
        return
    if recorded == settings:
        return
    changed = sorted(
        {
            k
            for k in {*recorded["fixed"], *settings["fixed"]}
            if recorded["fixed"].get(k) != settings["fixed"].get(k)
        }
        | set(recorded["searched"]) ^ set(settings["searched"])
    )
    raise ConfigError(
        f"study {study.study_name!r} was started with other settings ({', '.join(changed)} differ); "
        "continue it with its first command's flags, or start a new one with --study-name or --out"
    )


def trial_heading(trial: optuna.Trial, study: optuna.Study, n_trials: int) -> str:
    """ "--- trial 3 (2 of 10 done, best val 98.71 % in trial 1): lr=0.003, ..." for the log."""
    done = study.get_trials(deepcopy=False, states=FINISHED)
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value, default=None)
    standing = f"{len(done)} of {n_trials} done" + (
        f", best val {best.value * 100:.2f} % in trial {best.number}" if best else ""
    )
    settings = ", ".join(f"{k}={v:.4g}" for k, v in trial.params.items())
    return f"--- trial {trial.number} ({standing}): {settings}"


def tune(
    base: TrainConfig,
    fixed: Iterable[str],
    n_trials: int,
    folder: str | Path,
    storage: str | None = None,
    study_name: str = "tune",
    quiet: bool = False,
    pruner: optuna.pruners.BasePruner | None = None,
) -> TuneResult:
    """Search the settings of `base` not in `fixed` until the study has `n_trials` finished
    (complete or pruned) trials; write folder/trials.csv and folder/best-config.json.

    The objective is the best validation accuracy of a trial's run. A trial whose training
    diverges counts as pruned: its settings are hopeless.
    """
    validate_config(base)
    if n_trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {n_trials}")
    if base.val_split <= 0:
        raise ConfigError("tune chooses by validation accuracy: it needs --val-split > 0")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    searched = searched_settings(base, set(fixed))
    if not searched:
        raise ConfigError(
            f"nothing to search: the flags fix every setting tune searches ({', '.join(SPACE)})"
        )
    study = open_study(
        open_storage(storage or f"sqlite:///{folder / 'study.db'}"),
        study_name,
        base.seed,
        pruner or optuna.pruners.MedianPruner(),
    )
    check_same_search(study, study_settings(base, searched))

    def objective(trial: optuna.Trial) -> float:
        config = trial_config(trial, base, searched, folder)
        if not quiet:
            print(trial_heading(trial, study, n_trials))
        stopped = []

        def on_epoch(epoch: int, val: Metrics | None) -> bool:
            trial.report(val.accuracy, epoch)
            if trial.should_prune():
                stopped.append(epoch)
            return not stopped

        try:
            result = train(config, quiet=quiet, on_epoch=on_epoch)
        except TrainingDiverged as err:
            raise optuna.TrialPruned(str(err)) from None
        trial.set_user_attr("run_dir", str(result.run_dir.resolve()))
        trial.set_user_attr("val_acc", result.val.accuracy)
        if result.test:
            trial.set_user_attr("test_acc", result.test.accuracy)
        if stopped:
            raise optuna.TrialPruned(f"after epoch {stopped[0]}")
        return result.val.accuracy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # a killed worker's trial is not under way
    under_way = len(study.get_trials(deepcopy=False, states=UNDER_WAY))
    if under_way < n_trials:
        # n_trials bounds this worker; the callback stops it once the study has enough
        study.optimize(
            objective, n_trials=n_trials - under_way, callbacks=[MaxTrialsCallback(n_trials, UNDER_WAY)]
        )
    return write_results(study, folder)


def trial_rows(study: optuna.Study) -> list[dict]:
    """Number, state, the searched settings, best val and test accuracy, seconds, run folder."""
    names = [name for name in SPACE if any(name in t.params for t in study.trials)]
    return [
        {
            "trial": t.number,
            "state": t.state.name,
            **{name: t.params.get(name) for name in names},
            "val_acc": t.user_attrs.get("val_acc"),
            "test_acc": t.user_attrs.get("test_acc"),
            "seconds": round(t.duration.total_seconds(), 1) if t.duration else None,
            "run_dir": t.user_attrs.get("run_dir"),
        }
        for t in study.trials
    ]


def write_results(study: optuna.Study, folder: Path) -> TuneResult:
    """folder/trials.csv, and the best completed trial's config as folder/best-config.json
    (its run name cleared, so that `digitlab train --config` makes a new folder)."""
    rows = trial_rows(study)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, list(rows[0]) if rows else ["trial"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(folder / "trials.csv", buffer.getvalue())
    if not any(t.state == TrialState.COMPLETE for t in study.trials):
        return TuneResult(folder, rows, None)
    best = Run.open(study.best_trial.user_attrs["run_dir"]).config()
    best_path = folder / "best-config.json"
    atomic_write_json(best_path, replace(best, run_name="").to_dict())
    return TuneResult(folder, rows, best_path)
