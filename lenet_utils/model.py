"""LeNet-5 as in the paper (:class:`LeNet5`) and a modern variant (:class:`ModernLeNet5`).

Both expose the layers under the paper's names (``C1, S2, C3, S4, C5, F6, output``),
``predict`` for class indices and ``activations`` for every layer's output by name.
"""
from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from .layers import EuclideanRBF, FullConnection, MaskedConv2d, Subsampling, kaiming_reset_
from .paper import c3_mask, rbf_bitmaps

LAYER_NAMES = ("C1", "S2", "C3", "S4", "C5", "F6", "output")
INPUT_SHAPE = (1, 32, 32)
#: Inputs scaled as in the paper lie in [-0.1, 1.175]; far beyond means unscaled pixels.
_MAX_PLAUSIBLE = 10.0


def check_input(x: Tensor, spatial: tuple[int, int] | None = (32, 32)) -> None:
    """Raise a ValueError/TypeError that says what to do if ``x`` is not a LeNet-5 batch."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor of shape (N, 1, 32, 32), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"expected a float tensor, got dtype {x.dtype}; convert raw MNIST pixels "
                        "with lenet_utils.data.to_lenet_input(images)")
    shape = tuple(x.shape)
    if x.dim() == 3 and shape[0] == 1:
        hint = "; add the batch dimension with x.unsqueeze(0)"
    elif x.dim() == 3:
        hint = "; add the channel dimension with x.unsqueeze(1)"
    elif shape[-2:] == (28, 28):
        hint = ("; MNIST digits are 28x28: pad them to 32x32 and scale them with "
                "lenet_utils.data.to_lenet_input(images)")
    else:
        hint = ""
    expected = "(N, 1, 32, 32)" if spatial else "(N, 1, H, W)"
    if x.dim() != 4 or shape[1] != 1 or (spatial is not None and shape[-2:] != spatial):
        raise ValueError(f"expected input of shape {expected}, got {shape}{hint}")
    if shape[0] == 0:
        raise ValueError("expected a batch of at least one image, got an empty batch of shape "
                         f"{shape}")
    low, high = torch.stack(torch.aminmax(x.detach())).tolist()  # one device sync
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("input contains NaN or infinite values; LeNet-5 expects the paper's "
                         "scaling (background -0.1, ink 1.175) from "
                         "lenet_utils.data.to_lenet_input(images)")
    peak = max(-low, high)
    if peak > _MAX_PLAUSIBLE:
        raise ValueError(f"input values reach {peak:g}; LeNet-5 expects the paper's scaling "
                         "(background -0.1, ink 1.175). Raw 0..255 pixels? Use "
                         "lenet_utils.data.to_lenet_input(images)")
    if low == 0.0 and 0.0 < high <= 1.0:
        # A background of exactly 0 and ink up to 1: pixels divided by 255 (torchvision's
        # ToTensor), which the model accepts but classifies worse than the paper's scaling.
        warnings.warn("input looks like pixels scaled to 0..1 (background 0, ink up to "
                      f"{high:g}); LeNet-5 expects the paper's scaling (background -0.1, ink "
                      "1.175): use lenet_utils.data.to_lenet_input(images) on the raw uint8 "
                      "digits", UserWarning, stacklevel=2)


class _LeNet(nn.Module):
    """What both variants share: ordered named layers, input checks, predict, activations."""

    def layers(self) -> Iterator[tuple[str, nn.Module]]:
        """The layers in order, as (paper name, module)."""
        for name in LAYER_NAMES:
            yield name, getattr(self, name)

    def check_input(self, x: Tensor) -> None:
        """:func:`check_input`, plus: ``x`` has this model's dtype and device."""
        check_input(x)
        param = next(self.parameters())
        if x.dtype != param.dtype:
            raise TypeError(f"input dtype {x.dtype} differs from the model's {param.dtype}; "
                            f"convert with x.to({param.dtype})")
        if x.device != param.device:
            raise ValueError(f"input is on {x.device} but the model is on {param.device}; "
                             f"move it with x.to({str(param.device)!r})")

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        for _, layer in self.layers():
            x = layer(x)
        return x.flatten(1)

    def activations(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """Every layer's output for a batch ``x``, keyed ``input, C1, ..., F6, output``."""
        self.check_input(x)
        out = OrderedDict(input=x)
        for name, layer in self.layers():
            x = layer(x)
            out[name] = x
        out["output"] = x.flatten(1)
        return out

    def scores(self, output: Tensor) -> Tensor:
        """Turn this model's raw output into scores where larger means more likely."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Class indices (N,) as int64."""
        return self.scores(self(x)).argmax(1)


class LeNet5(_LeNet):
    """The network of Section II.B: 60,000 trainable parameters, 340,908 connections.

    ``forward`` returns the RBF penalties (N, 10): the smallest marks the class.
    Train it with :func:`lenet_utils.losses.map_loss` (Eq. 9) or ``mse_loss`` (Eq. 8).
    """

    default_loss = "map"

    def __init__(self) -> None:
        super().__init__()
        self.C1 = MaskedConv2d(1, 6, 5)
        self.S2 = Subsampling(6)
        self.C3 = MaskedConv2d(6, 16, 5, connections=c3_mask())
        self.S4 = Subsampling(16)
        self.C5 = MaskedConv2d(16, 120, 5)
        self.F6 = FullConnection(120, 84)
        self.output = EuclideanRBF(rbf_bitmaps())

    def scores(self, output: Tensor) -> Tensor:
        return -output


class ModernLeNet5(_LeNet):
    """The same shapes with today's defaults: ReLU, 2x2 max-pooling, a dense C3,
    He initialization, and a linear output giving logits for cross-entropy."""

    default_loss = "cross_entropy"

    def __init__(self) -> None:
        super().__init__()
        self.C1 = MaskedConv2d(1, 6, 5, activation=nn.ReLU())
        self.S2 = nn.MaxPool2d(2)
        self.C3 = MaskedConv2d(6, 16, 5, activation=nn.ReLU())
        self.S4 = nn.MaxPool2d(2)
        self.C5 = MaskedConv2d(16, 120, 5, activation=nn.ReLU())
        self.F6 = FullConnection(120, 84, activation=nn.ReLU())
        self.output = nn.Linear(84, 10)
        for module in (self.C1, self.C3, self.C5, self.F6, self.output):
            kaiming_reset_(module)

    def scores(self, output: Tensor) -> Tensor:
        return output


MODELS: dict[str, type[_LeNet]] = {"lenet5": LeNet5, "modern": ModernLeNet5}
