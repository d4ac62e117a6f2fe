"""Model zoo: every architecture is built by name through the registry."""

from digitlab.models import modern, seeds  # noqa: F401  (registers the models)
from digitlab.models.registry import (
    build_model,
    count_parameters,
    list_models,
    model_description,
    register_model,
)

__all__ = ["build_model", "count_parameters", "list_models", "model_description", "register_model"]
