"""How often `predict --multi` reads a whole written number right: numbers of 2-4 MNIST test
digits side by side, 0-4 pixels apart, upright and slanted (digitlab.analysis.realworld's
written_numbers). One JSON line per set.

    python benchmarks/multi_digit.py [--count 200] [--model default]

"ceiling" is the share of numbers whose digits the model reads right one by one from MNIST's
own 28x28 images: what a perfect split would reach.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from digitlab import load_dataset
from digitlab.analysis.realworld import written_numbers
from digitlab.errors import NoDigitFound
from digitlab.inference import Predictor


def reading(predictor: Predictor, image: bytes) -> str:
    try:
        return "".join(p.label for p in predictor.predict_number(image))
    except NoDigitFound:
        return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="numbers per set")
    parser.add_argument("--model", default="default", help="a shipped model or checkpoint")
    args = parser.parse_args()
    test = load_dataset("mnist", "test")
    predictor = Predictor.from_paths(args.model)
    read_alone = np.array([p.label for p in predictor.predict_mnist(test.images.numpy())])
    right_alone = read_alone == test.labels.numpy().astype(str)
    for slanted, seed in ((False, 0), (True, 1)):
        numbers = written_numbers(test, args.count, seed, slanted)
        start = time.perf_counter()
        read = [reading(predictor, number.image) for number in numbers]
        seconds = time.perf_counter() - start
        row = {
            "set": "slanted" if slanted else "upright",
            "model": args.model,
            "numbers": len(numbers),
            "fully_right": share(got == n.text for got, n in zip(read, numbers, strict=True)),
            "right_digit_count": share(len(got) == len(n.text) for got, n in zip(read, numbers, strict=True)),
            "ceiling": share(right_alone[n.index].all() for n in numbers),
            "ms_per_number": round(seconds / len(numbers) * 1000, 1),
        }
        print(json.dumps(row), flush=True)


def share(flags) -> float:
    flags = list(flags)
    return round(sum(map(bool, flags)) / len(flags), 4)


if __name__ == "__main__":
    main()
