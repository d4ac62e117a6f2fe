"""Printed characters as images, and which characters could be read as digits.

Below `data` (training outliers) and `analysis` (the real-world suite), which draw from
different font families so that the suite evaluates fonts no training saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_FOLDERS = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts"]
# letters and symbols a person could read as a digit (O/0, l/1, S/5, Z/2, B/8, g/9, b/6, ...)
DIGIT_LOOKALIKES = set("OoQDIlijJSsZzBbGgqTt|/\\()[]!")
LETTERS = "".join(
    c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in DIGIT_LOOKALIKES
)
SYMBOLS = "+#@%&?*=~<>{}÷§€£¥©®¶∞√∑Ω"


def font_files(family: str = "") -> list[Path]:
    """The TrueType/OpenType fonts installed here whose file name starts with `family`."""
    found = {p for folder in FONT_FOLDERS if folder.is_dir() for p in folder.rglob("*.[ot]tf")}
    return sorted((p for p in found if p.name.startswith(family)), key=lambda p: p.name)


def printed(text: str, font: Path, rng: np.random.Generator) -> Image.Image:
    """`text` printed in `font`: random size, slight rotation, either polarity, grey levels."""
    size = int(rng.choice([18, 28, 48, 96]))
    face = ImageFont.truetype(str(font), size)
    canvas = Image.new("L", (size * 3, size * 3), 0)
    ImageDraw.Draw(canvas).text((size * 1.5, size * 1.5), text, fill=255, font=face, anchor="mm")
    ink = np.asarray(canvas.rotate(rng.uniform(-12, 12), Image.Resampling.BICUBIC), dtype=np.float64) / 255
    paper, ink_level = rng.uniform(190, 255), rng.uniform(0, 110)
    if rng.random() < 0.5:  # light on dark
        paper, ink_level = 255 - paper, 255 - ink_level
    return Image.fromarray(np.clip(paper * (1 - ink) + ink_level * ink, 0, 255).astype(np.uint8), mode="L")
