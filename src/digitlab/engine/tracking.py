"""Experiment tracking: a run's curves, sample images, confusion matrix and settings in
TensorBoard (RUN/tensorboard/, on by default) and in MLflow (with --mlflow).

Only rank 0 tracks. Like every other write of a run, a full disk is an OSError that stops it.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import torch

from digitlab.config import MLFLOW_DEFAULT_STORE, TrainConfig
from digitlab.engine.runs import Run, RunResult
from digitlab.errors import ConfigError
from digitlab.fileio import atomic_write_text

MLFLOW_MISSING = "--mlflow needs the mlflow package: pip install 'digitlab[mlflow]'"
TENSORBOARD_MISSING = "TensorBoard logging needs the tensorboard package: pip install tensorboard"
EXPERIMENT = "digitlab"  # the MLflow experiment of every run
# metrics.jsonl keys -> TensorBoard tags (a tag's prefix is its group: loss, accuracy)
TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "val_loss_raw": "loss/val_without_ema",
    "train_acc": "accuracy/train",
    "val_acc": "accuracy/val",
    "val_acc_raw": "accuracy/val_without_ema",
    "test_loss": "loss/test_each_epoch",
    "test_acc": "accuracy/test_each_epoch",
    "lr": "learning_rate",
    "seconds": "epoch_seconds",
}


def hyperparameters(config: TrainConfig) -> dict:
    """The config as flat values (dicts as JSON), as both trackers take them."""
    return {
        k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for k, v in config.to_dict().items()
    }


def final_metrics(result: RunResult) -> dict:
    """The end of the run in numbers: test (unless --no-test) and best-validation metrics, best epoch."""
    values = {"test_acc": result.test.accuracy, "test_loss": result.test.loss} if result.test else {}
    values["best_epoch"] = result.best_epoch
    if result.val:
        values.update(best_val_acc=result.val.accuracy, best_val_loss=result.val.loss)
    return values


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """(classes, classes) counts: row = true class, column = predicted class."""
    index = labels.cpu().long() * classes + predicted.cpu().long()
    return torch.bincount(index, minlength=classes * classes).reshape(classes, classes)


CELL = 36  # pixels a cell of the confusion image
PALE, DARK = np.array([247, 251, 255]), np.array([8, 48, 107])  # the ends of matplotlib's "Blues"


def confusion_image(confusion: torch.Tensor, classes: list[str]) -> np.ndarray:
    """The confusion matrix as an RGB picture (H, W, 3): rows the true class, columns the
    predicted one, darker for more (log scale), counts written in when there are few classes.
    Drawn with Pillow: matplotlib would cost a run half a second of importing."""
    from PIL import Image, ImageDraw, ImageFont

    n, left, top = len(classes), 12 + 7 * max(map(len, classes)), 22  # room for the class names
    counts = confusion.numpy()
    shade = np.log1p(counts) / max(np.log1p(counts.max()), 1e-9)
    cells = (PALE + shade[..., None] * (DARK - PALE)).astype(np.uint8).repeat(CELL, 0).repeat(CELL, 1)
    image = Image.new("RGB", (left + n * CELL, top + n * CELL + 18), "white")
    image.paste(Image.fromarray(cells), (left, top))
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(11)
    for i, name in enumerate(classes):
        draw.text((left - 4, top + i * CELL + CELL // 2), name, "black", font, anchor="rm")  # true
        draw.text((left + i * CELL + CELL // 2, top - 4), name[:3], "black", font, anchor="md")  # predicted
    if n <= 12:
        for (row, column), count in np.ndenumerate(counts):
            if count:
                xy = (left + column * CELL + CELL // 2, top + row * CELL + CELL // 2)
                draw.text(xy, str(count), "white" if shade[row, column] > 0.5 else "black", font, anchor="mm")
    draw.text((left, top + n * CELL + 4), "rows: true class, columns: predicted", "black", font)
    return np.asarray(image)


class TensorBoard:
    """Event files in `Run.path/tensorboard`: per-epoch scalars, the first training batch,
    and at the end the hyper-parameters with the final metrics and the confusion matrix."""

    def __init__(self, run: Run, config: TrainConfig):
        self.folder, self.config, self.writer = run.path / "tensorboard", config, None

    def start(self, epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run discards whatever an earlier process logged after its last saved epoch
        self._after_earlier_files()
        self.writer = SummaryWriter(str(self.folder), purge_step=epoch + 1 if epoch else 0)
        self.thread_hook, threading.excepthook = threading.excepthook, self.writer_thread_failed

    def _after_earlier_files(self) -> None:
        """Wait, if need be, for the next second: event files are read in name order, and a name
        holds the second it was made in, so a resumed run's file must not share one with the last."""
        made = [int(p.name.split(".")[3]) for p in self.folder.glob("events.out.tfevents.*")]
        while made and int(time.time()) <= max(made):
            time.sleep(0.05)

    def writer_thread_failed(self, args) -> None:
        """The writer writes in a thread of its own; its OSError (a full disk) comes again from
        the next call in the training thread, which reports it in one line: no thread traceback."""
        writer_thread = type(args.thread).__module__.startswith("tensorboard.")
        if not (writer_thread and issubclass(args.exc_type, OSError)):
            self.thread_hook(args)

    def first_batch(self, images: torch.Tensor) -> None:
        self.writer.add_images("train/first_batch", images[:64].detach().float().cpu(), 0)

    def epoch(self, row: dict) -> None:
        for key, value in row.items():
            if key != "epoch" and value is not None:
                self.writer.add_scalar(TAGS.get(key, key), value, row["epoch"])
        self.writer.flush()  # visible in a running TensorBoard now; a full disk fails here

    def end(self, result: RunResult, confusion: torch.Tensor | None, classes: list[str]) -> None:
        from torch.utils.tensorboard.summary import hparams

        step, metrics = result.epochs_run, {f"hparam/{k}": v for k, v in final_metrics(result).items()}
        for summary in hparams(hyperparameters(self.config), metrics):  # into this folder, not a subfolder
            self.writer.file_writer.add_summary(summary, step)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)
        if confusion is not None:
            self.writer.add_image(
                "test/confusion_matrix", confusion_image(confusion, classes), step, dataformats="HWC"
            )
        self.writer.flush()

    def close(self, status: str) -> None:
        if self.writer:
            try:
                self.writer.close()
            finally:
                threading.excepthook = self.thread_hook


def mlflow_client(uri: str):
    """An MlflowClient of the tracking store `uri`, connected; ConfigError if it cannot be."""
    try:
        import mlflow
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise ConfigError(MLFLOW_MISSING) from None
    default = uri == MLFLOW_DEFAULT_STORE
    try:
        client = mlflow.MlflowClient(None if default else uri)
        client.search_experiments(max_results=1)
    except (MlflowException, ImportError) as err:  # ImportError: a store needing more packages
        where = f"MLflow's default store {mlflow.get_tracking_uri()}" if default else uri
        raise ConfigError(f"--mlflow: {where}: {err}") from None
    return client


class MLflow:
    """One MLflow run per run folder (a resumed run continues it): the config as parameters,
    every metrics.jsonl value per epoch (step = epoch), final metrics, the checkpoint as artifact.

    `client` is an mlflow.MlflowClient, or anything with the few of its methods used here.
    """

    def __init__(self, run: Run, config: TrainConfig, client):
        self.run, self.config, self.client, self.run_id = run, config, client, None
        self.id_path = run.path / "mlflow_run_id"

    def start(self, epoch: int) -> None:
        if self.id_path.exists():  # --resume: the same MLflow run, its parameters already logged
            self.run_id = self.id_path.read_text().strip()
            self.client.update_run(self.run_id, "RUNNING")
            return
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(EXPERIMENT)
        tags = {"digitlab.run_folder": str(self.run.path.resolve())}
        self.run_id = self.client.create_run(
            experiment_id, run_name=self.run.path.name, tags=tags
        ).info.run_id
        atomic_write_text(self.id_path, self.run_id + "\n")
        for key, value in hyperparameters(self.config).items():
            self.client.log_param(self.run_id, key, value)

    def first_batch(self, images: torch.Tensor) -> None:
        pass

    def epoch(self, row: dict) -> None:
        for key, value in row.items():
            if key != "epoch" and value is not None:
                self.client.log_metric(self.run_id, key, value, step=row["epoch"])

    def end(self, result: RunResult, confusion: torch.Tensor | None, classes: list[str]) -> None:
        for key, value in final_metrics(result).items():
            self.client.log_metric(self.run_id, key, value, step=result.epochs_run)
        best, reports = self.run.best_path, [self.run.path / name for name in ("report.html", "report.md")]
        for path in [best, best.with_suffix(".json"), *reports]:
            if path.exists():
                self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        if self.run_id:
            self.client.set_terminated(self.run_id, status)


class Tracking:
    """Every tracker of one run behind one set of calls; no tracker on ranks other than 0.

    `with tracking.start(epoch):` around the training; the run ends FINISHED, KILLED (Ctrl-C)
    or FAILED by how the block ends.
    """

    def __init__(self, trackers: list):
        self.trackers = trackers

    @staticmethod
    def check(config: TrainConfig) -> None:
        """ConfigError, before any run folder exists, if a tracker's package is not installed."""
        if config.tensorboard:
            try:
                import torch.utils.tensorboard  # noqa: F401
            except ImportError:
                raise ConfigError(TENSORBOARD_MISSING) from None
        if config.mlflow:
            try:
                import mlflow  # noqa: F401
            except ImportError:
                raise ConfigError(MLFLOW_MISSING) from None

    @classmethod
    def open(cls, config: TrainConfig, run: Run, main: bool) -> Tracking:
        """The trackers `config` asks for; an MLflow store that cannot be reached is a ConfigError now."""
        if not main:
            return cls([])
        trackers = [MLflow(run, config, mlflow_client(config.mlflow))] if config.mlflow else []
        return cls(trackers + ([TensorBoard(run, config)] if config.tensorboard else []))

    def start(self, epoch: int) -> Tracking:
        for tracker in self.trackers:
            tracker.start(epoch)
        return self

    def first_batch(self, images: torch.Tensor) -> None:
        for tracker in self.trackers:
            tracker.first_batch(images)

    def epoch(self, row: dict) -> None:
        for tracker in self.trackers:
            tracker.epoch(row)

    def end(self, result: RunResult, confusion: torch.Tensor | None, classes: list[str]) -> None:
        for tracker in self.trackers:
            tracker.end(result, confusion, classes)

    def __enter__(self) -> Tracking:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        status = "FINISHED" if kind is None else "KILLED" if kind is KeyboardInterrupt else "FAILED"
        for tracker in self.trackers:
            tracker.close(status)
