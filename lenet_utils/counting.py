"""Trainable parameters and connections per layer, counted the way the paper counts.

A *trainable parameter* is a parameter entry that can receive a nonzero gradient, so
C3's kernels absent from Table I do not count. A *connection* is one multiply (or one
bias) feeding one output unit: a shared weight counts once per place it is used.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import EuclideanRBF, FullConnection, MaskedConv2d, Subsampling


@dataclass(frozen=True)
class LayerCount:
    name: str
    output_shape: tuple[int, ...]
    parameters: int
    connections: int


def trainable_parameters(layer: nn.Module) -> int:
    """Parameter entries of ``layer`` that can receive a gradient."""
    total = 0
    for name, p in layer.named_parameters():
        if not p.requires_grad:
            continue
        mask = getattr(layer, "mask", None)
        if name == "weight" and mask is not None:
            total += int(mask.expand_as(p).sum())
        else:
            total += p.numel()
    return total


def connections(layer: nn.Module, output_shape: tuple[int, ...]) -> int:
    """Connections into the units of ``layer``, whose output (per sample) has ``output_shape``."""
    units = int(torch.tensor(output_shape).prod())
    if isinstance(layer, MaskedConv2d):
        per_map = trainable_parameters(layer) - layer.out_channels  # weights only
        return units // layer.out_channels * (per_map + layer.out_channels)
    if isinstance(layer, Subsampling):
        return units * (4 + 1)
    if isinstance(layer, nn.MaxPool2d):
        k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
        return units * k * k
    if isinstance(layer, FullConnection):
        return units * (layer.in_features + 1)
    if isinstance(layer, nn.Linear):
        return units * (layer.in_features + (layer.bias is not None))
    if isinstance(layer, EuclideanRBF):
        return units * layer.centres.shape[1]
    raise TypeError(f"don't know how to count connections of {type(layer).__name__}")


def layer_counts(model: nn.Module, input_size: int = 32) -> list[LayerCount]:
    """Output shape, trainable parameters and connections of each named layer of ``model``."""
    x = torch.zeros(1, 1, input_size, input_size)
    rows = []
    with torch.no_grad():
        for name, layer in model.layers():
            x = layer(x)
            shape = tuple(x.shape[1:])
            rows.append(LayerCount(name, shape, trainable_parameters(layer), connections(layer, shape)))
    return rows


def count_parameters(model: nn.Module) -> int:
    """Total trainable parameters (60,000 for LeNet5)."""
    return sum(row.parameters for row in layer_counts(model))


def count_connections(model: nn.Module) -> int:
    """Total connections (340,908 for LeNet5, output layer included)."""
    return sum(row.connections for row in layer_counts(model))


def count_table(model: nn.Module) -> str:
    """The per-layer counts as a plain-text table."""
    rows = layer_counts(model)
    lines = [f"{'layer':<7}{'output':>14}{'parameters':>12}{'connections':>13}"]
    for r in rows:
        shape = "x".join(map(str, r.output_shape))
        lines.append(f"{r.name:<7}{shape:>14}{r.parameters:>12,}{r.connections:>13,}")
    lines.append(f"{'total':<7}{'':>14}{sum(r.parameters for r in rows):>12,}"
                 f"{sum(r.connections for r in rows):>13,}")
    return "\n".join(lines)
