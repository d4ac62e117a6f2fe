"""digitlab: train, compare, understand and deploy handwritten-digit recognisers."""

__version__ = "0.1.0"

from digitlab.config import PRESETS, TrainConfig, preset_config  # noqa: E402
from digitlab.data import DigitData, load_dataset  # noqa: E402
from digitlab.engine.checkpoint import Checkpoint, load_checkpoint  # noqa: E402
from digitlab.engine.evaluate import Metrics, evaluate  # noqa: E402
from digitlab.engine.train import TrainResult, train  # noqa: E402
from digitlab.errors import DigitlabError  # noqa: E402
from digitlab.models import build_model, list_models  # noqa: E402


def __getattr__(name: str):
    # Predictor pulls in Pillow and SciPy: load it on first use, not with every import
    if name == "Predictor":
        from digitlab.inference import Predictor

        return Predictor
    raise AttributeError(f"module 'digitlab' has no attribute {name!r}")


__all__ = [
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
