"""The CLI's last crash and hang paths: each gets one line naming the file or value, exit
status 2, and nothing on disk changes."""

from __future__ import annotations

import json
import os
import socket
import threading

import pytest
import torch

from conftest import free_port, quick_config
from digitlab.cli import main
from digitlab.engine.runs import Run
from digitlab.engine.train import train


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.csv"
    os.mkfifo(path)
    yield path
    # a reader that blocked on the FIFO would hang here; unblock it in any case
    threading.Thread(target=lambda: open(path, "wb").close(), daemon=True).start()


@pytest.mark.parametrize(
    "command",
    [
        ["test", "{fifo}", "--model", "fastcnn"],
        ["train", "--config", "{fifo}"],
        ["train", "--data", "{fifo}"],
        ["data", "info", "{fifo}"],
    ],
)
def test_a_fifo_is_refused_not_waited_on(command, fifo, capsys):
    assert main([part.format(fifo=fifo) for part in command]) == 2
    assert "not a regular file" in one_error_line(capsys)


@pytest.mark.parametrize("image", ["/dev/zero", "{fifo}"])
def test_a_device_or_fifo_as_an_image_gets_an_error_line(trained_checkpoint, fifo, capsys, image):
    assert main(["predict", str(trained_checkpoint), image.format(fifo=fifo), "--workers", "1"]) == 1
    assert "not a regular file" in one_error_line(capsys)


def test_an_oversized_config_is_refused(tmp_path, capsys, monkeypatch):
    from digitlab import config

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model": "fastcnn", "epochs": 1}) + " " * 100)
    monkeypatch.setattr(config, "MAX_CONFIG_BYTES", 50)
    assert main(["train", "--config", str(path)]) == 2
    assert "larger than the 50 allowed" in one_error_line(capsys)


def test_a_csv_field_longer_than_the_csv_module_allows_is_named(tmp_path, capsys):
    path = tmp_path / "train.csv"
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    path.write_text(header + "\n1," + "x" * 200_000 + ",0" * 783 + "\n")
    assert main(["data", "info", str(path)]) == 2
    assert "line 2: value 'xxxxxxxx" in one_error_line(capsys)


def test_a_pickled_pth_is_one_line_without_the_advice_to_unpickle(tmp_path, capsys):
    path = tmp_path / "model.pth"
    torch.save({"layer": torch.nn.Linear(2, 2)}, path)
    assert main(["test", str(path), "--model", "fastcnn"]) == 2
    line = one_error_line(capsys)
    assert "torch.nn.modules.linear.Linear" in line and "weights_only" not in line


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--val-split", "0.9999", "--train-limit", "100"], "leaves 0 to train on"),
        (["--val-split", "0.001", "--train-limit", "100"], "leaves no image to validate on"),
    ],
)
def test_empty_splits_are_refused_and_leave_no_run_folder(tmp_path, capsys, flags, message):
    out = tmp_path / "runs"
    assert main(["train", *flags, "--out", str(out), "--quiet"]) == 2
    assert message in one_error_line(capsys)
    assert not out.exists() or not any(out.iterdir())


def test_a_run_that_fails_at_its_start_leaves_no_folder(tmp_path, capsys):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a zip")
    out = tmp_path / "runs" / "mine"
    assert main(["train", "--data", str(bad), "--out", str(out), "--quiet"]) == 2
    assert "not a readable .npz file" in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()  # nor the --out folders its creation made
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "other.txt").write_text("a user's file")
    assert main(["train", "--data", str(bad), "--out", str(tmp_path / "kept"), "--quiet"]) == 2
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["other.txt"]


def test_resume_refuses_settings_it_cannot_change(tmp_path, capsys):
    run = Run.create(quick_config(tmp_path))
    before = run.config_path.read_bytes()
    assert main(["train", "--resume", str(run.path), "--lr", "0.1"]) == 2
    assert "--lr cannot change" in one_error_line(capsys)
    assert main(["train", "--resume", str(run.path), "--epochs", "5"]) == 2  # onecycle: laid out for 2
    assert "cannot be stretched" in one_error_line(capsys)
    assert main(["train", "--resume", str(run.path), "--epochs", "1"]) == 2
    assert "can only get more" in one_error_line(capsys)
    assert run.config_path.read_bytes() == before


@pytest.mark.slow
def test_a_run_killed_before_its_first_epoch_ended_resumes_from_the_start(tmp_path):
    config = quick_config(tmp_path, epochs=1, train_limit=600)
    whole = train(config, quiet=True)
    run = Run.create(quick_config(tmp_path, epochs=1, train_limit=600, run_name="cut"))  # as a kill leaves it
    resumed = train(None, resume=run.path, quiet=True)
    assert resumed.test == whole.test
    assert "no epoch had finished" in run.log_path.read_text()


@pytest.mark.slow
def test_resume_with_more_epochs_extends_a_finished_run(tmp_path):
    config = quick_config(tmp_path, schedule="none", epochs=1, train_limit=600)
    first = train(config, quiet=True)
    extended = train(None, resume=first.run_dir, quiet=True, epochs=2)
    assert extended.epochs_run == 2
    assert [row["epoch"] for row in Run(first.run_dir).metrics()] == [1, 2]
    assert Run(first.run_dir).config().epochs == 2


def test_data_info_of_a_set_not_on_this_machine_never_downloads(tmp_path, monkeypatch, capsys):
    from digitlab.data import store

    monkeypatch.setenv("DIGITLAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(store, "fetch_file", lambda *a, **k: pytest.fail("info started a download"))
    assert main(["data", "info", "kmnist"]) == 0
    out = capsys.readouterr().out
    assert "not downloaded (digitlab data fetch kmnist)" in out and "train: 60,000 images" in out
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.gz"))


def test_audit_reads_the_data_set_the_run_was_trained_on(tmp_path, small_idx_dir, capsys):
    from conftest import LEGACY_RUN, current_format_run
    from digitlab.engine.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(LEGACY_RUN)
    checkpoint.meta.dataset = str(small_idx_dir)  # as if trained on that folder (200 test images)
    run = current_format_run(tmp_path / "run", checkpoint)
    assert main(["audit", str(run), "--out", str(tmp_path / "audit")]) == 0
    assert "of 200 test images flagged" in capsys.readouterr().out


def test_predictor_from_paths_takes_one_path_as_a_string(trained_checkpoint):
    from digitlab.inference import Predictor

    predictor = Predictor.from_paths(str(trained_checkpoint))  # not iterated character by character
    assert len(predictor.checkpoints) == 1 and predictor.checkpoints[0].model_name == "fastcnn"


@pytest.fixture
def taken_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize(
    "where, message",
    [
        (["--port", "{taken}"], "cannot listen on 127.0.0.1:{taken}: Address already in use"),
        (["--host", "256.1.1.1"], "cannot listen on 256.1.1.1:8000"),
    ],
)
def test_serve_checks_its_address_before_it_says_it_serves(taken_port, capsys, where, message):
    where = [w.format(taken=taken_port) for w in where]
    assert main(["serve", "fast", *where]) == 2
    assert one_error_line(capsys).startswith("digitlab: error: " + message.format(taken=taken_port))


def test_serve_with_a_missing_checkpoint_never_says_it_serves(capsys):
    assert main(["serve", "/nonexistent/run", "--port", str(free_port()), "--workers", "1"]) == 2
    captured = capsys.readouterr()
    assert "checkpoint not found" in captured.err and "serving on" not in captured.out


def test_serve_refuses_a_port_out_of_range(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "fast", "--port", "99999"])
    assert exit_info.value.code == 2 and "'99999' is not a port number" in capsys.readouterr().err


def test_a_run_still_training_is_not_resumed_beside_it(tmp_path, capsys):
    run = Run.create(quick_config(tmp_path))
    (run.path / ".best.safetensors.live.tmp").write_bytes(b"being written")  # the live run's write
    with run.held():  # as the process training it holds it
        assert main(["train", "--resume", str(run.path), "--quiet"]) == 2
    assert "another process is training this run" in one_error_line(capsys)
    assert (run.path / ".best.safetensors.live.tmp").exists()  # its temporaries left alone
    with run.held():  # and released when that process's hold ends
        pass
