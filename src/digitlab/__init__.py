"""digitlab: train, compare, understand and deploy handwritten-digit recognisers."""

from digitlab._version import __version__
from digitlab.config import PRESETS, TrainConfig, preset_config
from digitlab.data import DigitData, load_dataset
from digitlab.engine.checkpoint import Checkpoint, load_checkpoint
from digitlab.engine.evaluate import Metrics, evaluate
from digitlab.engine.train import TrainResult, train
from digitlab.errors import DigitlabError
from digitlab.models import build_model, list_models


def __getattr__(name: str):
    # Predictor pulls in Pillow and SciPy: load it on first use, not with every import
    if name == "Predictor":
        from digitlab.inference import Predictor

        return Predictor
    raise AttributeError(f"module 'digitlab' has no attribute {name!r}")


__all__ = [
    "__version__",
    "Predictor",
    "PRESETS",
    "Checkpoint",
    "DigitData",
    "DigitlabError",
    "Metrics",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "evaluate",
    "list_models",
    "load_checkpoint",
    "load_dataset",
    "preset_config",
    "train",
]
