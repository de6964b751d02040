"""Trained weights shipped inside the package (``lenet_utils/weights/NAME.pt``)."""
from __future__ import annotations

from importlib import resources

import torch
from torch import nn

from .checkpoint import CheckpointError, load_weights, read_checkpoint
from .model import MODELS

#: How the shipped weights were made (one command from a fixed seed).
REPRODUCE_COMMAND = "python -m lenet_utils.reproduce --model {name}"


def weights_path(name: str):
    return resources.files("lenet_utils").joinpath("weights", f"{name}.pt")


def load_pretrained(name: str = "lenet5", device: str | torch.device = "cpu") -> nn.Module:
    """The trained ``"lenet5"`` (faithful) or ``"modern"`` network, in eval mode."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    path = weights_path(name)
    if not path.is_file():
        raise CheckpointError(f"no trained weights for {name!r} ship with this version of "
                              f"lenet_utils ({path} is missing); make them with: "
                              + REPRODUCE_COMMAND.format(name=name))
    with resources.as_file(path) as file:
        payload = read_checkpoint(file)
    return load_weights(MODELS[name](), payload, f"shipped weights {name!r}").to(device).eval()
