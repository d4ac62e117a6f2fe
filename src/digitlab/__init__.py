"""digitlab: train, compare, understand and deploy handwritten-digit recognisers."""

from importlib import import_module

from digitlab._version import __version__

# Each public name is imported on first use, so that `import digitlab` (and `digitlab --help`)
# does not pay the seconds torch, Pillow and SciPy take to import.
_EXPORTS = {
    "PRESETS": "digitlab.config",
    "TrainConfig": "digitlab.config",
    "preset_config": "digitlab.config",
    "DigitData": "digitlab.data",
    "load_dataset": "digitlab.data",
    "Checkpoint": "digitlab.engine.checkpoint",
    "load_checkpoint": "digitlab.engine.checkpoint",
    "Metrics": "digitlab.engine.evaluate",
    "evaluate": "digitlab.engine.evaluate",
    "TrainResult": "digitlab.engine.train",
    "train": "digitlab.engine.train",
    "DigitlabError": "digitlab.errors",
    "build_model": "digitlab.models",
    "list_models": "digitlab.models",
    "Predictor": "digitlab.inference",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'digitlab' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = ["__version__", *_EXPORTS]
