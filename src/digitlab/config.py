"""TrainConfig: every setting of a training run in one typed place, and the named presets."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from digitlab.errors import ConfigError, DataError
from digitlab.fileio import read_limited

MAX_CONFIG_BYTES = 1024 * 1024  # a config is a few hundred bytes

OPTIMIZERS = ("adam", "adamw", "sgd", "adadelta")
SCHEDULES = ("none", "step", "cosine", "onecycle")
MONITORS = ("val_acc", "val_loss")
# auto: bfloat16 on a GPU, float32 on a CPU; fastest: bfloat16 wherever the hardware computes it
# natively (a GPU, a CPU with AMX or AVX-512 BF16), float32 elsewhere
PRECISIONS = ("auto", "fastest", "float32", "bfloat16")
# images per forward pass wherever a model reads many (validation, test, predict, reports): on
# a 2-core CPU 64-256 are about equally fast and 1000 takes 1.3-1.8 times as long, as its
# activations outgrow the cache (`python benchmarks/eval_batch.py`)
EVAL_BATCH_SIZE = 128
SHARES_OF_IMAGES = ("aug_stroke", "aug_lowres", "aug_flip", "aug_erase")  # settings in [0, 1]
MLFLOW_DEFAULT_STORE = "default"  # --mlflow without a URI: MLflow's own default store


def setting(
    default, help: str, *, flag: str = "", choices: tuple = (), cli: bool = True, bare: str | None = None
):
    """A TrainConfig field with what its command-line flag needs: help text, flag name
    (default `--field-name`), allowed values; `cli=False` for fields no flag sets; `bare`: the
    value of the flag given without one. A bool's flag turns it on, or off if it defaults to True."""
    metadata = {"help": help, "flag": flag, "choices": choices, "cli": cli, "bare": bare}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=metadata)
    return field(default=default, metadata=metadata)


def validation_seed(config: dict) -> int:
    """The seed that drew a run's validation split, from its recorded settings: --split-seed, or
    --seed without one (and in runs recorded before --split-seed existed)."""
    split_seed = config.get("split_seed", -1)
    return config["seed"] if split_seed < 0 else split_seed


@dataclass
class TrainConfig:
    """A complete training run. Saved as config.json; feeding it back replays the run.

    Each field's metadata is the one declaration of its command-line flag (see `setting`).
    """

    model: str = setting("fastcnn", "architecture name (see `digitlab models`)")
    model_kwargs: dict = setting({}, "keyword arguments of the model's constructor", cli=False)
    data: str = setting(
        "mnist", "data set name (`digitlab data list`), .npz/.csv file, or folder (idx, tensors, images)"
    )
    train_limit: int = setting(0, "use only the first N training images (0 = all); for quick runs")
    val_split: float = setting(0.1, "fraction of training images held out for validation")
    epochs: int = setting(10, "number of passes over the training split")
    batch_size: int = setting(128, "images per optimiser step (global, across ranks)")
    eval_batch_size: int = setting(EVAL_BATCH_SIZE, "images per forward pass when validating and testing")
    optimizer: str = setting("adam", "optimiser", choices=OPTIMIZERS)
    lr: float = setting(1e-3, "learning rate (peak rate for --schedule onecycle)")
    momentum: float = setting(0.9, "SGD momentum")
    nesterov: bool = setting(False, "Nesterov momentum for SGD")
    weight_decay: float = setting(0.0, "L2 weight decay")
    schedule: str = setting("none", "learning-rate schedule, stepped every batch", choices=SCHEDULES)
    step_size: int = setting(1, "epochs between decays for --schedule step")
    gamma: float = setting(0.7, "decay factor for --schedule step")
    label_smoothing: float = setting(0.0, "cross-entropy label smoothing in [0, 1)")
    aug_rotate: float = setting(0.0, "augment: random rotation, max degrees either way (0 = off)")
    aug_scale: float = setting(0.0, "augment: random zoom, max relative change (0.1 = 0.9..1.1)")
    aug_shift: float = setting(0.0, "augment: random shift, max pixels either way")
    aug_shear: float = setting(0.0, "augment: random shear, max degrees either way")
    aug_aspect: float = setting(0.0, "augment: random width/height change, max relative (0.2 = 0.8..1.2)")
    aug_elastic: float = setting(0.0, "augment: elastic distortion, displacement in pixels (0 = off)")
    aug_stroke: float = setting(0.0, "augment: share of images drawn with a thinner or thicker pen")
    aug_lowres: float = setting(0.0, "augment: share of images seen at 8-14 px and scaled back up")
    aug_blur: float = setting(0.0, "augment: random Gaussian blur, max sigma in pixels")
    aug_gamma: float = setting(0.0, "augment: random ink profile, max |log gamma| (0.5 = 0.6..1.65)")
    aug_noise: float = setting(
        0.0, "augment: random additive noise, max standard deviation (pixels in [0, 1])"
    )
    aug_flip: float = setting(0.0, "augment: share of images mirrored left to right (clothes, not digits)")
    aug_erase: float = setting(
        0.0, "augment: share of images with a random rectangle replaced by noise (random erasing)"
    )
    outliers: float = setting(
        0.0,
        "not-a-digit images added per training image (0.2 = 20 %) as an extra class, so the model "
        "learns to say 'not a digit' (outlier exposure; 0 = off)",
    )
    grad_clip: float = setting(0.0, "clip the gradient norm to this value (0 = off)")
    ema: float = setting(0.0, "keep an exponential moving average of the weights, decay e.g. 0.999 (0 = off)")
    patience: int = setting(0, "stop after this many epochs without improvement (0 = never)")
    test_each_epoch: bool = setting(
        False,
        "also measure the test set after every epoch (test_loss, test_acc in metrics.jsonl), as "
        "reports 000, 001 and 004 did; for reproducing their protocol only: never used to choose",
    )
    test_at_end: bool = setting(
        True,
        "do not measure the test set at the end of training, so nothing is chosen after seeing it; "
        "`digitlab test RUN` measures it once, when the choice on validation is made",
        flag="--no-test",
    )
    monitor: str = setting("val_acc", "validation metric that picks the best checkpoint", choices=MONITORS)
    seed: int = setting(0, "random seed (same seed, same numbers on the CPU)")
    split_seed: int = setting(
        -1,
        "seed of the validation split (-1 = --seed). Runs of different --seed and one --split-seed hold "
        "out the same images, so an ensemble of them can be chosen on those",
    )
    device: str = setting("auto", "auto | cpu | cuda | cuda:N")
    threads: int = setting(0, "CPU threads for torch (0 = torch's default)")
    precision: str = setting(
        "auto",
        "arithmetic of the training steps (weights stay float32): auto = bfloat16 on a GPU, float32 on "
        "a CPU; fastest = bfloat16 also on CPUs that compute it natively (AMX, AVX-512 BF16), "
        "float32 elsewhere",
        choices=PRECISIONS,
    )
    compile: bool = setting(
        False, "torch.compile the model for training (pays off on a GPU; minutes of compiling on a CPU)"
    )
    tensorboard: bool = setting(
        True, "write no TensorBoard event files (default: into RUN/tensorboard/)", flag="--no-tensorboard"
    )
    mlflow: str = setting(
        "",
        "also log the run to MLflow at this tracking URI; without one, MLflow's default store (what "
        "`mlflow ui` shows). Needs pip install 'digitlab[mlflow]'",
        bare=MLFLOW_DEFAULT_STORE,
    )
    out_dir: str = setting("runs", "parent folder for run folders", flag="--out")
    run_name: str = setting("", "run folder name (default <time>-<model>)", flag="--name")
    preset: str = setting("", "the preset this config started from, for the record", cli=False)

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first impossible value; return self.

        The model name is checked by the engine (`validate_config`), which knows the registry.
        """
        checks = [
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0 <= self.val_split < 1, f"val_split must be in [0, 1), got {self.val_split}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.train_limit >= 0, f"train_limit must be >= 0, got {self.train_limit}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (
                min(getattr(self, f.name) for f in fields(self) if f.name.startswith("aug_")) >= 0,
                "augmentation settings must be >= 0",
            ),
            (self.aug_scale < 1, f"aug_scale must be < 1, got {self.aug_scale}"),
            (self.aug_aspect < 1, f"aug_aspect must be < 1, got {self.aug_aspect}"),
            *(
                (
                    getattr(self, name) <= 1,
                    f"{name} is a share of images, at most 1, got {getattr(self, name)}",
                )
                for name in SHARES_OF_IMAGES
            ),
            (self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}"),
            (self.outliers >= 0, f"outliers must be >= 0, got {self.outliers}"),
            (0 <= self.ema < 1, f"ema must be in [0, 1), got {self.ema}"),
            (self.patience >= 0, f"patience must be >= 0, got {self.patience}"),
            (self.momentum >= 0, f"momentum must be >= 0, got {self.momentum}"),
            (self.step_size >= 1, f"step_size must be >= 1, got {self.step_size}"),
            (0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}"),
            (self.threads >= 0, f"threads must be >= 0, got {self.threads}"),
            (self.split_seed >= -1, f"split_seed must be >= 0, or -1 for --seed; got {self.split_seed}"),
            (
                self.optimizer in OPTIMIZERS,
                f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}",
            ),
            (
                self.schedule in SCHEDULES,
                f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}",
            ),
            (
                self.precision in PRECISIONS,
                f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}",
            ),
            (
                self.monitor in MONITORS,
                f"unknown monitor {self.monitor!r}; choose one of: {', '.join(MONITORS)}",
            ),
            (
                self.monitor != "val_loss" or self.val_split > 0 or self.patience == 0,
                "early stopping needs a validation split (val_split > 0)",
            ),
            (
                self.test_at_end or not self.test_each_epoch,
                "--no-test and --test-each-epoch contradict each other: choose one",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    @property
    def validation_seed(self) -> int:
        return validation_seed({"seed": self.seed, "split_seed": self.split_seed})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        try:
            values = json.loads(read_limited(path, MAX_CONFIG_BYTES))
        except DataError as err:
            raise ConfigError(str(err)) from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object of settings")
        return cls.from_dict(values, str(path))


@dataclass(frozen=True)
class Preset:
    description: str
    settings: dict


PRESETS: dict[str, Preset] = {
    "fast": Preset(
        "digitlab's fastest route past 99 %: fastcnn, one epoch of one-cycle Adam, label smoothing 0.1",
        dict(
            model="fastcnn",
            optimizer="adam",
            lr=8e-3,
            batch_size=128,
            epochs=1,
            schedule="onecycle",
            label_smoothing=0.1,
            val_split=0.1,
            precision="fastest",
        ),
    ),
    "best": Preset(
        "digitlab's accuracy set-up: resnet, batch augmentation, label smoothing, 30 epochs of "
        "one-cycle Adam, bfloat16 where native (the shipped 'best'; resnet beat widecnn on validation)",
        dict(
            model="resnet",
            optimizer="adam",
            lr=3e-3,
            batch_size=128,
            epochs=30,
            schedule="onecycle",
            label_smoothing=0.1,
            aug_rotate=10.0,
            aug_scale=0.1,
            aug_shift=2.5,
            val_split=0.1,
            precision="fastest",
        ),
    ),
    "robust": Preset(
        "digits as users have them: widecnn with pen, scan, blur, noise and shape augmentation on the batch, "
        "and a 'not a digit' class (outlier exposure); the recipe of the shipped 'default' model",
        dict(
            model="widecnn",
            optimizer="adam",
            lr=3e-3,
            batch_size=128,
            epochs=24,
            schedule="onecycle",
            label_smoothing=0.1,
            aug_rotate=10.0,
            aug_scale=0.12,
            aug_shift=2.5,
            aug_shear=8.0,
            aug_aspect=0.2,
            aug_elastic=1.5,
            aug_stroke=0.4,
            aug_lowres=0.15,
            aug_blur=0.6,
            aug_gamma=0.3,
            aug_noise=0.04,
            outliers=0.25,
            val_split=0.1,
        ),
    ),
    "fashion": Preset(
        "clothes (Fashion-MNIST): resnet, mirrored and randomly erased images, one-cycle AdamW, 30 epochs",
        dict(
            model="resnet",
            data="fashion-mnist",
            optimizer="adamw",
            lr=3e-3,
            weight_decay=5e-4,
            batch_size=128,
            epochs=30,
            schedule="onecycle",
            label_smoothing=0.1,
            aug_shift=2.0,
            aug_flip=0.5,
            aug_erase=0.5,
            val_split=0.1,
            precision="fastest",
        ),
    ),
    "report-000": Preset(
        "report 000 'Digit': Adam lr 1e-3, batch 64, 10 epochs",
        dict(model="digit", optimizer="adam", lr=1e-3, batch_size=64, epochs=10),
    ),
    "report-001": Preset(
        "report 001 course CNN: SGD lr 0.01 momentum 0.5, batch 64, 12 epochs",
        dict(model="coursecnn", optimizer="sgd", lr=0.01, momentum=0.5, batch_size=64, epochs=12),
    ),
    "report-002": Preset(
        "report 002 MyConvNet: Adam lr 3e-4, wd 1e-5, batch 16, <=32 epochs, patience 8, clip 10",
        dict(
            model="myconvnet",
            optimizer="adam",
            lr=3e-4,
            weight_decay=1e-5,
            batch_size=16,
            epochs=32,
            patience=8,
            grad_clip=10.0,
            val_split=0.1,
        ),
    ),
    "report-003-mlp": Preset(
        "report 003 MLP: SGD lr 0.01 momentum 0.9, batch 64, 10 epochs",
        dict(model="mlp", optimizer="sgd", lr=0.01, momentum=0.9, batch_size=64, epochs=10),
    ),
    "report-003-cnn": Preset(
        "report 003 five-block CNN: SGD lr 0.01 momentum 0.9, batch 64, 10 epochs",
        dict(model="cnn5", optimizer="sgd", lr=0.01, momentum=0.9, batch_size=64, epochs=10),
    ),
    "report-004": Preset(
        "report 004 BN-CNN: Adam lr 1e-3, batch 128, 50 epochs, best by validation loss",
        dict(model="bncnn", optimizer="adam", lr=1e-3, batch_size=128, epochs=50, monitor="val_loss"),
    ),
}


def preset_config(name: str, **overrides) -> TrainConfig:
    """A TrainConfig from a named preset, with `overrides` applied on top."""
    if name not in PRESETS:
        renamed = name.replace("seed-", "report-", 1)
        hint = f" (renamed {renamed!r} in digitlab 0.2)" if renamed in PRESETS else ""
        raise ConfigError(f"unknown preset {name!r}{hint}; choose one of: {', '.join(PRESETS)}")
    return TrainConfig.from_dict({**PRESETS[name].settings, "preset": name, **overrides})
