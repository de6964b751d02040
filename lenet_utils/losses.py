"""The paper's criteria (Section II.C) and cross-entropy for the modern model.

All take the model's raw output and int64 class labels and return the batch mean.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

#: Constant j of Eq. 9, which the paper does not give. It is the penalty of an extra
#: "rubbish" class: incorrect classes whose penalty is already well above j no longer
#: get pushed up, so j should sit well below the distance between two bitmaps
#: (at least 4 x 10 differing pixels = 40) and above the penalty of a good fit.
DEFAULT_J = 10.0


def check_targets(output: Tensor, target: Tensor) -> None:
    """Raise a ValueError if labels do not fit the output (shape, dtype, range)."""
    if target.dtype != torch.int64:
        raise TypeError(f"labels must be int64 class indices, got dtype {target.dtype}")
    if target.shape != output.shape[:1]:
        raise ValueError(f"expected labels of shape ({output.shape[0]},), got {tuple(target.shape)}")
    if output.shape[0] == 0:
        raise ValueError("empty batch: the mean loss over no patterns is undefined")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= output.shape[1]):
        raise ValueError(f"labels must lie in 0..{output.shape[1] - 1}, got values from "
                         f"{int(target.min())} to {int(target.max())}")


def mse_loss(penalties: Tensor, target: Tensor) -> Tensor:
    """Eq. 8: the mean penalty of the correct class, E = mean(y_D)."""
    check_targets(penalties, target)
    return penalties.gather(1, target[:, None]).mean()


def map_loss(penalties: Tensor, target: Tensor, j: float = DEFAULT_J) -> Tensor:
    """Eq. 9: E = mean(y_D + log(exp(-j) + sum_i exp(-y_i))).

    Written as a log-sum-exp over the ten scores -y_i and the constant -j, so it is
    cross-entropy with an extra class of fixed penalty j, and numerically stable.
    """
    check_targets(penalties, target)
    rubbish = penalties.new_full((penalties.shape[0], 1), -j)
    log_partition = torch.logsumexp(torch.cat([-penalties, rubbish], dim=1), dim=1)
    return (penalties.gather(1, target[:, None]).squeeze(1) + log_partition).mean()


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Softmax cross-entropy on logits (the modern model)."""
    check_targets(logits, target)
    return F.cross_entropy(logits, target)


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": mse_loss, "map": map_loss, "cross_entropy": cross_entropy,
}


def get_loss(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]
