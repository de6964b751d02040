"""The building blocks of LeNet-5: squashing, convolution with a connection table,
trainable subsampling, and the Euclidean RBF output.

Every trainable layer splits into ``pre_activation`` (the weighted sum, which may be
called with substitute parameters) and ``activation``. The SDLM optimizer relies on
that split to back-propagate second derivatives through the same code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .paper import SQUASH_A, SQUASH_S

Params = dict[str, Tensor]


def scaled_tanh(a: Tensor) -> Tensor:
    """The paper's squashing function f(a) = 1.7159 tanh(2/3 a) (Appendix A)."""
    return SQUASH_A * torch.tanh(SQUASH_S * a)


def scaled_tanh_derivative(a: Tensor) -> Tensor:
    """f'(a) = A S (1 - tanh^2(S a))."""
    t = torch.tanh(SQUASH_S * a)
    return SQUASH_A * SQUASH_S * (1 - t * t)


class ScaledTanh(nn.Module):
    """Module form of :func:`scaled_tanh`."""

    def forward(self, a: Tensor) -> Tensor:
        return scaled_tanh(a)

    def extra_repr(self) -> str:
        return f"A={SQUASH_A}, S={SQUASH_S:.4f}"


def paper_uniform_(tensor: Tensor, fan_in: int | Tensor) -> Tensor:
    """Uniform in [-2.4/F, 2.4/F] (Appendix A); ``fan_in`` may vary per output unit."""
    bound = 2.4 / torch.as_tensor(fan_in, dtype=tensor.dtype)
    while bound.dim() < tensor.dim():
        bound = bound.unsqueeze(-1)
    with torch.no_grad():
        return tensor.copy_((torch.rand_like(tensor) * 2 - 1) * bound)


class _Squashed(nn.Module):
    """A weighted sum followed by an activation (the paper's squashing by default)."""

    def __init__(self, activation: nn.Module | None) -> None:
        super().__init__()
        self.activation = activation if activation is not None else ScaledTanh()

    def _params(self, params: Params | None) -> Params:
        return dict(self.named_parameters(recurse=False)) if params is None else params

    def pre_activation(self, x: Tensor, params: Params | None = None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.pre_activation(x))


class MaskedConv2d(_Squashed):
    """Valid convolution whose kernel is multiplied by a fixed 0/1 connection table.

    With ``connections`` of shape (out, in), kernels of absent input maps are zero
    and, being multiplied by the mask in every forward pass, receive zero gradient.
    One masked dense convolution is much faster on CPU than one convolution per
    output map (see ``benchmarks/``). For an input exactly the kernel's size (C5 on
    5x5 maps) the convolution is computed as the equal matrix product, which is faster.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 connections: Tensor | None = None, activation: nn.Module | None = None) -> None:
        super().__init__(activation)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        if connections is None:
            self.mask: Tensor | None = None
        else:
            if connections.shape != (out_channels, in_channels):
                raise ValueError(f"connection table must be ({out_channels}, {in_channels}), "
                                 f"got {tuple(connections.shape)}")
            self.register_buffer("mask", connections.to(torch.float32)[:, :, None, None])
        self.reset_parameters()

    def fan_in(self) -> Tensor:
        """Inputs (bias excluded) of one unit of each output map."""
        k2 = self.kernel_size ** 2
        if self.mask is None:
            return torch.full((self.out_channels,), self.in_channels * k2)
        return self.mask.flatten(1).sum(1).long() * k2

    def reset_parameters(self) -> None:
        fan_in = self.fan_in()
        paper_uniform_(self.weight, fan_in)
        paper_uniform_(self.bias, fan_in)
        if self.mask is not None:
            with torch.no_grad():
                self.weight.mul_(self.mask)

    def kernel(self, weight: Tensor | None = None) -> Tensor:
        """The effective kernel: the weights with absent connections zeroed."""
        weight = self.weight if weight is None else weight
        return weight if self.mask is None else weight * self.mask

    def pre_activation(self, x: Tensor, params: Params | None = None) -> Tensor:
        p = self._params(params)
        kernel = self.kernel(p["weight"])
        if x.shape[-2:] == kernel.shape[-2:]:
            out = F.linear(x.flatten(1), kernel.flatten(1), p["bias"])
            return out[:, :, None, None]
        return F.conv2d(x, kernel, p["bias"])

    def extra_repr(self) -> str:
        table = "" if self.mask is None else f", connections={int(self.mask.sum())}/{self.mask.numel()}"
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}{table}"


class Subsampling(_Squashed):
    """Trainable 2x2 subsampling: f(coefficient * (sum of 4 inputs) + bias), per map.

    The paper says both "average" and "added"; with a trainable coefficient the two
    differ only by a factor 4 that the coefficient absorbs. We use the sum, so the
    fan-in of each unit is 4 and the initial coefficients lie in [-0.6, 0.6].
    """

    def __init__(self, channels: int, activation: nn.Module | None = None) -> None:
        super().__init__(activation)
        self.channels = channels
        self.coefficient = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        paper_uniform_(self.coefficient, 4)
        paper_uniform_(self.bias, 4)

    def pre_activation(self, x: Tensor, params: Params | None = None) -> Tensor:
        p = self._params(params)
        total = F.avg_pool2d(x, 2) * 4  # sum of each non-overlapping 2x2 block
        return total * p["coefficient"][:, None, None] + p["bias"][:, None, None]

    def extra_repr(self) -> str:
        return f"{self.channels}, window=2x2"


class FullConnection(_Squashed):
    """Fully connected layer (F6) with paper initialization and squashing."""

    def __init__(self, in_features: int, out_features: int, activation: nn.Module | None = None) -> None:
        super().__init__(activation)
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        paper_uniform_(self.weight, self.in_features)
        paper_uniform_(self.bias, self.in_features)

    def pre_activation(self, x: Tensor, params: Params | None = None) -> Tensor:
        p = self._params(params)
        return F.linear(x.flatten(1), p["weight"], p["bias"])

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}"


class EuclideanRBF(nn.Module):
    """Output layer (Eq. 7): y_i = sum_j (x_j - w_ij)^2 with fixed centres w_i.

    The centres are a buffer, not a parameter: they are the Fig. 3 bitmaps and never
    learn (the paper notes that learnable centres let the MSE loss collapse). The
    output is a *penalty*: the smallest wins.
    """

    def __init__(self, centres: Tensor) -> None:
        super().__init__()
        self.register_buffer("centres", centres.reshape(centres.shape[0], -1).to(torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        diff = x.flatten(1)[:, None, :] - self.centres
        return (diff * diff).sum(-1)

    def extra_repr(self) -> str:
        return f"{self.centres.shape[1]} -> {self.centres.shape[0]}, fixed centres"


def kaiming_reset_(module: nn.Module) -> None:
    """He-uniform weights and zero biases: the modern default for ReLU layers."""
    for name, p in module.named_parameters(recurse=False):
        if name == "weight":
            nn.init.kaiming_uniform_(p, nonlinearity="relu")
        else:
            nn.init.zeros_(p)
