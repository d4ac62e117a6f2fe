"""Knowing when it doesn't know: the not-a-digit class, its training images, the verdicts."""

import numpy as np
import pytest
import torch
from PIL import Image

from digitlab.data import DigitData
from digitlab.data.digitdata import NOT_A_DIGIT
from digitlab.data.outliers import outlier_images
from digitlab.engine.checkpoint import load_checkpoint
from digitlab.errors import CheckpointError, DataError
from digitlab.inference import Predictor
from digitlab.inference.predictor import verdict


def test_outlier_images_are_mnist_form_and_the_same_for_a_seed():
    images = outlier_images(60, seed=1)
    assert images.shape == (60, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(images, outlier_images(60, seed=1))
    assert not np.array_equal(images, outlier_images(60, seed=2))
    assert (images.max((1, 2)) > 200).mean() > 0.9  # ink, brought to MNIST's range


def test_an_extra_class_is_appended_after_the_data_sets_own(mnist_test):
    data = mnist_test.subset(slice(0, 10)).with_extra_class(
        torch.zeros(3, 28, 28, dtype=torch.uint8), NOT_A_DIGIT
    )
    assert data.classes == [*mnist_test.classes, NOT_A_DIGIT]
    assert data.labels[-3:].tolist() == [10, 10, 10] and len(data) == 13


@pytest.mark.parametrize(
    "best, not_a_digit, expected",
    [(0.99, 0.0, "digit"), (0.55, 0.1, "unsure"), (0.3, 0.6, "not-a-digit"), (0.9, 0.5, "not-a-digit")],
)
def test_verdict_thresholds(best, not_a_digit, expected):
    assert verdict(best, not_a_digit) == expected


def test_a_model_with_the_extra_class_names_only_real_classes_and_can_say_not_a_digit(
    trained_checkpoint, mnist_test
):
    checkpoint = load_checkpoint(trained_checkpoint)
    checkpoint.meta.classes = [*checkpoint.classes[:-1], NOT_A_DIGIT]  # pretend '9' means 'not a digit'
    predictor = Predictor([checkpoint])
    nine = mnist_test.images[mnist_test.labels == 9][:20].numpy()
    readings = predictor.predict_mnist(nine)
    assert sum(r.verdict == "not-a-digit" for r in readings) >= 15
    assert all(r.label != NOT_A_DIGIT and NOT_A_DIGIT not in dict(r.top) for r in readings)
    checkpoint.check_classes(DigitData(mnist_test.images[:5], mnist_test.labels[:5] % 9, list("012345678")))
    with pytest.raises(CheckpointError, match="trained on classes"):
        checkpoint.check_classes(mnist_test)  # '0'..'8' + not-a-digit cannot read '9'


def test_blank_paper_is_not_a_digit_and_a_broken_file_is_an_error(trained_checkpoint, tmp_path):
    predictor = Predictor.from_paths(trained_checkpoint)
    reading = predictor.predict(Image.new("L", (50, 50), 230))
    assert reading.verdict == "not-a-digit" and reading.label == "" and reading.to_dict()["digit"] is None
    with pytest.raises(DataError, match="not a readable image"):
        predictor.predict(b"\x89PNG\r\n broken")


@pytest.mark.slow
def test_training_with_outliers_learns_to_say_not_a_digit(tmp_path, mnist_test, capsys):
    from conftest import quick_config
    from digitlab import train
    from digitlab.analysis.realworld import build_suite, preprocess_all
    from digitlab.cli import main

    result = train(
        quick_config(tmp_path, train_limit=4000, epochs=3, outliers=0.5, run_name="oe"), quiet=True
    )
    checkpoint = load_checkpoint(result.run_dir)
    assert checkpoint.classes == [*mnist_test.classes, NOT_A_DIGIT]
    assert main(["test", str(result.run_dir), "--json"]) == 0  # reads the 10-class test set
    assert result.test.accuracy > 0.9
    fitted = checkpoint.meta.calibration  # temperature scaling on the validation split
    assert (
        fitted["val_ece_after"] <= fitted["val_ece_before"]
        and checkpoint.model.temperature.item() == fitted["temperature"]
    )
    predictor = Predictor([checkpoint])
    suite = {s.name: s for s in build_suite(mnist_test, count=60, seed=0)}
    letters, _ = preprocess_all(suite["letters"])  # other fonts than the training outliers'
    rejected = np.mean([r.verdict != "digit" for r in predictor.predict_mnist(letters)])
    accepted = np.mean(
        [r.verdict == "digit" for r in predictor.predict_mnist(mnist_test.images[:300].numpy())]
    )
    assert rejected > 0.6 and accepted > 0.85


def test_temperature_scaling_recovers_the_temperature_of_overconfident_logits():
    from digitlab.engine.calibration import calibration, fit_temperature

    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 10, generator=generator) * 2
    labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=generator)[:, 0]
    temperature = fit_temperature(true_logits * 3, labels)  # three times too confident
    assert 2.7 < temperature < 3.3
    before = calibration(torch.softmax(true_logits * 3, 1).numpy(), labels.numpy()).ece
    after = calibration(torch.softmax(true_logits * 3 / temperature, 1).numpy(), labels.numpy()).ece
    assert after < before / 3


def test_the_drawn_shapes_have_ink_and_vary():
    from digitlab.data.outliers import SHAPES
    from digitlab.imaging import to_mnist

    rng = np.random.default_rng(0)
    for shape in SHAPES:
        drawn = [to_mnist(shape(rng)) for _ in range(5)]
        assert all(d.max() > 200 for d in drawn), shape.__name__
        assert len({d.tobytes() for d in drawn}) == 5, shape.__name__  # each draw differs
