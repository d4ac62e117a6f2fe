"""Never lose work: kill -9 during training, checkpoint writes and sweeps; a full or read-only disk."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import on_second_epoch, quick_config
from digitlab import fileio, train
from digitlab.cli import main
from digitlab.engine.checkpoint import load_checkpoint
from test_train import epoch_rows

pytestmark = pytest.mark.slow


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ}
    )


def wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the process ended before it could be killed"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def kill_9(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def metric_lines(run: Path) -> int:
    path = run / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_kill_9_mid_training_then_resume_matches_an_uninterrupted_run(tmp_path):
    whole = train(quick_config(tmp_path, epochs=3, run_name="whole"), quiet=True)
    cut = tmp_path / "runs" / "cut"
    process = start(
        [
            "-m",
            "digitlab",
            "train",
            "--config",
            str(whole.run_dir / "config.json"),
            "--name",
            "cut",
            "--quiet",
        ]
    )
    wait_for(lambda: metric_lines(cut) >= 1, process)
    kill_9(process)  # somewhere in epoch 2 (or while epoch 1's files are written)
    assert not (cut / "result.json").exists()
    resumed = train(None, resume=cut, quiet=True)
    assert resumed.test == whole.test
    assert epoch_rows(cut) == epoch_rows(whole.run_dir)
    assert not list(cut.glob(".*.tmp"))


def test_killed_between_the_state_and_the_metrics_write_resumes_with_every_row(tmp_path, monkeypatch):
    from digitlab.engine.runs import Run

    whole = train(quick_config(tmp_path, epochs=3, run_name="whole"), quiet=True)

    def killed(self, rows):  # the process dies as it is about to write epoch 1's metrics row
        raise KeyboardInterrupt

    monkeypatch.setattr(Run, "write_metrics", killed)
    with pytest.raises(KeyboardInterrupt):
        train(quick_config(tmp_path, epochs=3, run_name="cut"), quiet=True)
    monkeypatch.undo()
    cut = tmp_path / "runs" / "cut"
    assert (cut / "last.pt").exists() and not (cut / "metrics.jsonl").exists()
    train(None, resume=cut, quiet=True)
    assert epoch_rows(cut) == epoch_rows(whole.run_dir)


WRITER = """
import sys, torch
from digitlab.engine.checkpoint import CheckpointMeta, save_checkpoint
from digitlab.models import build_classifier
model = build_classifier("mlp")
value = 0
while True:
    value += 1
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
    save_checkpoint(sys.argv[1], model, CheckpointMeta("mlp", epoch=value))
"""


def test_kill_9_during_checkpoint_writes_never_leaves_a_mixed_checkpoint(tmp_path):
    stem = tmp_path / "best"
    rng = random.Random(0)
    for _ in range(4):
        process = start(["-c", WRITER, str(stem)])
        wait_for(lambda: stem.with_suffix(".safetensors").exists(), process, timeout=60)
        time.sleep(rng.uniform(0.05, 0.6))
        kill_9(process)
        checkpoint = load_checkpoint(stem.with_suffix(".safetensors"))
        value = checkpoint.meta.epoch
        # weights and metadata come from the same save, whatever moment the kill hit
        assert all(torch.all(p == value) for p in checkpoint.model.parameters())


def test_kill_9_during_a_sweep_then_resume_finishes_it(tmp_path):
    args = ["--lr", "1e-3,3e-3", "--train-limit", "1500", "--epochs", "2", "--threads", "1"]
    args += ["--out", str(tmp_path), "--name", "sw", "--quiet"]
    process = start(["-m", "digitlab", "sweep", *args])
    second = tmp_path / "sw" / "runs" / "lr=0.003"
    wait_for(lambda: metric_lines(second) >= 1, process)
    kill_9(process)
    assert (tmp_path / "sw" / "runs" / "lr=0.001" / "result.json").exists()
    assert not (second / "result.json").exists()
    assert main(["sweep", "--resume", str(tmp_path / "sw"), "--quiet"]) == 0
    assert (second / "result.json").exists()
    assert len((tmp_path / "sw" / "results.csv").read_text().splitlines()) == 3


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_mid_training_gives_a_clear_error_and_keeps_the_first_epoch(tmp_path, capsys, monkeypatch):
    def fill_the_disk(trainer) -> None:
        monkeypatch.setattr(fileio.os, "fsync", disk_full)

    args = ["train", "--train-limit", "1500", "--epochs", "3", "--threads", "1", "--out", str(tmp_path)]
    with on_second_epoch(fill_the_disk):
        code = main([*args, "--name", "full", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "Traceback" not in err
    run = tmp_path / "full"
    assert "best.safetensors" in err or "metrics.jsonl" in err  # names the file it could not write
    assert metric_lines(run) == 1
    assert load_checkpoint(run).meta.epoch == 1  # the first epoch's checkpoint is intact
    assert not list(run.glob(".*.tmp"))
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0  # space again: it carries on
    assert json.loads((run / "result.json").read_text())["epochs_run"] == 3


def test_read_only_run_folder_gives_a_clear_error_and_changes_nothing(
    trained_checkpoint, capsys, monkeypatch
):
    before = {p.name: p.read_bytes() for p in trained_checkpoint.iterdir() if p.is_file()}

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    # as root, chmod does not stop writes; the failing call is what a read-only mount answers
    monkeypatch.setattr(fileio.os, "replace", read_only)
    assert main(["report", str(trained_checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "Read-only file system" in err and str(trained_checkpoint) in err
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in trained_checkpoint.iterdir() if p.is_file()}
    assert after == before
    assert not list(trained_checkpoint.glob(".*.tmp"))
