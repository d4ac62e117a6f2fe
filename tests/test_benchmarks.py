"""The benchmarks run against the current code (nothing else calls them)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from digitlab.engine.pretrained import model_cards

CARDS = model_cards()

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


def test_ensemble_errors_counts_the_images_members_share(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("ensemble_errors", BENCHMARKS / "ensemble_errors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "model_card", lambda name: SimpleNamespace(members=["fast", "fast"]))
    monkeypatch.setattr(sys, "argv", ["ensemble_errors.py", "pair"])
    module.main()
    row = json.loads(capsys.readouterr().out)
    errors = CARDS["fast"].mnist_test["errors"]
    assert row["member_errors"] == [["fast", errors], ["fast", errors]]
    # two copies of one model go wrong together on every image, and so does their average
    assert row["ensemble_errors"] == row["misread_by_some_member"] == row["misread_by_all"] == errors
    assert row["members_wrong_on_each_ensemble_error"] == [2] * errors
