"""Self-describing checkpoints: safetensors weights + a JSON sidecar. Loading never unpickles.

The metadata is stored twice: inside the safetensors header (what loading trusts, so weights
and metadata can never come from two different saves, even after a kill between the two
writes) and as a readable `.json` copy beside it.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from digitlab.data.digitdata import DIGIT_CLASSES
from digitlab.errors import CheckpointError, ConfigError
from digitlab.fileio import atomic_write_bytes, atomic_write_json
from digitlab.models import build_model

# Normalisation the seed reports' code used (transforms.Normalize((0.1307,), (0.3081,)))
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
META_KEY = "digitlab"


@dataclass
class Checkpoint:
    """A loaded model with what is needed to use it."""

    model: nn.Module
    model_name: str
    model_kwargs: dict
    mean: float = MNIST_MEAN
    std: float = MNIST_STD
    classes: list[str] = field(default_factory=lambda: list(DIGIT_CLASSES))
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    def check_classes(self, data) -> None:
        """Refuse to score a model on data with other classes (a Fashion-MNIST model on digits)."""
        if list(data.classes) != list(self.classes):
            raise CheckpointError(
                f"{self.path}: trained on classes {', '.join(self.classes)}; "
                f"{data.name} has {', '.join(data.classes)}"
            )


def versions() -> dict:
    from digitlab import __version__

    return {"digitlab": __version__, "torch": torch.__version__, "python": platform.python_version()}


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel or torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_checkpoint(stem: str | Path, model: nn.Module, meta: dict) -> Path:
    """Write `<stem>.safetensors` and `<stem>.json` atomically; return the weights path."""
    stem = Path(stem)
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    weights = stem.with_suffix(".safetensors")
    meta = {**meta, "versions": versions()}
    # serialised in memory first, so a full disk surfaces as a plain OSError from the write
    atomic_write_bytes(weights, safetensors_bytes(state, metadata={META_KEY: json.dumps(meta)}))
    atomic_write_json(stem.with_suffix(".json"), meta)
    return weights


def _embedded_meta(path: Path) -> dict | None:
    """The metadata saved inside the safetensors header, or None for older checkpoints."""
    try:
        with safe_open(str(path), "pt") as handle:
            text = (handle.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    return json.loads(text) if text else None


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a run folder, `best.safetensors`, `best.json` or a legacy `.pth` file."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.safetensors"
    elif path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    return path


def load_checkpoint(path: str | Path, model_name: str | None = None, device: str = "cpu") -> Checkpoint:
    """Load a digitlab checkpoint, or a seed-style `.pth` state dict when `model_name` is given."""
    path = resolve_checkpoint(path)
    if path.suffix in (".pth", ".pt"):
        return _load_legacy(path, model_name, device)
    meta = _embedded_meta(path) or _sidecar_meta(path)
    name = model_name or meta.get("model")
    kwargs = meta.get("model_kwargs", {})
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    model = _model_with_state(name, kwargs, state, path, device)
    norm = meta.get("normalization", {})
    return Checkpoint(
        model,
        name,
        kwargs,
        norm.get("mean", MNIST_MEAN),
        norm.get("std", MNIST_STD),
        meta.get("classes", list(DIGIT_CLASSES)),
        meta,
        path,
    )


def _sidecar_meta(path: Path) -> dict:
    """Checkpoints from before the metadata moved into the header keep it only in the .json."""
    sidecar = path.with_suffix(".json")
    try:
        return json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{sidecar}: metadata file missing beside {path.name}") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{sidecar}: not valid JSON ({err})") from None


def _load_legacy(path: Path, model_name: str | None, device: str) -> Checkpoint:
    if not model_name:
        raise CheckpointError(f"{path}: a .pth state dict needs --model NAME to say its architecture")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for foreign or broken files
        raise CheckpointError(f"{path}: not a loadable weights-only .pth file ({err})") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
    model = _model_with_state(model_name, {}, state, path, device)
    return Checkpoint(model, model_name, {}, meta={"model": model_name, "legacy": True}, path=path)


def _model_with_state(name, kwargs, state, path: Path, device: str) -> nn.Module:
    try:
        model = build_model(name, **kwargs)
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise CheckpointError(
            f"{path}: weights do not fit model {name!r} (another architecture?): {first}"
        ) from None
    return model.to(device, memory_format=torch.channels_last).eval()
