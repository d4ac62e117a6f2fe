"""Optimisers and learning-rate schedules named by a TrainConfig.

digitlab computes them itself instead of using torch.optim: the first call into any
torch.optim optimiser imports torch._dynamo (about 3 s on a 2-core CPU, a quarter of
`digitlab train --preset fast`). The update rules are torch.optim's, step for step (a test
compares them), and the state_dict layout is torch.optim's too, so checkpoints written
before this change still resume.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from digitlab.config import TrainConfig

Tensors = list[torch.Tensor]


class Optimizer:
    """One parameter group; `step()` updates every parameter that has a gradient."""

    state_names: tuple[str, ...] = ()  # per-parameter state tensors made at the first step

    def __init__(self, params, **hyperparameters):
        self.params = list(params)  # indexed as torch.optim indexes them in a state_dict
        self.param_groups = [dict(hyperparameters)]
        self.state: dict[int, dict] = {}  # per parameter: "step" (a float) and its tensors

    def zero_grad(self) -> None:
        """Drop the gradients (as torch.optim's set_to_none=True does): the next backward
        writes fresh ones instead of adding to zeros."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        for i in live:
            if i not in self.state:
                p = self.params[i]
                self.state[i] = {"step": 0.0} | {
                    name: torch.zeros_like(p, memory_format=torch.preserve_format)
                    for name in self.state_names
                }
        states = [self.state[i] for i in live]
        for s in states:
            s["step"] += 1
        params = [self.params[i] for i in live]
        self.update(params, [p.grad for p in params], states, self.param_groups[0])

    def update(self, params: Tensors, grads: Tensors, states: list[dict], group: dict) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        group = {**self.param_groups[0], "params": list(range(len(self.params)))}
        return {"state": dict(self.state), "param_groups": [group]}

    def load_state_dict(self, saved: dict) -> None:
        """Load a state_dict of this class or of the torch.optim optimiser of the same name."""
        group = dict(saved["param_groups"][0])
        if len(saved["param_groups"]) != 1 or len(group.pop("params")) != len(self.params):
            raise ValueError("the saved optimiser state is for a different set of parameters")
        self.param_groups[0].update({k: v for k, v in group.items() if k in self.param_groups[0]})
        self.state = {
            int(i): {"step": float(s.get("step", 0.0))}  # torch.optim saves a tensor, SGD none
            | {
                name: value.to(self.params[int(i)], copy=True)
                for name, value in s.items()
                if name != "step" and value is not None
            }
            for i, s in saved["state"].items()
        }


def with_weight_decay(params: Tensors, grads: Tensors, weight_decay: float) -> Tensors:
    """L2 regularisation folded into the gradients (not decoupled, as in AdamW)."""
    return torch._foreach_add(grads, params, alpha=weight_decay) if weight_decay else grads


class Adam(Optimizer):
    """Adam (Kingma & Ba); `decoupled=True` gives AdamW's weight decay (Loshchilov & Hutter)."""

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr, weight_decay=0.0, decoupled=False, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)
        self.decoupled = decoupled

    def update(self, params, grads, states, group):
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if self.decoupled:
            torch._foreach_mul_(params, 1 - lr * wd)
        else:
            grads = with_weight_decay(params, grads, wd)
        exp_avg = [s["exp_avg"] for s in states]
        exp_avg_sq = [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
        steps = [s["step"] for s in states]
        denominator = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denominator, [(1 - beta2**t) ** 0.5 for t in steps])
        torch._foreach_add_(denominator, eps)
        torch._foreach_addcdiv_(params, exp_avg, denominator, [-lr / (1 - beta1**t) for t in steps])


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum."""

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)

    def update(self, params, grads, states, group):
        grads = with_weight_decay(params, grads, group["weight_decay"])
        momentum = group["momentum"]
        if momentum:
            for grad, s in zip(grads, states, strict=True):
                if "momentum_buffer" in s:
                    s["momentum_buffer"].mul_(momentum).add_(grad)
                else:
                    s["momentum_buffer"] = grad.detach().clone()
            buffers = [s["momentum_buffer"] for s in states]
            grads = torch._foreach_add(grads, buffers, alpha=momentum) if group["nesterov"] else buffers
        torch._foreach_add_(params, grads, alpha=-group["lr"])


class Adadelta(Optimizer):
    """Adadelta (Zeiler), with torch.optim's defaults rho 0.9, eps 1e-6."""

    state_names = ("square_avg", "acc_delta")

    def __init__(self, params, lr, weight_decay=0.0, rho=0.9, eps=1e-6):
        super().__init__(params, lr=lr, weight_decay=weight_decay, rho=rho, eps=eps)

    def update(self, params, grads, states, group):
        rho, eps = group["rho"], group["eps"]
        grads = with_weight_decay(params, grads, group["weight_decay"])
        square_avg = [s["square_avg"] for s in states]
        acc_delta = [s["acc_delta"] for s in states]
        torch._foreach_mul_(square_avg, rho)
        torch._foreach_addcmul_(square_avg, grads, grads, 1 - rho)
        std = torch._foreach_sqrt(torch._foreach_add(square_avg, eps))
        deltas = torch._foreach_sqrt(torch._foreach_add(acc_delta, eps))
        torch._foreach_div_(deltas, std)
        torch._foreach_mul_(deltas, grads)
        torch._foreach_mul_(acc_delta, rho)
        torch._foreach_addcmul_(acc_delta, deltas, deltas, 1 - rho)
        torch._foreach_add_(params, deltas, alpha=-group["lr"])


def build_optimizer(model: nn.Module, config: TrainConfig) -> Optimizer:
    params, lr, wd = model.parameters(), config.lr, config.weight_decay
    if config.optimizer in ("adam", "adamw"):
        return Adam(params, lr, weight_decay=wd, decoupled=config.optimizer == "adamw")
    if config.optimizer == "sgd":
        return SGD(params, lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=wd)
    return Adadelta(params, lr, weight_decay=wd)


def cosine_between(start: float, end: float, fraction: float) -> float:
    return end + (start - end) / 2 * (math.cos(math.pi * fraction) + 1)


class Schedule:
    """The learning rate (and, for one-cycle SGD, the momentum) as a function of the batch
    count, written into the optimiser after every batch, so every schedule moves smoothly;
    the formulas are torch.optim's
    StepLR, CosineAnnealingLR and OneCycleLR (div_factor 25, final_div_factor 1e4)."""

    ONE_CYCLE_MOMENTUM = (0.95, 0.85)  # OneCycleLR's max and base momentum, for SGD

    def __init__(self, optimizer: Optimizer, config: TrainConfig, steps_per_epoch: int):
        self.optimizer, self.config, self.steps_per_epoch = optimizer, config, steps_per_epoch
        # each one-cycle phase needs two steps or more (a phase's length less one divides):
        # a run of a few batches gets a cycle it does not finish
        self.total = max(1, config.epochs * steps_per_epoch)
        if config.schedule == "onecycle":
            self.total = max(self.total, 8)
        self.last_epoch = 0  # batches done; torch's name, kept for old checkpoints
        self.apply()

    def lr_and_momentum(self, step: int) -> tuple[float, float | None]:
        config, lr = self.config, self.config.lr
        if config.schedule == "step":
            return lr * config.gamma ** (step // (config.step_size * self.steps_per_epoch)), None
        if config.schedule == "cosine":
            return cosine_between(lr, 0.0, step / self.total), None
        if config.schedule != "onecycle":
            return lr, None
        initial = lr / 25
        turn = 0.25 * self.total - 1
        if step <= turn:
            fraction, ends = step / turn, ((initial, lr), self.ONE_CYCLE_MOMENTUM)
        else:
            fraction = (step - turn) / (self.total - 1 - turn)
            ends = ((lr, initial / 1e4), self.ONE_CYCLE_MOMENTUM[::-1])
        momentum = cosine_between(*ends[1], fraction) if config.optimizer == "sgd" else None
        return cosine_between(*ends[0], fraction), momentum

    def apply(self) -> None:
        lr, momentum = self.lr_and_momentum(self.last_epoch)
        group = self.optimizer.param_groups[0]
        group["lr"] = lr
        if momentum is not None:
            group["momentum"] = momentum

    def step(self) -> None:
        self.last_epoch += 1
        self.apply()

    def state_dict(self) -> dict:
        return {"last_epoch": self.last_epoch}

    def load_state_dict(self, saved: dict) -> None:
        """Load a state_dict of this class or of the torch.optim scheduler it replaces."""
        self.last_epoch = int(saved["last_epoch"])
        self.apply()
