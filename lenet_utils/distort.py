"""Random affine distortions (Section III.B), applied to whole batches of tensors.

The paper adds distorted copies made with "planar affine transformations: horizontal
and vertical translations, scaling, squeezing (simultaneous horizontal compression
and vertical elongation, or the reverse) and horizontal shearing". It gives no
ranges; the defaults below keep digits recognizable on the 32x32 field.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .paper import BACKGROUND


@dataclass(frozen=True)
class DistortionRanges:
    translate: float = 2.0   # pixels, each direction
    scale: float = 0.15      # relative size change, up or down
    squeeze: float = 0.15    # x stretched by (1+s), y by 1/(1+s)
    shear: float = 0.3       # horizontal shear, x += shear * y


def random_affine(x: Tensor, generator: torch.Generator | None = None,
                  ranges: DistortionRanges = DistortionRanges(), p: float = 1.0) -> Tensor:
    """Distort each image of ``x`` (N, 1, H, W) by its own random affine map.

    Each image is distorted with probability ``p`` (else left as is). One
    ``affine_grid`` + ``grid_sample`` for the whole batch; background stays -0.1.
    """
    n, _, h, w = x.shape
    u = torch.rand(n, 5, generator=generator).mul_(2).sub_(1).to(x.device)  # uniform in [-1, 1]
    scale = 1 + ranges.scale * u[:, 0]
    squeeze = 1 + ranges.squeeze * u[:, 1]
    shear = ranges.shear * u[:, 2]
    sx, sy = scale * squeeze, scale / squeeze
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    # theta maps output coordinates to input ones, in [-1, 1] units.
    theta[:, 0, 0] = 1 / sx
    theta[:, 0, 1] = -shear / sx
    theta[:, 1, 1] = 1 / sy
    theta[:, 0, 2] = ranges.translate * u[:, 3] * 2 / w
    theta[:, 1, 2] = ranges.translate * u[:, 4] * 2 / h
    if p < 1:
        keep = torch.rand(n, generator=generator).to(x.device) >= p
        theta[keep] = torch.eye(2, 3, device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    shifted = x - BACKGROUND  # sample with zero padding in a frame where background is 0
    return F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) + BACKGROUND
