"""Trained weights shipped inside the package (``lenet_utils/weights/NAME.pt``)."""
from __future__ import annotations

from importlib import resources

import torch
from torch import nn

from .checkpoint import CheckpointError, load_weights, read_checkpoint
from .model import MODELS

#: Shipped weights and the model class each holds.
PRETRAINED = {"lenet5": "lenet5", "lenet5_distorted": "lenet5", "modern": "modern"}

#: How the shipped weights were made (one command from a fixed seed).
REPRODUCE_COMMAND = "python -m lenet_utils.reproduce --model {name}"


def weights_path(name: str):
    return resources.files("lenet_utils").joinpath("weights", f"{name}.pt")


def load_pretrained(name: str = "lenet5", device: str | torch.device = "cpu") -> nn.Module:
    """A trained network in eval mode: ``"lenet5"`` (faithful, as in the paper),
    ``"lenet5_distorted"`` (the same, trained with distortions) or ``"modern"``."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}; choose one of {sorted(PRETRAINED)}")
    path = weights_path(name)
    if not path.is_file():
        raise CheckpointError(f"no trained weights for {name!r} ship with this version of "
                              f"lenet_utils ({path} is missing); make them with: "
                              + REPRODUCE_COMMAND.format(name=name))
    with resources.as_file(path) as file:
        payload = read_checkpoint(file)
    model = MODELS[PRETRAINED[name]]()
    return load_weights(model, payload, f"shipped weights {name!r}").to(device).eval()
