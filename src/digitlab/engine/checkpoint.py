"""Self-describing checkpoints: safetensors weights + typed metadata. Loading never unpickles.

The metadata (`CheckpointMeta`) is stored twice: inside the safetensors header (what
loading trusts, so weights and metadata can never come from two different saves, even
after a kill between the two writes) and as a readable `.json` copy beside it.

Formats: 1 kept the input standardisation in the metadata and the bare network's
weights; 2 (current) stores a DigitClassifier, standardisation included. Format 1 files
are converted on load and give the same numbers.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from digitlab._version import __version__
from digitlab.data.digitdata import DIGIT_CLASSES, NOT_A_DIGIT
from digitlab.engine.pretrained import shipped_weights
from digitlab.errors import CheckpointError, ConfigError, DataError
from digitlab.fileio import atomic_write_bytes, atomic_write_json, check_regular_file, load_weights_only
from digitlab.models import MNIST_MEAN, MNIST_STD, DigitClassifier, build_classifier, classifier_state

META_KEY = "digitlab"
MAX_CHECKPOINT_BYTES = 4 * 1024**3  # cnn5's is 34 MB; anything near this is not a checkpoint
FORMAT_VERSION = 2


def versions() -> dict:
    return {"digitlab": __version__, "torch": torch.__version__, "python": platform.python_version()}


@dataclass
class CheckpointMeta:
    """What a checkpoint says about itself: how to build the model and what it was trained on."""

    model: str
    model_kwargs: dict = field(default_factory=dict)
    classes: list[str] = field(default_factory=lambda: list(DIGIT_CLASSES))
    dataset: str = "mnist"
    epoch: int = 0  # the epoch whose weights these are
    val: dict | None = None  # validation metrics of these weights (loss, accuracy, errors, n)
    config: dict = field(default_factory=dict)  # the run's TrainConfig, as saved in config.json
    calibration: dict | None = None  # temperature fitted on validation, ECE before and after
    versions: dict = field(default_factory=versions)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: object, source: str | Path) -> CheckpointMeta:
        """Validated metadata; anything malformed is one CheckpointError naming `source`."""
        if not isinstance(values, dict):
            raise CheckpointError(f"{source}: checkpoint metadata is not a JSON object")
        values = dict(values)
        version = values.get("format_version", 1)
        if version == 1:
            values = _format_1_meta(values)
        elif version != FORMAT_VERSION:
            raise CheckpointError(
                f"{source}: checkpoint format {version!r}; this digitlab {__version__} reads formats "
                f"1 to {FORMAT_VERSION} (made by a newer digitlab?)"
            )
        if "model" not in values:
            raise CheckpointError(f"{source}: checkpoint metadata names no model")
        known = {f.name for f in fields(cls)}
        meta = cls(**{"versions": {}, **{k: v for k, v in values.items() if k in known}})
        meta._check(source)
        return meta

    def _check(self, source) -> None:
        expected = [
            ("model", str, "a model name"),
            ("model_kwargs", dict, "an object of keyword arguments"),
            ("classes", list, "a list of class names"),
            ("dataset", str, "a data set name"),
            ("epoch", int, "an epoch number"),
            ("config", dict, "an object of training settings"),
            ("versions", dict, "an object of versions"),
        ]
        for name, kind, what in expected:
            value = getattr(self, name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise CheckpointError(f"{source}: metadata field {name!r} should be {what}, got {value!r}")
        if not self.classes or not all(isinstance(c, str) for c in self.classes):
            raise CheckpointError(f"{source}: metadata field 'classes' should list class names")
        for name in ("val", "calibration"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), dict):
                raise CheckpointError(f"{source}: metadata field {name!r} should be an object")


def _format_1_meta(values: dict) -> dict:
    """Format 1 kept the standardisation in `normalization` and metrics as {val, test}."""
    old_metrics = values.get("metrics")
    values = {k: v for k, v in values.items() if k not in ("normalization", "metrics")}
    values["val"] = old_metrics.get("val") if isinstance(old_metrics, dict) else None
    values["format_version"] = FORMAT_VERSION
    return values


@dataclass
class Checkpoint:
    """A loaded model (pixels in [0, 1] in, logits out) with its metadata."""

    model: DigitClassifier
    meta: CheckpointMeta
    path: Path | None = None

    @property
    def classes(self) -> list[str]:
        return self.meta.classes

    @property
    def model_name(self) -> str:
        return self.meta.model

    def check_classes(self, data) -> None:
        """Refuse to score a model on data with other classes (a Fashion-MNIST model on digits).
        A model with an extra "not a digit" class reads its data set's classes."""
        readable = [list(self.classes)]
        if self.classes[-1] == NOT_A_DIGIT:
            readable.append(list(self.classes[:-1]))
        if list(data.classes) not in readable:
            raise CheckpointError(
                f"{self.path}: trained on classes {', '.join(self.classes)}; "
                f"{data.name} has {', '.join(data.classes)}"
            )


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel or torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_checkpoint(path: str | Path, model: nn.Module, meta: CheckpointMeta, half: bool = False) -> Path:
    """Write `path` (.safetensors) and its `.json` copy of the metadata atomically; return `path`.
    `half` stores floating-point tensors as float16 (half the bytes); loading casts them back to
    the model's float32."""
    weights = Path(path).with_suffix(".safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    meta_dict = meta.to_dict()
    # serialised in memory first, so a full disk surfaces as a plain OSError from the write
    atomic_write_bytes(weights, safetensors_bytes(state, metadata={META_KEY: json.dumps(meta_dict)}))
    atomic_write_json(weights.with_suffix(".json"), meta_dict)
    return weights


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a run folder, `best.safetensors`, `best.json`, a legacy `.pth` file, or the name
    of a shipped model (`digitlab models`; an existing path of the same name wins)."""
    path = Path(path)
    shipped = shipped_files(path)
    if len(shipped) > 1:
        raise CheckpointError(
            f"{path}: the shipped model {str(path)!r} is an ensemble of {len(shipped)} models; this "
            "command reads one model (test, predict, serve and audit take an ensemble)"
        )
    if shipped:
        return shipped[0]
    if path.is_dir():
        path = path / "best.safetensors"
    elif path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    check_regular_file(path, MAX_CHECKPOINT_BYTES)
    return path


def read_meta(path: str | Path) -> CheckpointMeta:
    """The validated metadata of a checkpoint, without loading its weights."""
    path = resolve_checkpoint(path)
    return CheckpointMeta.from_dict(_raw_meta(path), path)


def load_checkpoints(paths: list[str | Path], model_name: str | None = None) -> list[Checkpoint]:
    """Load several checkpoints to average; a shipped ensemble's name loads each of its members."""
    return [load_checkpoint(path, model_name) for path in with_ensembles_expanded(paths)]


def with_ensembles_expanded(paths: list[str | Path]) -> list[Path]:
    """`paths`, each shipped ensemble's name replaced by its members' weight files (a path wins)."""
    expanded = []
    for path in map(Path, paths):
        shipped = shipped_files(path)
        expanded += shipped if len(shipped) > 1 else [path]
    return expanded


def shipped_files(path: Path) -> list[Path]:
    """The weights of the shipped model named `path`; none when `path` exists (a path wins)."""
    return [] if path.exists() else shipped_weights(str(path))


def load_checkpoint(path: str | Path, model_name: str | None = None, device: str = "cpu") -> Checkpoint:
    """Load a digitlab checkpoint, or a seed-style `.pth` state dict when `model_name` is given."""
    path = resolve_checkpoint(path)
    if path.suffix in (".pth", ".pt"):
        return _load_legacy(path, model_name, device)
    raw = _raw_meta(path)
    meta = CheckpointMeta.from_dict(raw, path)
    if model_name:
        meta.model = model_name
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if raw.get("format_version", 1) == 1:
        norm = raw.get("normalization") or {}
        state = classifier_state(state, norm.get("mean", MNIST_MEAN), norm.get("std", MNIST_STD))
    return Checkpoint(_model_with_state(meta.model, meta.model_kwargs, state, path, device), meta, path)


def _raw_meta(path: Path) -> dict:
    """The metadata dict saved inside the safetensors header, else (older files) in the .json."""
    try:
        with safe_open(str(path), "pt") as handle:
            text = (handle.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if not text:
        return _sidecar_meta(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: metadata in the header is not valid JSON ({err})") from None


def _sidecar_meta(path: Path) -> dict:
    """Checkpoints from before the metadata moved into the header keep it only in the .json."""
    sidecar = path.with_suffix(".json")
    try:
        return json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{sidecar}: metadata file missing beside {path.name}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{sidecar}: not valid JSON ({err})") from None


def _load_legacy(path: Path, model_name: str | None, device: str) -> Checkpoint:
    """A seed report's `.pth` state dict: a bare network trained on MNIST-standardised input."""
    if not model_name:
        raise CheckpointError(f"{path}: a .pth state dict needs --model NAME to say its architecture")
    try:
        state = load_weights_only(path, MAX_CHECKPOINT_BYTES)
    except DataError as err:
        raise CheckpointError(str(err)) from None
    if isinstance(state, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
    state = classifier_state(state, MNIST_MEAN, MNIST_STD)
    meta = CheckpointMeta(model_name, versions={})
    return Checkpoint(_model_with_state(model_name, {}, state, path, device), meta, path)


def _model_with_state(name: str, kwargs: dict, state: dict, path: Path, device: str) -> DigitClassifier:
    try:
        model = build_classifier(name, **kwargs)
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None
    state.setdefault("temperature", torch.tensor(1.0))  # saved before models carried one
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise CheckpointError(
            f"{path}: weights do not fit model {name!r} (another architecture?): {first}"
        ) from None
    return model.to(device, memory_format=torch.channels_last).eval()
