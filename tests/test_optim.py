"""digitlab's own optimisers and schedules follow torch.optim step for step, read its
checkpoints, and keep torch._dynamo out of a training run."""

import copy
import subprocess
import sys

import pytest
import torch

from digitlab.config import TrainConfig
from digitlab.engine.optim import Schedule, build_optimizer

TORCH_EQUIVALENT = {
    "adam": lambda p, c: torch.optim.Adam(p, lr=c.lr, weight_decay=c.weight_decay),
    "adamw": lambda p, c: torch.optim.AdamW(p, lr=c.lr, weight_decay=c.weight_decay),
    "sgd": lambda p, c: torch.optim.SGD(
        p, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay
    ),
    "adadelta": lambda p, c: torch.optim.Adadelta(p, lr=c.lr, weight_decay=c.weight_decay),
}
TORCH_SCHEDULE = {
    "none": lambda o, c, total: torch.optim.lr_scheduler.LambdaLR(o, lambda step: 1.0),
    "step": lambda o, c, total: torch.optim.lr_scheduler.StepLR(o, step_size=c.step_size * 5, gamma=c.gamma),
    "cosine": lambda o, c, total: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total),
    "onecycle": lambda o, c, total: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=c.lr, total_steps=total, pct_start=0.25, cycle_momentum=c.optimizer == "sgd"
    ),
}
SETUPS = [
    dict(optimizer="adam", schedule="onecycle", weight_decay=1e-4),
    dict(optimizer="adamw", schedule="cosine", weight_decay=5e-2),
    dict(optimizer="sgd", schedule="onecycle", momentum=0.9, nesterov=True, weight_decay=1e-4),
    dict(optimizer="sgd", schedule="step", momentum=0.5, step_size=1, gamma=0.5),
    dict(optimizer="sgd", schedule="none", momentum=0.0),
    dict(optimizer="adadelta", schedule="none", lr=1.0, weight_decay=1e-3),
]


def two_models():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 36, 3))
    return model, copy.deepcopy(model)


def train_steps(model, optimizer, scheduler, steps, seed=1):
    generator = torch.Generator().manual_seed(seed)
    lrs = []
    for _ in range(steps):
        images, labels = (
            torch.randn(16, 1, 8, 8, generator=generator),
            torch.randint(0, 3, (16,), generator=generator),
        )
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def assert_same_weights(model, reference):
    for mine, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("setup", SETUPS, ids=lambda s: f"{s['optimizer']}-{s['schedule']}")
def test_updates_and_learning_rates_match_torch_optim(setup):
    config = TrainConfig(**{"lr": 3e-3, "epochs": 4, **setup})
    ours_model, torch_model = two_models()
    ours = build_optimizer(ours_model, config)
    ours_schedule = Schedule(ours, config, steps_per_epoch=5)
    theirs = TORCH_EQUIVALENT[config.optimizer](torch_model.parameters(), config)
    theirs_schedule = TORCH_SCHEDULE[config.schedule](theirs, config, 20)
    assert train_steps(ours_model, ours, ours_schedule, 20) == pytest.approx(
        train_steps(torch_model, theirs, theirs_schedule, 20), rel=1e-12, abs=1e-15
    )
    assert_same_weights(ours_model, torch_model)


@pytest.mark.parametrize("setup", SETUPS[:4], ids=lambda s: f"{s['optimizer']}-{s['schedule']}")
def test_a_torch_optim_checkpoint_resumes_where_it_stopped(setup):
    """Runs interrupted before digitlab had its own optimisers saved torch.optim's state."""
    config = TrainConfig(**{"lr": 3e-3, "epochs": 4, **setup})
    torch_model, resumed_model = two_models()
    theirs = TORCH_EQUIVALENT[config.optimizer](torch_model.parameters(), config)
    theirs_schedule = TORCH_SCHEDULE[config.schedule](theirs, config, 20)
    train_steps(torch_model, theirs, theirs_schedule, 10)
    resumed_model.load_state_dict(torch_model.state_dict())
    ours = build_optimizer(resumed_model, config)
    ours_schedule = Schedule(ours, config, steps_per_epoch=5)
    ours.load_state_dict(theirs.state_dict())
    ours_schedule.load_state_dict(theirs_schedule.state_dict())
    train_steps(torch_model, theirs, theirs_schedule, 10, seed=2)
    train_steps(resumed_model, ours, ours_schedule, 10, seed=2)
    assert_same_weights(resumed_model, torch_model)


def test_a_state_for_other_parameters_is_refused():
    config = TrainConfig(optimizer="adam")
    small = build_optimizer(torch.nn.Linear(2, 2), config)
    larger = build_optimizer(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)), config)
    with pytest.raises(ValueError, match="different set of parameters"):
        small.load_state_dict(larger.state_dict())


@pytest.mark.slow  # a real (short) training run
def test_training_never_imports_torch_dynamo(tmp_path):
    """torch._dynamo's import is seconds of every `digitlab train`; nothing in a run needs it
    (gradient clipping and weight averaging included)."""
    script = (
        "import sys\n"
        "from digitlab.config import preset_config\n"
        "from digitlab.engine.train import train\n"
        f"config = preset_config('fast', train_limit=600, grad_clip=1.0, ema=0.99, out_dir=r'{tmp_path}')\n"
        "train(config, quiet=True)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
