"""How long models take to read the MNIST test set at each evaluation batch size, on this machine.

    python benchmarks/eval_batch.py [--sizes 64,128,256,500,1000] [--rounds 3] [--images N] [MODEL ...]

MODEL is a shipped model's name or a checkpoint (default: fast, best-widecnn, default, best:
one of each shipped architecture). The sizes are timed in turn, round after round, so that a
host that slows down slows every size alike; one JSON line per model and size (median seconds
over the rounds), then one per model naming its fastest size and how the default
(`digitlab.config.EVAL_BATCH_SIZE`) compares with it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["fast", "best-widecnn", "default", "best"])
    parser.add_argument("--sizes", default="64,128,256,500,1000", help="batch sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="timings of each size (the median is kept)")
    parser.add_argument("--images", type=int, default=10000, help="the first N test images")
    args = parser.parse_args()

    import torch

    from digitlab.config import EVAL_BATCH_SIZE
    from digitlab.data import load_dataset
    from digitlab.engine.checkpoint import load_checkpoint
    from digitlab.engine.evaluate import predict_logits

    sizes = [int(size) for size in args.sizes.split(",")]
    images = load_dataset("mnist", "test").images[: args.images]
    for name in args.models:
        model = load_checkpoint(name).model
        seconds: dict[int, list[float]] = {size: [] for size in sizes}
        for _ in range(args.rounds):
            for size in sizes:
                start = time.perf_counter()
                predict_logits(model, images, size)
                seconds[size].append(time.perf_counter() - start)
        medians = {size: statistics.median(times) for size, times in seconds.items()}
        for size, median in medians.items():
            row = {
                "model": name,
                "batch": size,
                "seconds": round(median, 3),
                "images_per_s": round(len(images) / median),
            }
            print(json.dumps(row), flush=True)
        fastest = min(medians, key=medians.get)
        summary = {"model": name, "fastest_batch": fastest, "threads": torch.get_num_threads()}
        if EVAL_BATCH_SIZE in medians:
            summary[f"default_{EVAL_BATCH_SIZE}_vs_fastest"] = round(
                medians[EVAL_BATCH_SIZE] / medians[fastest], 2
            )
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
