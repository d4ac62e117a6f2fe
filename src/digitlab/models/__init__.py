"""Model zoo: every architecture is built by name through the registry."""

from digitlab.models import digitlab_models, report_models  # noqa: F401  (registers the models)
from digitlab.models.classifier import (
    MNIST_MEAN,
    MNIST_STD,
    DigitClassifier,
    build_classifier,
    classifier_state,
)
from digitlab.models.registry import (
    build_model,
    count_parameters,
    list_models,
    model_description,
    register_model,
)

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "DigitClassifier",
    "build_classifier",
    "build_model",
    "classifier_state",
    "count_parameters",
    "list_models",
    "model_description",
    "register_model",
]
