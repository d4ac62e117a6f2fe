"""Reading users' images with trained models: the Predictor (single, batch, ensemble) and ONNX export."""

from digitlab.inference.predictor import Prediction, Predictor

__all__ = ["Prediction", "Predictor"]
