import torch

from digitlab.models import build_model
from digitlab.models.deskew import deskew


def slanted_stroke(slope: float) -> torch.Tensor:
    """A one-pixel line x = 14 + slope * (y - 14) for rows 4..23, on a black (1, 1, 28, 28) image."""
    image = torch.zeros(1, 1, 28, 28)
    for y in range(4, 24):
        image[0, 0, y, round(14 + slope * (y - 14))] = 1.0
    return image


def ink_columns(image: torch.Tensor) -> torch.Tensor:
    """The ink-weighted mean column of each row that has ink."""
    rows = image[0, 0]
    has_ink = rows.sum(1) > 0.1
    columns = torch.arange(28, dtype=torch.float32)
    return (rows * columns).sum(1)[has_ink] / rows.sum(1)[has_ink]


def test_deskew_makes_a_slanted_stroke_upright():
    slanted = slanted_stroke(0.4)
    assert ink_columns(slanted).max() - ink_columns(slanted).min() > 7
    upright = ink_columns(deskew(slanted))
    assert upright.max() - upright.min() < 1.0
    assert abs(upright.mean().item() - 14) < 1.0


def test_deskew_keeps_an_upright_stroke_and_a_blank_image():
    upright = slanted_stroke(0.0)
    assert torch.allclose(deskew(upright), upright, atol=1e-5)
    assert torch.equal(deskew(torch.zeros(2, 1, 28, 28)), torch.zeros(2, 1, 28, 28))


def test_deskew_keeps_the_background_of_standardised_images():
    standardised = (slanted_stroke(0.3) - 0.1307) / 0.3081
    result = deskew(standardised)
    assert torch.allclose(result[0, 0, 0], standardised[0, 0, 0])  # an empty row stays background
    assert result.min() >= standardised.min() - 1e-5


def test_resnet_deskew_is_resnet_reading_deskewed_images():
    torch.manual_seed(0)
    plain, deskewing = build_model("resnet").eval(), build_model("resnet-deskew").eval()
    deskewing.load_state_dict(plain.state_dict())
    images = torch.cat([slanted_stroke(0.4), slanted_stroke(-0.2)])
    assert torch.allclose(deskewing(images), plain(deskew(images)), atol=1e-5)
