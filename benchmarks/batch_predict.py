"""End-to-end batch prediction: `digitlab predict` on a folder of 10,000 small PNGs.

    python benchmarks/batch_predict.py [--model fast] [--count 10000] [--workers 0]

Writes MNIST's test digits as 28x28 dark-on-light PNGs into a temporary folder, then times
the whole command as a new process (start, model load, decoding, model, printing JSON lines)
and prints images per second and the accuracy of what it printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from digitlab import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="fast", help="checkpoint or shipped model")
    parser.add_argument("--count", type=int, default=10_000, help="PNG files to predict")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (0: one per core)")
    args = parser.parse_args()
    test = load_dataset("mnist", "test")
    with tempfile.TemporaryDirectory() as folder:
        for i, image in enumerate(test.images[: args.count].numpy()):
            Image.fromarray(255 - image).save(Path(folder) / f"{i:05d}.png")
        command = [sys.executable, "-m", "digitlab", "predict", args.model, folder, "--json"]
        command += ["--workers", str(args.workers)]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    labels = test.labels[: args.count].tolist()
    right = sum(line["digit"] == str(labels[int(Path(line["image"]).stem)]) for line in lines)
    print(
        json.dumps(
            {
                "files": args.count,
                "printed": len(lines),
                "wall_s": round(wall, 2),
                "images_per_s": round(args.count / wall),
                "accuracy": right / args.count,
                "workers": args.workers or "one per core",
            }
        )
    )


if __name__ == "__main__":
    main()
