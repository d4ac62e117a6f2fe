"""Users' images: MNIST-form preprocessing, the Predictor, and ONNX export."""

from digitlab.inference.predictor import Prediction, Predictor
from digitlab.inference.preprocess import split_digits, to_mnist

__all__ = ["Prediction", "Predictor", "split_digits", "to_mnist"]
