"""The one training loop for every model: train, validate, checkpoint, resume, test."""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from shlex import quote

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from digitlab.config import TrainConfig
from digitlab.data.augment import BatchAugment
from digitlab.data.digitdata import NOT_A_DIGIT
from digitlab.data.info import balance_line
from digitlab.data.sources import load_dataset, load_training_set
from digitlab.engine import distributed
from digitlab.engine.calibration import calibration, fit_temperature
from digitlab.engine.checkpoint import CheckpointMeta, unwrap
from digitlab.engine.evaluate import Metrics, evaluate, metrics_from_logits, predict_logits
from digitlab.engine.optim import Schedule, build_optimizer
from digitlab.engine.runs import Run, RunResult
from digitlab.engine.tracking import Tracking, confusion_matrix
from digitlab.errors import ConfigError, DataError, TrainingDiverged
from digitlab.fileio import remove_stale_temporaries
from digitlab.models import build_classifier, classifier_state, list_models


@dataclass
class TrainResult(RunResult):
    """What `train` returns: the run's result.json, and the folder it is in."""

    run_dir: Path


def validate_config(config: TrainConfig) -> TrainConfig:
    """ConfigError for the first impossible setting, the model name included; return `config`."""
    config.validate()
    if config.model not in list_models():
        raise ConfigError(f"unknown model {config.model!r}; choose one of: {', '.join(list_models())}")
    Tracking.check(config)
    return config


def uses_bfloat16(precision: str, device: torch.device) -> bool:
    """Whether training steps run in bfloat16 (autocast) for this `precision` setting on `device`."""
    if precision in ("float32", "bfloat16"):
        return precision == "bfloat16"
    if device.type != "cpu":
        return True
    return precision == "fastest" and (
        torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return device


def shuffle_seed(seed: int, epoch: int) -> int:
    """A different, reproducible order every epoch, independent of where a run resumed."""
    return seed * 1_000_003 + epoch


def check_split_sizes(config: TrainConfig, train: int, val: int) -> None:
    """Refuse a split that leaves too little to train (BatchNorm needs two images) or to validate."""
    images = f"{train + val:,} images" + (
        f" (--train-limit {config.train_limit})" if config.train_limit else ""
    )
    if train < 2:
        raise ConfigError(
            f"--val-split {config.val_split} of {images} leaves {train} to train on; at least 2 are needed"
        )
    if config.val_split > 0 and val < 1:
        raise ConfigError(
            f"--val-split {config.val_split} of {images} leaves no image to validate on; "
            "raise it, or pass --val-split 0 to train without validation"
        )


def calibrated(calibration: dict | None) -> str:
    """What the test loss was measured at: the temperature fitted on validation, if there was one."""
    return f" calibrated, temperature {calibration['temperature']:.2f}" if calibration else ""


def extend_epochs(config: TrainConfig, epochs: int | None, run: Run) -> TrainConfig:
    """The resumed run's config, with more epochs when `epochs` asks for them."""
    if epochs is None or epochs == config.epochs:
        return config
    if epochs < config.epochs:
        raise ConfigError(
            f"--epochs {epochs}: {run.path} was set for {config.epochs}; a resumed run can only get more"
        )
    if config.schedule in ("onecycle", "cosine"):
        raise ConfigError(
            f"--epochs {epochs}: {run.path}'s {config.schedule} schedule is laid out over "
            f"{config.epochs} epochs and cannot be stretched mid-run; start a new run: "
            f"digitlab train --config {quote(str(run.config_path))} --epochs {epochs}"
        )
    return replace(config, epochs=epochs)


class Trainer:
    """Holds one run's model, data and state; `fit()` trains to the end."""

    def __init__(
        self,
        config: TrainConfig,
        run: Run,
        progress: bool,
        echo: Callable[[str], None],
        world: distributed.World,
        device: torch.device,
        on_epoch: Callable[[int, Metrics | None], bool | None] | None = None,
    ):
        self.config, self.run, self.progress, self.echo, self.world = (
            config,
            run,
            progress,
            echo,
            world,
        )
        self.device, self.on_epoch = device, on_epoch
        self.bfloat16 = uses_bfloat16(config.precision, device)
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)

        full = load_training_set(config.data, config.train_limit)
        self.train_data, self.val_data = (
            d.to(self.device) for d in full.split(config.val_split, config.validation_seed)
        )
        check_split_sizes(config, len(self.train_data), len(self.val_data))
        if len(full.classes) < 2:
            raise DataError(
                f"{config.data}: one class only ({full.classes[0]}); a classifier needs two or more"
            )
        if config.outliers:  # an extra "not a digit" class; validation and test stay digits only
            from digitlab.data.outliers import outlier_images  # fonts and shapes: not needed otherwise

            extra = outlier_images(round(len(self.train_data) * config.outliers), config.seed)
            self.train_data = self.train_data.with_extra_class(torch.from_numpy(extra), NOT_A_DIGIT)
        self.test_data = load_dataset(config.data, "test").to(self.device)
        if self.test_data.classes != full.classes:
            raise DataError(f"{config.data}: the test split's classes differ from the training split's")
        self.augment = BatchAugment.from_config(config)

        # the output layer is sized from the data set: 10 digits, 26 letters, 47 EMNIST classes
        self.model_kwargs = {**config.model_kwargs, "num_classes": len(self.train_data.classes)}
        mean, std = self.train_data.pixel_stats()  # the model standardises its own input with these
        model = build_classifier(config.model, mean, std, **self.model_kwargs)
        self.model = model.to(self.device, memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, config)
        self.per_rank_batch = max(1, config.batch_size // world.size)
        self.steps_per_epoch = math.ceil(math.ceil(len(self.train_data) / world.size) / self.per_rank_batch)
        self.scheduler = Schedule(self.optimizer, config, self.steps_per_epoch)
        self.ddp_model = nn.parallel.DistributedDataParallel(self.model) if world.distributed else self.model
        if config.compile:  # the wrapper shares the weights; evaluation and checkpoints use self.model
            self.ddp_model = torch.compile(self.ddp_model)
        self.ema = None
        if config.ema:
            self.ema = AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True
            )
        self.epoch = 0
        self.best_value: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0
        self.history: list[dict] = []
        self.tracking = Tracking.open(config, run, world.is_main)  # TensorBoard, MLflow

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, checkpointed and tested: the average when --ema is on."""
        return self.ema.module if self.ema else self.model

    # --- state for --resume -------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "ema": self.ema.state_dict() if self.ema else None,
            "history": self.history,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state(self, state: dict) -> None:
        if "mean" not in state["model"]:  # saved before the model owned its standardisation
            state = self._format_1_state(state)
        state["model"].setdefault("temperature", torch.tensor(1.0))  # saved before models carried one
        if state.get("ema"):
            state["ema"].setdefault("module.temperature", torch.tensor(1.0))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.best_value = state["epoch"], state["best_value"]
        self.best_epoch, self.bad_epochs = state["best_epoch"], state["bad_epochs"]
        if self.ema:
            self.ema.load_state_dict(state["ema"])
        self.history = state.get("history", [])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def _format_1_state(self, state: dict) -> dict:
        """Resume state of a run started by digitlab < 0.2: bare network weights, standardised
        input. The standardisation is the training split's, which this trainer measured again."""
        mean, std = self.model.mean.item(), self.model.std.item()
        state = {**state, "model": classifier_state(state["model"], mean, std)}
        if state.get("ema"):
            averaged = {k[len("module.") :]: v for k, v in state["ema"].items() if k.startswith("module.")}
            state["ema"] = {
                **{"module." + k: v for k, v in classifier_state(averaged, mean, std).items()},
                "n_averaged": state["ema"]["n_averaged"],
            }
        return state

    # --- one epoch ----------------------------------------------------------------------
    def train_one_epoch(self) -> tuple[float, float]:
        """Train on this rank's shard of one shuffled epoch; return (mean loss, accuracy)."""
        config, model = self.config, self.ddp_model
        model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        seen = 0
        batches = self.train_data.batches(
            self.per_rank_batch, shuffle_seed(config.seed, self.epoch), (self.world.rank, self.world.size)
        )
        bar = tqdm(
            batches,
            total=self.steps_per_epoch,
            desc=f"epoch {self.epoch + 1}/{config.epochs}",
            leave=False,
            disable=not self.progress,
            unit="batch",
            dynamic_ncols=True,
        )
        augment_rng = torch.Generator(self.device).manual_seed(shuffle_seed(config.seed, self.epoch) + 1)
        for step, (images, labels) in enumerate(bar):
            if self.augment.active:
                images = self.augment(images, augment_rng)
            if step == 0 and self.epoch == 0:
                self.tracking.first_batch(images)
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bfloat16):
                logits = model(images)
                loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
            self.optimizer.zero_grad()
            loss.backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            if self.ema:
                self.ema.update_parameters(self.model)
            loss_sum += loss.detach() * len(labels)
            correct += (logits.argmax(1) == labels).sum()
            seen += len(labels)
            if self.progress and step % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.4f}")
        totals = torch.stack([loss_sum, correct.double(), torch.tensor(float(seen), device=self.device)])
        loss_total, correct_total, seen_total = distributed.all_reduce_sum(totals, self.world).tolist()
        mean_loss = loss_total / max(seen_total, 1)
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(
                f"loss became {mean_loss} in epoch {self.epoch + 1}; lower the learning rate "
                f"(lr={config.lr}). The best checkpoint so far is kept."
            )
        return mean_loss, correct_total / max(seen_total, 1)

    def improved(self, val: Metrics | None) -> bool:
        if val is None:
            return True  # no validation split: the latest epoch is the best we know
        value = val.accuracy if self.config.monitor == "val_acc" else -val.loss
        if self.best_value is None or value > self.best_value:
            self.best_value = value
            return True
        return False

    def checkpoint_meta(self, val: Metrics | None) -> CheckpointMeta:
        config = self.config
        return CheckpointMeta(
            model=config.model,
            model_kwargs=self.model_kwargs,
            classes=self.train_data.classes,
            dataset=config.data,
            epoch=self.best_epoch,
            val=val.to_dict() if val else None,
            config=config.to_dict(),
        )

    def save_best(self, val: Metrics | None, logits: torch.Tensor | None) -> None:
        """Save the weights being validated as the best checkpoint, with a temperature fitted
        on the validation split from their validation `logits` (the training model itself keeps
        temperature 1)."""
        meta = self.checkpoint_meta(val)
        model = copy.deepcopy(unwrap(self.eval_model))
        if logits is not None:
            labels = self.val_data.labels.cpu()
            temperature = fit_temperature(logits, labels)
            model.temperature.fill_(temperature)
            before, after = (
                calibration(torch.softmax(logits.cpu() / t, 1).numpy(), labels.numpy()).ece
                for t in (1.0, temperature)
            )
            meta.calibration = {"temperature": temperature, "val_ece_before": before, "val_ece_after": after}
        self.run.save_best(model, meta)

    # --- the whole run ------------------------------------------------------------------
    def fit(self) -> TrainResult:
        config, run, main = self.config, self.run, self.world.is_main
        start = time.perf_counter()
        stopped_early = False
        while self.epoch < config.epochs:
            epoch_start = time.perf_counter()
            train_loss, train_acc = self.train_one_epoch()
            val = raw_val = None  # without a validation split there is nothing to measure
            val_logits = None
            if len(self.val_data):
                val_logits = predict_logits(self.eval_model, self.val_data.images, config.eval_batch_size)
                val = metrics_from_logits(val_logits, self.val_data.labels)
                if self.ema:  # the un-averaged weights too, so the average's gain is measured
                    raw_val = evaluate(self.model, self.val_data, config.eval_batch_size)
            self.epoch += 1
            row = {
                "epoch": self.epoch,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_loss": val.loss if val else None,
                "val_acc": val.accuracy if val else None,
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - epoch_start, 3),
            }
            if raw_val:
                row.update(val_loss_raw=raw_val.loss, val_acc_raw=raw_val.accuracy)
            if config.test_each_epoch:
                test_now = evaluate(self.eval_model, self.test_data, config.eval_batch_size)
                row.update(test_loss=test_now.loss, test_acc=test_now.accuracy)
            better = self.improved(val)
            if better:
                self.best_epoch, self.bad_epochs = self.epoch, 0
            else:
                self.bad_epochs += 1
            if main:
                if better:
                    self.save_best(val, val_logits)
                self.history.append(row)
                # the resumable state first: a metrics row never exists without it
                run.save_last(self.state())
                run.write_metrics(self.history)
                val_text = f"val loss {val.loss:.4f} acc {val.accuracy:.4f}  " if val else ""
                if raw_val:
                    val_text += f"(without EMA {raw_val.accuracy:.4f})  "
                self.echo(
                    f"epoch {self.epoch:3d}/{config.epochs}  train loss {train_loss:.4f} acc "
                    f"{train_acc:.4f}  {val_text}lr {row['lr']:.2e}  {row['seconds']:.1f}s"
                    + ("  *best" if better else "")
                )
                self.tracking.epoch(row)
            if self.on_epoch and self.on_epoch(self.epoch, val) is False:
                stopped_early = True
                if main:
                    self.echo(f"stopped after epoch {self.epoch} by its caller (on_epoch)")
                break
            if config.patience and self.bad_epochs >= config.patience:
                stopped_early = True
                if main:
                    self.echo(f"early stop: no {config.monitor} improvement in {config.patience} epochs")
                break
        return self.finish(stopped_early, time.perf_counter() - start)

    def finish(self, stopped_early: bool, seconds: float) -> TrainResult:
        """Reload the best weights, measure them on the test set once (not with --no-test),
        record the result."""
        run, batch_size = self.run, self.config.eval_batch_size
        distributed.broadcast_object(None, self.world)  # wait until rank 0 wrote best
        best = run.load_best(device=str(self.device))
        test = test_last = confusion = None
        if self.config.test_at_end:
            logits = predict_logits(best.model, self.test_data.images, batch_size)
            test = metrics_from_logits(logits, self.test_data.labels)
            # reported beside the best checkpoint's (as report 004 does); never used to choose
            last_is_best = self.best_epoch == self.epoch
            test_last = test if last_is_best else evaluate(self.eval_model, self.test_data, batch_size)
            classes = len(self.train_data.classes)
            confusion = confusion_matrix(logits.argmax(1), self.test_data.labels, classes)
        val = Metrics(**best.meta.val) if best.meta.val else None
        result = RunResult(
            self.best_epoch, self.epoch, stopped_early, val, test, test_last, round(seconds, 3)
        )
        if self.world.is_main:
            run.save_result(result)
            self.tracking.end(result, confusion, self.train_data.classes)
            if test:
                self.echo(
                    f"test accuracy {test.accuracy * 100:.2f}%  ({test.errors} errors of {test.n}, "
                    f"loss {test.loss:.4f}{calibrated(best.meta.calibration)}) with the best epoch "
                    f"{self.best_epoch}"
                )
            else:
                self.echo(
                    f"test set not measured (--no-test): best epoch {self.best_epoch}; "
                    f"`digitlab test {quote(str(run.path))}` measures it"
                )
        return TrainResult(**vars(result), run_dir=run.path)


def train(
    config: TrainConfig,
    resume: str | Path | None = None,
    progress: bool | None = None,
    quiet: bool = False,
    epochs: int | None = None,
    on_epoch: Callable[[int, Metrics | None], bool | None] | None = None,
) -> TrainResult:
    """Train `config` into a new run folder, or continue the run folder `resume` (to `epochs`
    in all, when given: a resumed run can be extended). `on_epoch(epoch, val metrics)` runs
    after each epoch is saved; returning False stops the run there, as early stopping does."""
    world = distributed.current_world()
    with ExitStack() as holding:  # the run folder: this process's alone while it trains
        if resume is not None:
            run = Run.open(resume)
            if world.is_main:
                holding.enter_context(run.held())  # before its temporaries, which a live run writes
            remove_stale_temporaries(run.path)  # left by a kill -9 in the middle of a write
            config = extend_epochs(run.config(), epochs, run)
        validate_config(config)
        if progress is None:
            progress = sys.stderr.isatty() and not quiet
        progress = progress and world.is_main

        device = resolve_device(config.device)
        if world.distributed and device.type == "cuda":
            device = torch.device("cuda", world.local_rank)
        distributed.init_process_group(world, device)

        if world.is_main and resume is None:
            run = Run.create(config)
            holding.enter_context(run.held())
        elif resume is None:
            run = None
        run = distributed.broadcast_object(run, world)

        def echo(line: str) -> None:
            run.log(line)
            if not quiet:
                tqdm.write(line)

        try:
            trainer = Trainer(config, run, progress, echo, world, device, on_epoch)
        except BaseException:
            if resume is None and world.is_main:
                run.discard()  # a run that never started leaves no folder behind
            raise
        if resume is not None and world.is_main and config.epochs != run.config().epochs:
            run.save_config(config)
        if resume is not None and run.has_last():
            trainer.load_state(run.load_last())
            if not trainer.history:  # state saved before it carried the metrics rows
                trainer.history = [r for r in run.metrics() if r["epoch"] <= trainer.epoch]
            if world.is_main:
                echo(f"resuming {run.path} after epoch {trainer.epoch} of {config.epochs}")
        elif resume is not None and world.is_main:
            echo(f"resuming {run.path}: no epoch had finished, so it starts from epoch 1")
        elif world.is_main:
            echo(
                f"run {run.path}: {config.model} on {config.data}, {len(trainer.train_data)} train / "
                f"{len(trainer.val_data)} val / {len(trainer.test_data)} test images, "
                f"device {trainer.device} ({'bfloat16' if trainer.bfloat16 else 'float32'}); "
                f"{len(trainer.train_data.classes)} classes, "
                f"{balance_line(trainer.train_data.class_counts())}"
            )
        with trainer.tracking.start(trainer.epoch):
            try:
                return trainer.fit()
            except KeyboardInterrupt:
                if world.is_main:
                    echo(
                        f"interrupted after epoch {trainer.epoch}; "
                        f"continue with: digitlab train --resume {quote(str(run.path))}"
                    )
                raise
