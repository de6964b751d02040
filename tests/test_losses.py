import math

import pytest
import torch

from lenet_utils.losses import cross_entropy, map_loss, mse_loss


def test_mse_is_the_mean_correct_penalty():
    y = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert mse_loss(y, torch.tensor([2, 0])).item() == pytest.approx((3 + 4) / 2)


@pytest.mark.parametrize("j", [0.5, 10.0, 100.0])
def test_map_loss_matches_equation_9(j):
    torch.manual_seed(0)
    y = torch.rand(6, 10) * 30
    d = torch.randint(0, 10, (6,))
    direct = sum(float(y[p, d[p]]) + math.log(math.exp(-j) + sum(math.exp(-float(v)) for v in y[p]))
                 for p in range(6)) / 6
    assert map_loss(y, d, j=j).item() == pytest.approx(direct, rel=1e-5)


def test_map_loss_is_stable_for_huge_penalties():
    y = torch.full((2, 10), 1e4)
    y[:, 3] = 0.0
    loss = map_loss(y, torch.tensor([3, 3]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(math.log1p(math.exp(-10.0)), abs=1e-6)


def test_map_with_large_j_tends_to_cross_entropy_on_minus_penalties():
    y = torch.rand(4, 10) * 5
    d = torch.tensor([0, 3, 7, 9])
    assert map_loss(y, d, j=1e3).item() == pytest.approx(cross_entropy(-y, d).item(), rel=1e-6)


@pytest.mark.parametrize("loss", [mse_loss, map_loss, cross_entropy])
def test_labels_out_of_range_are_refused(loss):
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        loss(torch.rand(2, 10), torch.tensor([3, 10]))
    with pytest.raises(TypeError, match="int64"):
        loss(torch.rand(2, 10), torch.tensor([3.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        loss(torch.rand(2, 10), torch.tensor([3, 1, 2]))
