"""Optimisers and learning-rate schedules named by a TrainConfig."""

from __future__ import annotations

import torch
from torch import nn

from digitlab.config import TrainConfig


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    wd = config.weight_decay
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=wd, foreach=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=wd, foreach=True)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=wd,
            foreach=True,
        )
    return torch.optim.Adadelta(params, lr=config.lr, weight_decay=wd, foreach=True)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A scheduler stepped once per batch, so every schedule moves smoothly."""
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.step_size * steps_per_epoch, gamma=config.gamma
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.lr,
            # each phase needs two steps or more (OneCycleLR divides by a phase's length less
            # one): a run of a few batches gets a cycle it does not finish
            total_steps=max(total, 8),
            pct_start=0.25,
            cycle_momentum=config.optimizer == "sgd",
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
