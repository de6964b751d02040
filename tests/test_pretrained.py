"""The weights shipped in the package: made by the documented recipe, as good as claimed."""
from dataclasses import asdict

import pytest
import torch

from lenet_utils import LeNet5, ModernLeNet5, load_pretrained
from lenet_utils.checkpoint import read_checkpoint
from lenet_utils.pretrained import PRETRAINED, weights_path
from lenet_utils.reproduce import RECIPES
from lenet_utils.train import TrainConfig, error_rate

#: Test error bounds: the paper's 0.95% (+ its stated 0.1% uncertainty is not used: we
#: ask for <= 1.00%), its 0.8% with distortions, and a modern network's usual ~1%.
BOUNDS = {"lenet5": 0.0100, "lenet5_distorted": 0.0085, "modern": 0.0130}


def _shipped(name):
    if not weights_path(name).is_file():
        pytest.fail(f"{name}: no shipped weights; make them with python -m lenet_utils.reproduce --model {name}")
    return read_checkpoint(weights_path(name))


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_weights_reach_their_test_error(name, mnist_test):
    model = load_pretrained(name)
    assert isinstance(model, ModernLeNet5 if name == "modern" else LeNet5)
    assert not model.training
    measured = error_rate(model, *mnist_test)
    assert measured <= BOUNDS[name], f"{name}: {100 * measured:.2f}% > {100 * BOUNDS[name]:.2f}%"
    # The figure stored with the weights is the one measured here.
    assert _shipped(name)["test_error"] == pytest.approx(measured, abs=1e-6)


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_weights_come_from_the_documented_recipe(name):
    payload = _shipped(name)
    assert payload["recipe"] == name
    recipe = asdict(RECIPES[name].resolved())
    # TrainConfig(**...) fills fields added since (engine: the reference, then the only one)
    stored = asdict(TrainConfig(**payload["history"]["config"]))
    assert stored == recipe
    assert len(payload["history"]["epochs"]) == recipe["epochs"]


def test_faithful_weights_keep_table_i():
    model = load_pretrained("lenet5")
    absent = ~model.C3.mask.bool().expand_as(model.C3.weight)
    assert torch.count_nonzero(model.C3.weight[absent]) == 0
