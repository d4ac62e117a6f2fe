"""Layer table of a model (output shapes, parameters, sizes), made by torchinfo."""

from __future__ import annotations

from torchinfo import summary

from digitlab.models import build_model


def model_summary(name: str, batch_size: int = 1, **kwargs) -> str:
    model = build_model(name, **kwargs)
    stats = summary(
        model,
        input_size=(batch_size, 1, 28, 28),
        col_names=("output_size", "num_params", "kernel_size"),
        depth=3,
        verbose=0,
        device="cpu",
    )
    # torchinfo 1.8 prints its unit enum on Python 3.11 ("Units.MEGABYTES"): name the unit
    return f"{name}\n{stats}".replace("(Units.MEGABYTES)", "(M)").replace("(Units.GIGABYTES)", "(G)")
