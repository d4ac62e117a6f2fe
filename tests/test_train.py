import json
import math

import pytest
import torch
from safetensors.torch import load_file

from conftest import ctrl_c, on_second_epoch, quick_config
from digitlab import load_checkpoint, train
from digitlab.config import TrainConfig
from digitlab.engine.train import uses_bfloat16
from digitlab.errors import ConfigError, TrainingDiverged


@pytest.mark.slow
def test_short_real_training_reaches_accuracy(tmp_path):
    result = train(quick_config(tmp_path), quiet=True)
    assert result.test.n == 10000
    assert result.test.accuracy > 0.94  # 2,700 images, two epochs
    run = result.run_dir
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(rows[0]) >= {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}
    meta = json.loads((run / "best.json").read_text())
    assert meta["model"] == "fastcnn" and meta["format_version"] == 2
    assert meta["val"] == json.loads((run / "result.json").read_text())["val"]
    assert {"digitlab", "torch"} <= set(meta["versions"])
    assert (run / "train.log").read_text().count("epoch") >= 2
    temperature = meta["calibration"]["temperature"]  # the test loss is said to be the calibrated one's
    assert f"calibrated, temperature {temperature:.2f})" in (run / "train.log").read_text()
    assert json.loads((run / "config.json").read_text())["train_limit"] == 3000


@pytest.mark.slow
def test_same_seed_same_numbers(tmp_path):
    first = train(quick_config(tmp_path, epochs=1, run_name="a"), quiet=True)
    second = train(quick_config(tmp_path, epochs=1, run_name="b"), quiet=True)
    other = train(quick_config(tmp_path, epochs=1, run_name="c", seed=1), quiet=True)
    assert first.test == second.test
    weights = [load_file(str(r.run_dir / "best.safetensors")) for r in (first, second, other)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def epoch_rows(run):
    """metrics.jsonl without the wall-clock seconds, which differ between runs."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [
        # dropout + momentum + a schedule: every piece of state must survive the restart
        dict(model="mlp", optimizer="sgd", lr=0.02, schedule="cosine", epochs=3, train_limit=1500),
        # the weight average and the augmentation's random stream too
        dict(model="fastcnn", ema=0.9, aug_rotate=8.0, aug_shift=2.0, epochs=3, train_limit=1500),
    ],
    ids=["sgd-dropout-cosine", "ema-augmented"],
)
def test_resume_after_interrupt_equals_uninterrupted(tmp_path, config):
    whole = train(quick_config(tmp_path, run_name="whole", **config), quiet=True)

    with on_second_epoch(ctrl_c), pytest.raises(KeyboardInterrupt):
        train(quick_config(tmp_path, run_name="cut", **config), quiet=True)
    cut = tmp_path / "runs" / "cut"
    assert len((cut / "metrics.jsonl").read_text().splitlines()) == 1
    assert "--resume" in (cut / "train.log").read_text()

    resumed = train(None, resume=cut, quiet=True)
    assert resumed.test == whole.test
    assert epoch_rows(cut) == epoch_rows(whole.run_dir)


@pytest.mark.slow
def test_early_stopping_keeps_best_epoch(tmp_path):
    # lr 0 is impossible, so a tiny one: validation stops improving almost at once
    result = train(
        quick_config(tmp_path, epochs=6, lr=1e-7, schedule="none", patience=1, monitor="val_loss"), quiet=True
    )
    assert result.epochs_run < 6 and result.stopped_early
    assert result.best_epoch == result.epochs_run - 1


@pytest.mark.slow
def test_diverging_loss_stops_with_message_and_keeps_checkpoint(tmp_path):
    def poison(trainer) -> None:
        with torch.no_grad():
            next(trainer.model.parameters()).fill_(float("nan"))

    with on_second_epoch(poison), pytest.raises(TrainingDiverged, match="loss became nan in epoch 2"):
        train(quick_config(tmp_path, run_name="nan", epochs=3), quiet=True)
    checkpoint = load_checkpoint(tmp_path / "runs" / "nan")
    assert all(torch.isfinite(p).all() for p in checkpoint.model.parameters())


@pytest.mark.parametrize(
    "setting, message",
    [
        (dict(lr=-0.1), "lr must be > 0"),
        (dict(val_split=1.0), "val_split must be in"),
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(model="nope"), "unknown model 'nope'"),
        (dict(optimizer="lbfgs"), "unknown optimizer"),
        (dict(precision="half"), "unknown precision 'half'"),
        (dict(test_at_end=False, test_each_epoch=True), "--no-test and --test-each-epoch contradict"),
    ],
)
def test_impossible_settings_are_refused_before_any_file_is_written(tmp_path, setting, message):
    with pytest.raises(ConfigError, match=message):
        train(quick_config(tmp_path, **setting), quiet=True)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_without_a_validation_split_the_last_epoch_is_kept(tmp_path):
    from digitlab.analysis.report import write_report

    result = train(quick_config(tmp_path, val_split=0.0, epochs=2, run_name="noval"), quiet=True)
    assert result.best_epoch == 2 and result.val is None and result.test.n == 10000
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["val_acc"] is None
    assert "NaN" not in (result.run_dir / "result.json").read_text()
    html_path, _ = write_report(result.run_dir)
    assert f"{result.test.accuracy * 100:.2f} %" in html_path.read_text()


@pytest.mark.slow
def test_ema_weights_are_the_ones_checkpointed_and_the_raw_ones_are_measured(tmp_path):
    from digitlab.engine.checkpoint import load_checkpoint

    result = train(quick_config(tmp_path, ema=0.95, epochs=1, run_name="ema"), quiet=True)
    rows = epoch_rows(result.run_dir)
    assert all(0 < row["val_acc_raw"] <= 1 for row in rows)
    best = load_checkpoint(result.run_dir / "best.safetensors")
    last_raw = torch.load(result.run_dir / "last.pt", weights_only=True)
    ema_state = last_raw["ema"]
    weight = next(k for k in best.model.state_dict() if k.endswith("weight"))
    # the checkpoint holds the average (== the EMA's weights at that epoch), not the raw weights
    assert torch.allclose(best.model.state_dict()[weight].float(), ema_state[f"module.{weight}"].float())
    assert not torch.allclose(ema_state[f"module.{weight}"], last_raw["model"][weight])


@pytest.mark.slow
def test_compiled_training_gives_a_plain_loadable_checkpoint(tmp_path):
    from digitlab.engine.checkpoint import load_checkpoint

    result = train(quick_config(tmp_path, compile=True, train_limit=2000, run_name="compiled"), quiet=True)
    assert result.test.accuracy > 0.9
    checkpoint = load_checkpoint(result.run_dir)  # no torch.compile wrapper names in the weights
    assert not any("_orig_mod" in key for key in checkpoint.model.state_dict())


def test_the_fitted_temperature_is_always_a_number():
    from digitlab.engine.calibration import fit_temperature

    assert fit_temperature(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0])) == 1.0
    noisy = torch.randn(200, 10, generator=torch.Generator().manual_seed(0)) * 5
    assert 0.05 <= fit_temperature(noisy, torch.randint(0, 10, (200,))) <= 20


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "step", "none"])
def test_a_run_of_a_few_batches_has_a_working_schedule(schedule):
    from digitlab.engine.optim import Schedule, build_optimizer

    config = TrainConfig(schedule=schedule, epochs=1)
    optimizer = build_optimizer(torch.nn.Linear(2, 2), config)
    scheduler = Schedule(optimizer, config, steps_per_epoch=4)  # --train-limit 500, batch 128
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    assert all(math.isfinite(group["lr"]) for group in optimizer.param_groups)


@pytest.mark.parametrize("native", [True, False])
def test_precision_picks_bfloat16_where_it_is_asked_for_or_native(monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert uses_bfloat16("fastest", cpu) is native  # only where the CPU computes it natively
    assert not uses_bfloat16("auto", cpu) and uses_bfloat16("auto", gpu) and uses_bfloat16("fastest", gpu)
    assert uses_bfloat16("bfloat16", cpu) and not uses_bfloat16("float32", gpu)


@pytest.mark.slow
def test_a_bfloat16_run_trains_and_says_so(tmp_path, capsys):
    result = train(quick_config(tmp_path, precision="bfloat16", epochs=1, train_limit=1500))
    assert "(bfloat16)" in capsys.readouterr().out.splitlines()[0]
    assert result.val.accuracy > 0.8  # a real, if short, training: the weights stay float32
    weights = load_file(str(result.run_dir / "best.safetensors")).values()
    assert {t.dtype for t in weights if t.is_floating_point()} == {torch.float32}


@pytest.mark.slow
def test_test_each_epoch_records_the_reports_protocol_without_choosing_by_it(tmp_path):
    measured = train(quick_config(tmp_path, epochs=2, train_limit=1500, test_each_epoch=True), quiet=True)
    plain = train(quick_config(tmp_path, epochs=2, train_limit=1500, run_name="plain"), quiet=True)
    rows = [json.loads(line) for line in (measured.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < r["test_acc"] <= 1 and r["test_loss"] > 0 for r in rows)
    assert rows[-1]["test_acc"] == measured.test_last.accuracy  # the last epoch's weights, measured
    assert (measured.best_epoch, measured.test) == (plain.best_epoch, plain.test)  # chosen as before
    plain_rows = (plain.run_dir / "metrics.jsonl").read_text()
    assert "test_acc" not in plain_rows


@pytest.mark.slow
def test_a_no_test_run_keeps_the_test_set_unseen_until_digitlab_test_measures_it(tmp_path, capsys):
    from digitlab.cli import main

    flags = ["--train-limit", "1500", "--epochs", "1", "--threads", "1", "--quiet", "--out", str(tmp_path)]
    assert main(["train", *flags, "--name", "blind", "--no-test"]) == 0
    assert main(["train", *flags, "--name", "seen"]) == 0
    blind = tmp_path / "blind"
    result = json.loads((blind / "result.json").read_text())
    assert result["test"] is None and result["test_last"] is None and result["val"]["n"] == 150
    assert "test accuracy" not in (blind / "train.log").read_text()
    capsys.readouterr()
    assert main(["compare", str(blind), str(tmp_path / "seen")]) == 0
    blind_row, seen_row = capsys.readouterr().out.splitlines()[2:4]
    assert blind_row.count("—") == 1 and "—" not in seen_row  # only the blind run's test accuracy is blank
    assert main(["report", str(blind)]) == 0
    report = (blind / "report.md").read_text()
    assert "trained with --no-test" in report and "Misclassified test images" not in report
    assert main(["test", str(blind), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["n"] == 10000


@pytest.mark.slow
def test_runs_of_one_split_seed_hold_out_the_same_images_whatever_their_seed(tmp_path):
    from digitlab.analysis.audit import held_out_predictions

    def held_out(*runs_seeds: dict):
        """Indices of the training images that some of these 1-epoch runs held out."""
        runs = [
            train(quick_config(tmp_path, epochs=1, train_limit=600, test_at_end=False, **seeds), quiet=True)
            for seeds in runs_seeds
        ]
        _, covered, _ = held_out_predictions([load_checkpoint(r.run_dir / "best.safetensors") for r in runs])
        return covered

    shared = held_out({"seed": 1, "split_seed": 7}, {"seed": 2, "split_seed": 7})
    apart = held_out({"seed": 1}, {"seed": 2})
    assert len(shared) == 60 and len(apart) > 60  # one split of 600 images, or two overlapping ones
    with pytest.raises(ConfigError, match="split_seed"):
        TrainConfig(split_seed=-2).validate()
