import pytest
import torch

from digitlab.analysis.summary import model_summary
from digitlab.errors import ConfigError
from digitlab.models import build_model, count_parameters, list_models, model_description

# The parameter counts the seed reports give (or that their layer lists imply).
SEED_PARAMETER_COUNTS = {
    "digit": 1_007_590,
    "coursecnn": 194_474,
    "myconvnet": 698_942,
    "mlp": 5_531_147,
    "cnn5": 8_422_155,  # PReLU in the first block only, as report 003's code has it
    "bncnn": 29_034,
}


def test_registry_holds_the_six_seed_models():
    assert set(SEED_PARAMETER_COUNTS) <= set(list_models())


@pytest.mark.parametrize("name, count", SEED_PARAMETER_COUNTS.items())
def test_seed_parameter_counts(name, count):
    assert count_parameters(build_model(name)) == count


# The activations of each report's code, in order (report 003's MLP also had a ReLU on its
# logits, a bug the zoo leaves out; see its docstring).
SEED_ACTIVATIONS = {
    "digit": ["ReLU"] * 3,
    "coursecnn": ["ReLU"] * 3,
    "myconvnet": ["ReLU"] * 4,
    "mlp": ["PReLU", "ReLU", "ReLU", "ReLU"],
    "cnn5": ["PReLU", "ReLU", "ReLU", "ReLU", "ReLU"],
    "bncnn": ["ReLU"] * 2,
}


@pytest.mark.parametrize("name, activations", SEED_ACTIVATIONS.items())
def test_seed_activations_are_the_reports(name, activations):
    kinds = (torch.nn.ReLU, torch.nn.PReLU, torch.nn.Sigmoid, torch.nn.Tanh, torch.nn.Softmax)
    found = [type(m).__name__ for m in build_model(name).modules() if isinstance(m, kinds)]
    assert found == activations


@pytest.mark.parametrize("name", list_models())
def test_every_model_maps_images_to_finite_logits_and_trains(name):
    torch.manual_seed(0)
    model = build_model(name)
    model.train()
    logits = model(torch.randn(4, 1, 28, 28))
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model_description(name).endswith(".")  # a whole sentence, not a docstring's first line


@pytest.mark.parametrize("name", list_models())
def test_num_classes_sets_the_output_width(name):
    assert build_model(name, num_classes=47).eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 47)


def test_myconvnet_takes_one_unbatched_image():
    model = build_model("myconvnet").eval()
    image = torch.randn(1, 28, 28)
    assert model(image).shape == (10,)
    assert torch.allclose(model(image), model(image.unsqueeze(0))[0])


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown model 'vit'.*bncnn"):
        build_model("vit")
    with pytest.raises(ConfigError, match="bad arguments"):
        build_model("bncnn", depth=3)


def test_summary_table_has_shapes_and_parameter_count():
    table = model_summary("bncnn")
    assert "[1, 16, 28, 28]" in table and "[1, 10]" in table
    assert "29,034" in table
