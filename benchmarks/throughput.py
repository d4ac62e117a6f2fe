"""Training and inference throughput (images/s) and peak memory of every model, on this machine.

    python benchmarks/throughput.py [--seconds S] [MODEL ...]

Each model is measured in a fresh process (so peak memory is its own): one JSON line each.
Training: batch 128, Adam, channels_last, the same step as `digitlab train`. Inference:
batches of 1000 in inference mode. Each rate is counted over S seconds (default 3) after one
warm-up call.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def measure(name: str, seconds: float) -> dict:
    import torch
    import torch.nn.functional as F

    from digitlab.engine.optim import Adam
    from digitlab.models import build_model, count_parameters

    torch.manual_seed(0)
    model = build_model(name).to(memory_format=torch.channels_last)
    optimizer = Adam(model.parameters(), 1e-3)
    images = torch.randn(128, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (128,))

    def step() -> None:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def rate(fn, batch: int) -> float:
        fn()  # warm-up
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            count += 1
        return batch * count / (time.perf_counter() - start)

    train_rate = rate(step, 128)
    model.eval()
    big = torch.randn(1000, 1, 28, 28).contiguous(memory_format=torch.channels_last)

    def infer() -> None:
        with torch.inference_mode():
            model(big)

    infer_rate = rate(infer, 1000)
    return {
        "model": name,
        "parameters": count_parameters(model),
        "train_images_per_s": round(train_rate),
        "infer_images_per_s": round(infer_rate),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": torch.get_num_threads(),
        "cpus": len(os.sched_getaffinity(0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="architectures (default: every one)")
    parser.add_argument("--seconds", type=float, default=3.0, help="counting time of each rate (default 3)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the measuring child
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.models[0], args.seconds)), flush=True)
        return
    from digitlab.models import list_models

    for name in args.models or list_models():
        subprocess.run([sys.executable, __file__, "--one", "--seconds", str(args.seconds), name], check=True)


if __name__ == "__main__":
    main()
