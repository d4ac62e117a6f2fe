"""The model registry: the one way to build a model by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from digitlab.errors import ConfigError

_MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make `build_model(name)` build this class."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model name {name!r} registered twice")
        _MODELS[name] = cls
        return cls

    return add


def list_models() -> list[str]:
    return sorted(_MODELS)


def model_description(name: str) -> str:
    """The first paragraph of the model class's docstring, on one line."""
    doc = inspect.cleandoc(_model_class(name).__doc__ or "")
    return " ".join(doc.split("\n\n")[0].split())


def _model_class(name: str) -> type[nn.Module]:
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return _MODELS[name]


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; unknown names and keyword arguments are ConfigErrors."""
    cls = _model_class(name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, RuntimeError) as err:  # what constructors raise for wrong arguments
        raise ConfigError(f"model {name!r}: bad arguments {kwargs} ({err})") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
