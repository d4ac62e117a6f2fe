"""The benchmarks run against the current code (nothing else calls them)."""

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_throughput_measures_a_model():
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "throughput.py"), "--one", "fastcnn"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["model"] == "fastcnn" and figures["parameters"] == 29_434
    assert figures["train_images_per_s"] > 0 and figures["infer_images_per_s"] > 0
