import pytest
import torch

from lenet_utils import LAYER_NAMES, LeNet5, ModernLeNet5, seed_everything
from lenet_utils.layers import scaled_tanh, scaled_tanh_derivative
from lenet_utils.paper import C3_TABLE, SQUASH_A, c3_mask, rbf_bitmaps

SHAPES = {"C1": (6, 28, 28), "S2": (6, 14, 14), "C3": (16, 10, 10), "S4": (16, 5, 5),
          "C5": (120, 1, 1), "F6": (84,), "output": (10,)}


@pytest.mark.parametrize("cls", [LeNet5, ModernLeNet5])
def test_every_layer_shape(cls):
    acts = cls().activations(torch.zeros(3, 1, 32, 32))
    assert list(acts) == ["input", *LAYER_NAMES]
    for name, shape in SHAPES.items():
        assert tuple(acts[name].shape) == (3, *shape), name


@pytest.mark.parametrize("cls", [LeNet5, ModernLeNet5])
def test_predict_returns_class_indices(cls):
    pred = cls().predict(torch.zeros(5, 1, 32, 32))
    assert pred.dtype == torch.int64 and pred.shape == (5,)
    assert int(pred.min()) >= 0 and int(pred.max()) <= 9


def test_lenet5_predicts_the_smallest_penalty():
    model = LeNet5()
    x = torch.rand(8, 1, 32, 32)
    assert torch.equal(model.predict(x), model(x).argmin(1))


def test_c3_connects_exactly_table_i():
    mask = c3_mask()
    assert mask.sum() == 60 and (~mask).sum() == 36
    for c3, s2_maps in enumerate(C3_TABLE):
        assert set(mask[c3].nonzero().flatten().tolist()) == set(s2_maps)
    # Spot checks against the printed table: column 15 takes all six maps, column 0 takes 0,1,2.
    assert mask[15].all() and mask[0].tolist() == [True, True, True, False, False, False]
    weight = LeNet5().C3.weight
    absent = ~mask[:, :, None, None].expand_as(weight)
    assert int(absent.sum()) == 900
    assert torch.count_nonzero(weight[absent]) == 0


def test_absent_c3_weights_get_no_gradient_and_stay_zero():
    model = LeNet5()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-3)
    absent = ~c3_mask()[:, :, None, None].expand_as(model.C3.weight)
    for _ in range(5):
        loss = model(torch.rand(16, 1, 32, 32)).min(1).values.mean()
        opt.zero_grad()
        loss.backward()
        assert torch.count_nonzero(model.C3.weight.grad[absent]) == 0
        assert torch.count_nonzero(model.C3.weight.grad[~absent]) > 0
        opt.step()
    assert torch.count_nonzero(model.C3.weight[absent]) == 0


def test_c3_output_ignores_unconnected_maps():
    """Changing S2 map 5 must not change C3 map 0, which Table I connects to maps 0-2."""
    c3 = LeNet5().C3
    s2 = torch.randn(1, 6, 14, 14)
    moved = s2.clone()
    moved[:, 5] += 3
    assert torch.allclose(c3(s2)[:, 0], c3(moved)[:, 0])
    assert not torch.allclose(c3(s2)[:, 4], c3(moved)[:, 4])


def test_squashing_function():
    a = torch.tensor([-1.0, 0.0, 1.0, 50.0])
    assert torch.allclose(scaled_tanh(a)[:3], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-4)
    assert scaled_tanh(a)[3] == pytest.approx(SQUASH_A)
    a = torch.linspace(-3, 3, 601, requires_grad=True)
    (grad,) = torch.autograd.grad(scaled_tanh(a).sum(), a)
    assert torch.allclose(grad, scaled_tanh_derivative(a.detach()), atol=1e-6)


def test_subsampling_is_coefficient_times_sum_plus_bias():
    s2 = LeNet5().S2
    x = torch.randn(2, 6, 28, 28)
    blocks = x.unfold(2, 2, 2).unfold(3, 2, 2).sum((-1, -2))
    expected = scaled_tanh(blocks * s2.coefficient[:, None, None] + s2.bias[:, None, None])
    assert torch.allclose(s2(x), expected, atol=1e-5)
    assert s2.coefficient.shape == (6,) and s2.bias.shape == (6,)


def test_rbf_centres_are_the_fig3_bitmaps_and_fixed():
    model = LeNet5()
    bitmaps = rbf_bitmaps()
    assert bitmaps.shape == (10, 12, 7) and set(bitmaps.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(model.output.centres, bitmaps.reshape(10, 84))
    assert [int((b > 0).sum()) for b in bitmaps] == [35, 27, 33, 32, 41, 35, 39, 25, 43, 39]
    assert "output.centres" not in dict(model.named_parameters())
    # The bitmap of each digit is at zero penalty from itself.
    assert torch.allclose(model.output(bitmaps.reshape(10, 84)).diagonal(), torch.zeros(10))


def test_bitmaps_match_the_specification_file():
    from conftest import SHARED_PAPER

    spec = SHARED_PAPER / "rbf_digit_bitmaps.txt"
    if not spec.is_file():
        pytest.skip(f"{spec} not present")
    from importlib import resources

    shipped = resources.files("lenet_utils").joinpath("rbf_digit_bitmaps.txt").read_text()
    assert shipped == spec.read_text()


def test_rbf_penalty_is_squared_euclidean_distance():
    model = LeNet5()
    x = torch.randn(4, 84)
    direct = torch.stack([((x - c) ** 2).sum(1) for c in model.output.centres], 1)
    assert torch.allclose(model.output(x), direct, rtol=1e-5)


def test_paper_initialization_bounds():
    seed_everything(0)
    m = LeNet5()
    bounds = {"C1": 2.4 / 25, "C5": 2.4 / 400, "F6": 2.4 / 120}
    for name, bound in bounds.items():
        w = getattr(m, name).weight.detach()
        assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.9 * bound, name
    for c3_map, maps in enumerate(C3_TABLE):
        w = m.C3.weight.detach()[c3_map]
        assert float(w.abs().max()) <= 2.4 / (25 * len(maps))


def test_same_seed_same_weights():
    seed_everything(3)
    a = LeNet5().state_dict()
    seed_everything(3)
    b = LeNet5().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_c5_is_a_convolution_on_larger_inputs():
    model = LeNet5()
    x = torch.randn(1, 1, 40, 40)
    for name in ("C1", "S2", "C3", "S4", "C5"):
        x = getattr(model, name)(x)
    assert x.shape == (1, 120, 3, 3)
    # The fast 5x5 path equals the convolution.
    s4 = torch.randn(2, 16, 5, 5)
    conv = torch.nn.functional.conv2d(s4, model.C5.weight, model.C5.bias)
    assert torch.allclose(model.C5.pre_activation(s4), conv, atol=1e-5)
