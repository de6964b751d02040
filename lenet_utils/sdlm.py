"""Stochastic diagonal Levenberg-Marquardt (Appendix C).

Each parameter k gets its own step eta / (mu + h_kk), where h_kk estimates the
diagonal of the Hessian with the Gauss-Newton approximation. h is estimated on a few
hundred patterns before each pass and held fixed for the pass.

The estimate back-propagates second derivatives as the paper does (Eq. 23-27): through
a weighted sum with squared weights, through the squashing with f'(a)^2, and into a
shared weight as the sum over its connections of (input^2 x second derivative). We get
that from autograd by running each layer's own ``pre_activation`` on squared inputs with
squared weights, and letting gradients through each squashing scaled by f'(a)^2.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from .layers import EuclideanRBF, scaled_tanh_derivative
from .paper import SDLM_MU

#: Second derivative of the loss with respect to each F6 output. For the MSE term of
#: both criteria, y_D = sum_j (x_j - w_Dj)^2, it is exactly 2; the MAP term's extra
#: curvature is left out, which keeps the estimate positive (as Gauss-Newton must be).
OUTPUT_CURVATURE = 2.0


def diagonal_hessian(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Gauss-Newton estimate of d2E/dw_k^2 for every parameter, averaged over ``x``."""
    squares = {n: p.detach().square().requires_grad_() for n, p in model.named_parameters()}
    value, surrogate = x, x.square()
    for name, layer in model.layers():
        if isinstance(layer, EuclideanRBF):
            break
        local = {k: squares[f"{name}.{k}"] for k, _ in layer.named_parameters(recurse=False)}
        with torch.no_grad():
            a = layer.pre_activation(value)
            value = layer.activation(a)
            gain = scaled_tanh_derivative(a).square()
        a_sq = layer.pre_activation(surrogate, local)
        # value: the squared activation (input of the next layer's weight terms);
        # gradient: f'(a)^2 times what arrives from above.
        surrogate = value.square() + gain * (a_sq - a_sq.detach())
    (surrogate.sum() * (OUTPUT_CURVATURE / len(x))).backward()
    return {n: t.grad for n, t in squares.items()}


class SDLM(Optimizer):
    """SGD with a per-parameter step ``lr / (mu + h)``.

    ``lr`` is the paper's global rate eta, per pattern. A mini-batch of B patterns
    whose *mean* loss has gradient g takes the step B * eta / (mu + h) * g, the same
    first-order step as B one-pattern updates; pass ``batch_size=B``. Call
    :meth:`update_hessian` before each pass.
    """

    def __init__(self, model: nn.Module, lr: float = 5e-4, mu: float = SDLM_MU,
                 batch_size: int = 1) -> None:
        self.model = model
        names = {p: n for n, p in model.named_parameters()}
        params = list(names)
        super().__init__(params, dict(lr=lr, mu=mu, batch_size=batch_size))
        self._names = names

    @torch.no_grad()
    def update_hessian(self, x: Tensor) -> None:
        """Re-estimate h on the patterns ``x`` (the paper uses 500)."""
        if hasattr(self.model, "check_input"):  # the estimate bypasses forward's checks
            self.model.check_input(x)
        with torch.enable_grad():
            h = diagonal_hessian(self.model, x)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["h"] = h[self._names[p]]
                self.state[p]["denominator"] = h[self._names[p]] + group["mu"]

    def step_sizes(self) -> dict[str, Tensor]:
        """The per-pattern effective learning rate eta / (mu + h) of every parameter."""
        out = {}
        for group in self.param_groups:
            for p in group["params"]:
                h = self._hessian(p)
                out[self._names[p]] = group["lr"] / (group["mu"] + h)
        return out

    def _hessian(self, p: Tensor) -> Tensor:
        if "h" not in self.state[p]:
            raise RuntimeError("SDLM needs a Hessian estimate: call update_hessian(x) first")
        return self.state[p]["h"]

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                self._hessian(p)  # a clear error if update_hessian was never called
            # One fused update of every tensor: p -= B * eta * grad / (mu + h).
            torch._foreach_addcdiv_(params, [p.grad for p in params],
                                    [self.state[p]["denominator"] for p in params],
                                    value=-group["lr"] * group["batch_size"])
        return loss
