"""The real-world evaluation suite: deterministic, offline, the right kinds of images."""

import io

import numpy as np
import pytest
from PIL import Image

from digitlab.analysis.realworld import build_suite, preprocess_all, score
from digitlab.imaging.render import DIGIT_LOOKALIKES, LETTERS, SYMBOLS


@pytest.fixture(scope="module")
def suite(mnist_test):
    return list(build_suite(mnist_test, count=8, seed=3))


def test_sets_are_the_same_for_the_same_seed_and_differ_for_another(suite, mnist_test):
    again = list(build_suite(mnist_test, count=8, seed=3))
    assert [s.images for s in again] == [s.images for s in suite]
    other = next(iter(build_suite(mnist_test, count=8, seed=4)))
    assert other.images != suite[0].images


def test_digit_sets_carry_labels_and_non_digit_sets_none(suite, mnist_test):
    names = {s.name: s for s in suite}
    assert {"photos", "scans", "marker", "thin-pen", "doodles", "blank"} <= set(names)
    for name in ("photos", "scans", "marker", "thin-pen"):
        assert names[name].is_digits and len(names[name].images) == 8
        assert set(names[name].labels.tolist()) <= set(range(10))
    for name in ("doodles", "blank"):
        assert (names[name].labels == -1).all() and not names[name].is_digits
    photo = Image.open(io.BytesIO(names["photos"].images[0]))
    assert photo.format == "JPEG" and photo.size == (320, 240)  # a large frame, the digit small in it


def test_no_letter_or_symbol_reads_as_a_digit():
    assert not set(LETTERS + SYMBOLS) & (DIGIT_LOOKALIKES | set("0123456789"))


def test_preprocessing_finds_the_digit_in_digit_sets(suite):
    names = {s.name: s for s in suite}
    for name in ("photos", "scans", "marker"):
        images, found = preprocess_all(names[name])
        assert found.all() and images.shape == (8, 28, 28) and images.max() > 200


def test_blank_paper_holds_no_ink(suite):
    blank = next(s for s in suite if s.name == "blank")
    for encoded in blank.images:
        grey = np.asarray(Image.open(io.BytesIO(encoded)).convert("L"), dtype=float)
        assert grey.min() > 120 and np.percentile(grey, 99) - np.percentile(grey, 1) < 60


def test_score_counts_accepted_right_and_rejected():
    predicted = np.array([0, 0, 1, 0])
    accepted = np.array([True, False, True, True])
    found = np.array([True, True, True, False])
    digits = score(predicted, accepted, found, np.array([0, 0, 0, 0]))
    assert digits == {"n": 4, "accepted": 0.5, "accuracy": 0.5, "accuracy_on_accepted": 0.5}
    others = score(predicted, accepted, found, np.full(4, -1))
    assert others == {"n": 4, "accepted": 0.5, "rejected": 0.5}


def test_preprocessing_finds_nothing_in_blank_paper(suite):
    blank = next(s for s in suite if s.name == "blank")
    _, found = preprocess_all(blank)
    assert not found.any()  # uneven light, noise and JPEG are not ink
