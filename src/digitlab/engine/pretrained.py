"""The models that ship inside the package: named weights, each with its model card.

`digitlab/pretrained/models.json` lists them; `benchmarks/model_card.py` writes an entry
from a finished run (or, for an ensemble, from shipped models), measuring every figure of the
card. A shipped model's name works wherever a checkpoint path does (an existing path of that
name wins); an ensemble's name stands for its members' weights, averaged wherever several
checkpoints are.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from digitlab.errors import CheckpointError

CARDS_FILE = "models.json"
DEFAULT_MODEL = "default"  # what predict and serve use when given no checkpoint


@dataclass
class ModelCard:
    """What a shipped model is, how it was made and what it measures."""

    name: str
    summary: str
    architecture: str
    parameters: int
    training_data: str  # the sources training used
    command: str  # reproduces the weights
    mnist_test: dict  # accuracy, errors, n: the test set, measured once
    calibration: dict  # expected calibration error on the MNIST test set
    realworld: list[dict] = field(default_factory=list)  # rows of benchmarks/realworld.py
    size_bytes: int = 0
    latency_ms: dict = field(default_factory=dict)  # one image, decode + preprocess + model
    data_license: str = ""
    file: str = ""  # the weights, in digitlab/pretrained/; empty for an ensemble
    sha256: str = ""
    members: list[str] = field(default_factory=list)  # an ensemble: the shipped models it averages

    def to_dict(self) -> dict:
        return asdict(self)

    def calibration_text(self) -> str:
        figures = self.calibration
        text = f"expected calibration error {figures['ece'] * 100:.2f} %"
        if "ece_without_temperature" not in figures:
            return text
        without = f"{figures['ece_without_temperature'] * 100:.2f} % without"
        if "temperature" in figures:
            return text + f" (temperature {figures['temperature']:.2f}; {without})"
        return text + f" ({without} the members' temperatures)"

    def text(self) -> str:
        """The card as a person reads it."""
        test = self.mnist_test
        lines = [
            f"{self.name}: {self.summary}",
            f"  architecture   {self.architecture} ({self.parameters:,} parameters)",
            *([f"  averages       {', '.join(self.members)}"] if self.members else []),
            f"  trained on     {self.training_data}",
            f"  reproduce      {self.command}",
            f"  MNIST test     {test['accuracy'] * 100:.2f} % ({test['errors']} errors of {test['n']:,})"
            + (
                f"; the digit read right {test['label_accuracy'] * 100:.2f} %, "
                f"verdict 'digit' for {test['verdict_digit'] * 100:.2f} %"
                if "verdict_digit" in test
                else ""
            ),
            f"  calibration    {self.calibration_text()}",
            f"  size           {self.size_bytes / 1024:.0f} KiB"
            + (f", sha256 {self.sha256}" if self.sha256 else " (its members' files)"),
        ]
        if self.latency_ms:
            lines.append(
                f"  CPU latency    p50 {self.latency_ms['p50']:.1f} ms per image (decode, preprocess, model)"
            )
        if self.realworld:
            lines.append("  real-world suite (accuracy / accepted as a digit; non-digits: rejected):")
            for row in self.realworld:
                figures = (
                    f"{row['accuracy'] * 100:5.1f} % / {row['accepted'] * 100:5.1f} %"
                    if "accuracy" in row
                    else f"rejected {row['rejected'] * 100:5.1f} %"
                )
                lines.append(f"    {row['set']:<10} {figures}")
        lines.append(f"  data licence   {self.data_license}")
        return "\n".join(lines)


def pretrained_folder() -> Path:
    return Path(str(resources.files("digitlab") / "pretrained"))


@functools.cache
def model_cards() -> dict[str, ModelCard]:
    """Every shipped model's card, by name."""
    path = pretrained_folder() / CARDS_FILE
    if not path.exists():
        return {}
    return {entry["name"]: ModelCard(**entry) for entry in json.loads(path.read_text())}


def model_card(name: str) -> ModelCard:
    cards = model_cards()
    if name not in cards:
        known = ", ".join(cards) or "none"
        raise CheckpointError(f"no shipped model named {name!r}; shipped: {known}")
    return cards[name]


def shipped_weights(name: str) -> list[Path]:
    """The weight files of the shipped model `name`: its one file, or an ensemble's members'
    files in order; empty when no model ships by that name."""
    card = model_cards().get(str(name))
    if card is None:
        return []
    if card.members:
        return [path for member in card.members for path in shipped_weights(member)]
    return [pretrained_folder() / card.file]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
