"""The benchmarks run against the current code (nothing else calls them)."""

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from digitlab.config import EVAL_BATCH_SIZE
from digitlab.data import load_training_set
from digitlab.engine.checkpoint import load_checkpoint
from digitlab.engine.evaluate import evaluate
from digitlab.engine.pretrained import model_cards, shipped_weights

CARDS = model_cards()

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_throughput_measures_a_model():
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "throughput.py"), "--seconds", "0.2", "fastcnn"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["model"] == "fastcnn" and figures["parameters"] == 29_434
    assert figures["train_images_per_s"] > 0 and figures["infer_images_per_s"] > 0


def load_benchmark(name: str, monkeypatch, members: list[str] | None = None):
    """The benchmark script `name` as a module; with `members`, the shipped ensemble it reads is
    made of them."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as `python benchmarks/NAME.py` has it: `common` imports
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if members is not None:
        monkeypatch.setattr(module, "model_card", lambda name: SimpleNamespace(members=members))
    return module


def test_ensemble_errors_counts_the_images_members_share(monkeypatch, capsys):
    module = load_benchmark("ensemble_errors", monkeypatch, ["fast", "fast"])
    monkeypatch.setattr(sys, "argv", ["ensemble_errors.py", "pair"])
    module.main()
    row = json.loads(capsys.readouterr().out)
    errors = CARDS["fast"].mnist_test["errors"]
    assert row["member_errors"] == [["fast", errors], ["fast", errors]]
    # two copies of one model go wrong together on every image, and so does their average
    assert row["ensemble_errors"] == row["misread_by_some_member"] == row["misread_by_all"] == errors
    assert row["members_wrong_on_each_ensemble_error"] == [2] * errors


def test_join_ensemble_judges_a_candidate_on_its_split_against_the_members_that_held_it_out(
    monkeypatch, capsys
):
    module = load_benchmark("join_ensemble", monkeypatch, ["fast", "fast", "best-seed1"])
    monkeypatch.setattr(sys, "argv", ["join_ensemble.py", str(shipped_weights("fast")[0])])
    module.main()
    row, verdict = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    # fast held out seed 0's split; best-seed1 held out seed 1's and is left out
    assert row["split_seed"] == 0 and row["peers"] == ["fast", "fast"] and row["n"] == 6000
    assert 0 < row["candidate_errors"] == row["peers_errors"] == row["peers_with_candidate_errors"]
    # a third copy of a model changes no vote: it does not join
    assert verdict == {
        "errors_without": row["peers_errors"],
        "errors_with": row["peers_errors"],
        "join": False,
    }


def test_join_ensemble_refuses_a_candidate_whose_split_no_member_held_out(monkeypatch):
    module = load_benchmark("join_ensemble", monkeypatch, ["best-seed1"])
    monkeypatch.setattr(sys, "argv", ["join_ensemble.py", str(shipped_weights("fast")[0])])
    with pytest.raises(SystemExit, match="no member of ensemble held out validation split 0"):
        module.main()


def test_deskewed_input_reads_a_model_on_its_own_validation_split(monkeypatch, capsys):
    module = load_benchmark("deskewed_input", monkeypatch)
    monkeypatch.setattr(sys, "argv", ["deskewed_input.py", "fast"])
    module.main()
    row = json.loads(capsys.readouterr().out)
    checkpoint = load_checkpoint("fast")
    _, val = load_training_set("mnist").split(0.1, 0)
    assert row["n"] == 6000 and row["val_errors"] == evaluate(checkpoint.model, val).errors
    upright = evaluate(checkpoint.model, replace(val, images=module.deskewed(val.images))).errors
    assert row["val_errors_deskewed"] == upright != row["val_errors"]


def test_eval_batch_times_each_size_and_names_the_fastest(monkeypatch, capsys):
    module = load_benchmark("eval_batch", monkeypatch)
    flags = ["--sizes", f"50,{EVAL_BATCH_SIZE}", "--rounds", "2", "--images", "400"]
    monkeypatch.setattr(sys, "argv", ["eval_batch.py", "fast", *flags])
    module.main()
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(row["model"], row["batch"]) for row in rows[:2]] == [("fast", 50), ("fast", EVAL_BATCH_SIZE)]
    assert all(row["seconds"] > 0 and row["images_per_s"] > 0 for row in rows[:2])
    summary = rows[2]
    assert summary["fastest_batch"] in (50, EVAL_BATCH_SIZE)
    assert summary[f"default_{EVAL_BATCH_SIZE}_vs_fastest"] >= 1.0  # 1.0 where the default is the fastest


def test_multi_digit_reads_written_numbers(monkeypatch, capsys):
    module = load_benchmark("multi_digit", monkeypatch)
    monkeypatch.setattr(sys, "argv", ["multi_digit.py", "--count", "12", "--model", "fast"])
    module.main()
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["set"] for r in rows] == ["upright", "slanted"]
    for row in rows:
        assert row["numbers"] == 12 and 0.5 <= row["fully_right"] <= row["right_digit_count"] <= 1
        assert 0.5 < row["ceiling"] <= 1 and row["ms_per_number"] > 0
