"""The one training loop for every model: train, validate, checkpoint, resume, test."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from digitlab.config import TrainConfig
from digitlab.data.augment import AffineAugment
from digitlab.data.digitdata import normalize
from digitlab.data.info import balance_line
from digitlab.data.sources import load_dataset, load_training_set
from digitlab.engine import distributed
from digitlab.engine.checkpoint import load_checkpoint, save_checkpoint, unwrap
from digitlab.engine.evaluate import Metrics, evaluate
from digitlab.engine.optim import build_optimizer, build_scheduler
from digitlab.engine.runs import RunFolder
from digitlab.errors import ConfigError, DataError, TrainingDiverged
from digitlab.fileio import remove_stale_temporaries
from digitlab.models import build_model


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    best_val: dict
    test: Metrics
    epochs_run: int
    stopped_early: bool
    seconds: float


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


class Trainer:
    """Holds one run's model, data and state; `run()` trains to the end."""

    def __init__(
        self,
        config: TrainConfig,
        run: RunFolder | None,
        progress: bool,
        echo: Callable[[str], None],
        world: distributed.World,
        device: torch.device,
    ):
        self.config, self.run_folder, self.progress, self.echo, self.world = (
            config,
            run,
            progress,
            echo,
            world,
        )
        self.device = device
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)

        full = load_training_set(config.data, config.train_limit)
        self.train_data, self.val_data = (
            d.to(self.device) for d in full.split(config.val_split, config.seed)
        )
        self.test_data = load_dataset(config.data, "test").to(self.device)
        if self.test_data.classes != full.classes:
            raise DataError(f"{config.data}: the test split's classes differ from the training split's")
        self.mean, self.std = self.train_data.pixel_stats()
        self.augment = AffineAugment(config.aug_rotate, config.aug_scale, config.aug_shift, config.aug_shear)

        # the output layer is sized from the data set: 10 digits, 26 letters, 47 EMNIST classes
        self.model_kwargs = {**config.model_kwargs, "num_classes": len(full.classes)}
        model = build_model(config.model, **self.model_kwargs).to(self.device)
        self.model = model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, config)
        self.per_rank_batch = max(1, config.batch_size // world.size)
        self.steps_per_epoch = math.ceil(math.ceil(len(self.train_data) / world.size) / self.per_rank_batch)
        self.scheduler = build_scheduler(self.optimizer, config, self.steps_per_epoch)
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
                images = self.augment(images.float(), augment_rng)
            inputs = normalize(images, self.mean, self.std).contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.device.type == "cuda"):
                logits = model(inputs)
                loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
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

    def checkpoint_meta(self, val: Metrics | None) -> dict:
        """best.json's content; finish() adds the test metrics once they are measured."""
        config = self.config
        return {
            "model": config.model,
            "model_kwargs": self.model_kwargs,
            "normalization": {"mean": self.mean, "std": self.std},
            "classes": self.train_data.classes,
            "dataset": config.data,
            "epoch": self.best_epoch,
            "metrics": {"val": val.to_dict() if val else None, "test": None},
            "config": config.to_dict(),
        }

    # --- the whole run ------------------------------------------------------------------
    def run(self) -> TrainResult:
        config, run, main = self.config, self.run_folder, self.world.is_main
        start = time.perf_counter()
        stopped_early = False
        while self.epoch < config.epochs:
            epoch_start = time.perf_counter()
            train_loss, train_acc = self.train_one_epoch()
            val = raw_val = None  # without a validation split there is nothing to measure
            if len(self.val_data):
                val = evaluate(self.eval_model, self.val_data, self.mean, self.std, config.eval_batch_size)
                if self.ema:  # the un-averaged weights too, so the average's gain is measured
                    raw_val = evaluate(self.model, self.val_data, self.mean, self.std, config.eval_batch_size)
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
            better = self.improved(val)
            if better:
                self.best_epoch, self.bad_epochs = self.epoch, 0
            else:
                self.bad_epochs += 1
            if main:
                if better:
                    save_checkpoint(run.best_stem, self.eval_model, self.checkpoint_meta(val))
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
            if config.patience and self.bad_epochs >= config.patience:
                stopped_early = True
                if main:
                    self.echo(f"early stop: no {config.monitor} improvement in {config.patience} epochs")
                break
        return self.finish(stopped_early, time.perf_counter() - start)

    def finish(self, stopped_early: bool, seconds: float) -> TrainResult:
        """Reload the best weights, measure them on the test set once, record the result."""
        run = self.run_folder
        distributed.broadcast_object(None, self.world)  # wait until rank 0 wrote best
        best = load_checkpoint(run.best_stem.with_suffix(".safetensors"), device=str(self.device))
        best_val = best.meta["metrics"]["val"]
        test = evaluate(best.model, self.test_data, self.mean, self.std, self.config.eval_batch_size)
        # reported beside the best checkpoint's (as report 004 does); never used to choose
        test_last = test
        if self.best_epoch != self.epoch:
            test_last = evaluate(
                self.eval_model, self.test_data, self.mean, self.std, self.config.eval_batch_size
            )
        result = TrainResult(run.path, self.best_epoch, best_val, test, self.epoch, stopped_early, seconds)
        if self.world.is_main:
            meta = {k: v for k, v in best.meta.items() if k != "versions"}
            meta["metrics"]["test"] = test.to_dict()
            save_checkpoint(run.best_stem, best.model, meta)
            run.save_result(
                {
                    "best_epoch": self.best_epoch,
                    "epochs_run": self.epoch,
                    "stopped_early": stopped_early,
                    "val": best_val,
                    "test": test.to_dict(),
                    "test_last": test_last.to_dict(),
                    "train_seconds": round(seconds, 3),
                }
            )
            self.echo(
                f"test accuracy {test.accuracy * 100:.2f}%  ({test.errors} errors of {test.n}, "
                f"loss {test.loss:.4f}) with the best epoch {self.best_epoch}"
            )
        return result


def train(
    config: TrainConfig,
    resume: str | Path | None = None,
    progress: bool | None = None,
    quiet: bool = False,
) -> TrainResult:
    """Train `config` into a new run folder, or continue the run folder `resume`."""
    world = distributed.current_world()
    if resume is not None:
        run = RunFolder.existing(resume)
        remove_stale_temporaries(run.path)  # left by a kill -9 in the middle of a write
        config = run.config()
    config.validate()
    if progress is None:
        progress = sys.stderr.isatty() and not quiet
    progress = progress and world.is_main

    device = resolve_device(config.device)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    distributed.init_process_group(world, device)

    if world.is_main and resume is None:
        run = RunFolder.create(config)
    elif resume is None:
        run = None
    run = distributed.broadcast_object(run, world)

    def echo(line: str) -> None:
        run.log(line)
        if not quiet:
            tqdm.write(line)

    trainer = Trainer(config, run, progress, echo, world, device)
    if resume is not None:
        trainer.load_state(run.load_last())
        if not trainer.history:  # state saved before it carried the metrics rows
            trainer.history = [r for r in run.read_metrics() if r["epoch"] <= trainer.epoch]
        if world.is_main:
            echo(f"resuming {run.path} after epoch {trainer.epoch}")
    elif world.is_main:
        echo(
            f"run {run.path}: {config.model} on {config.data}, {len(trainer.train_data)} train / "
            f"{len(trainer.val_data)} val / {len(trainer.test_data)} test images, device {trainer.device}; "
            f"{len(trainer.train_data.classes)} classes, {balance_line(trainer.train_data.class_counts())}"
        )
    try:
        return trainer.run()
    except KeyboardInterrupt:
        if world.is_main:
            echo(
                f"interrupted after epoch {trainer.epoch}; continue with: digitlab train --resume {run.path}"
            )
        raise
