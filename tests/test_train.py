import subprocess
import sys

import pytest
import torch
from torch.func import functional_call, jacrev, vmap

from lenet_utils.checkpoint import load_model, read_checkpoint
from lenet_utils.losses import map_loss
from lenet_utils.runtime import get_device
from lenet_utils.sdlm import SDLM, diagonal_hessian
from lenet_utils.train import TrainConfig, build_model, confusion_matrix, error_rate, fit


def _exact_gauss_newton_diagonal(model, x):
    """2 * sum_j (dF6_j/dw_k)^2, averaged over samples, from full per-sample Jacobians."""
    params = {n: p.detach() for n, p in model.named_parameters()}

    def f6(p, xi):
        h = xi[None]
        for name, layer in model.layers():
            if name == "output":
                break
            local = {k.split(".", 1)[1]: v for k, v in p.items() if k.startswith(name + ".")}
            h = functional_call(layer, local, (h,))
        return h.flatten()

    jac = vmap(jacrev(f6), (None, 0))(params, x)
    return {n: (2 * j.square().sum(1)).mean(0) for n, j in jac.items()}


def test_sdlm_hessian_is_exact_where_the_diagonal_rule_is(mnist_test):
    """Through C5 and F6 each weight feeds one unit per sample, so the paper's
    back-propagated diagonal equals the exact Gauss-Newton diagonal there."""
    x = mnist_test[0][:16]
    model = build_model("lenet5", 0)
    lecun = diagonal_hessian(model, x)
    exact = _exact_gauss_newton_diagonal(model, x)
    for name in ("F6.weight", "F6.bias", "C5.weight", "C5.bias"):
        assert torch.allclose(lecun[name], exact[name], rtol=1e-4, atol=1e-10), name
    for name, h in lecun.items():
        assert torch.all(h >= 0), name
    absent = ~model.C3.mask.bool().expand_as(model.C3.weight)
    assert torch.count_nonzero(lecun["C3.weight"][absent]) == 0


def test_sdlm_step_is_eta_over_mu_plus_h():
    model = build_model("lenet5", 0)
    opt = SDLM(model, lr=1e-3, mu=0.02, batch_size=4)
    with pytest.raises(RuntimeError, match="update_hessian"):
        opt.step_sizes()
    x = torch.rand(8, 1, 32, 32)
    opt.update_hessian(x)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(x).mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    sizes = opt.step_sizes()
    opt.step()
    for n, p in model.named_parameters():
        assert torch.allclose(p, before[n] - 4 * sizes[n] * grads[n], atol=1e-7), n


def test_sdlm_training_lowers_the_loss(mnist_train, mnist_test):
    """A short run of the default recipe. From the paper's small initial weights the
    network first sits on a plateau (~700 updates, all outputs near the mean bitmap),
    so a short run can only show the loss going down; the accuracy of a full run is
    checked on the shipped weights (test_pretrained.py)."""
    x, y = mnist_train
    model = build_model("lenet5", 0)
    test = (mnist_test[0][:1000], mnist_test[1][:1000])
    with torch.no_grad():
        initial = float(map_loss(model(x[:3000]), y[:3000]))
    history = fit(model, (x[:3000], y[:3000]), test,
                  # warm-up as long in updates as on the full set (20 x 94 = 1,875)
                  TrainConfig(epochs=2, batch_size=32, hessian_every=20, warmup=20), progress=False,
                  log=None)
    losses = [e.train_loss for e in history.epochs]
    assert losses[1] < losses[0] < initial
    matrix = confusion_matrix(model, *test)
    assert matrix.sum() == 1000 and matrix.shape == (10, 10)
    assert 1 - matrix.diagonal().sum().item() / 1000 == pytest.approx(error_rate(model, *test))


def test_modern_model_trains_with_cross_entropy(mnist_train, mnist_test):
    x, y = mnist_train
    model = build_model("modern", 0)
    history = fit(model, (x[:6000], y[:6000]), (mnist_test[0][:2000], mnist_test[1][:2000]),
                  TrainConfig(model="modern", epochs=1, batch_size=64), progress=False, log=None)
    assert history.config.loss == "cross_entropy" and history.config.optimizer == "adam"
    assert history.epochs[0].test_error < 0.2


def test_checkpoint_round_trip(tmp_path):
    model = build_model("lenet5", 1)
    from lenet_utils.checkpoint import save_checkpoint

    path = save_checkpoint(tmp_path / "m.pt", model, epoch=3)
    loaded = load_model(path)
    assert read_checkpoint(path)["epoch"] == 3
    x = torch.rand(2, 1, 32, 32)
    assert torch.equal(model(x), loaded(x))
    torch.load(path, weights_only=True)  # loadable safely, without pickle code


def test_cli_prints_one_line_per_epoch(mnist_root, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lenet_utils.train", "--model", "modern", "--epochs", "2",
         "--batch-size", "256", "--train-size", "5000", "--root", str(mnist_root), "--out", str(tmp_path / "m.pt"),
         "--no-progress", "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = [l for l in result.stdout.splitlines() if l.startswith("epoch")]
    assert len(lines) == 2 and "test error" in lines[0] and lines[1].startswith("epoch  2/2")
    assert read_checkpoint(tmp_path / "m.pt")["epoch"] == 2


def test_device_auto_falls_back_to_cpu():
    expected = "cuda" if torch.cuda.is_available() else None
    assert get_device("auto").type in {expected, "mps", "cpu"}
    if not torch.cuda.is_available():
        assert get_device("auto").type in {"mps", "cpu"}
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            get_device("cuda")


def test_warmup_ramps_the_rate_during_the_first_pass_only():
    config = TrainConfig(warmup=1.0)
    assert config.warmup_factor(0.25) == 0.25 and config.warmup_factor(1.0) == 1.0
    assert config.warmup_factor(3.0) == 1.0
    assert TrainConfig().warmup_factor(0.0) == 1.0  # no warm-up by default


def test_hessian_is_re_estimated_every_n_updates(monkeypatch):
    calls = []
    original = SDLM.update_hessian
    monkeypatch.setattr(SDLM, "update_hessian", lambda self, x: (calls.append(len(x)), original(self, x)))
    torch.manual_seed(0)
    x = torch.rand(640, 1, 32, 32) * 1.275 - 0.1
    y = torch.randint(0, 10, (640,))
    config = TrainConfig(epochs=1, batch_size=32, hessian_every=5, hessian_samples=100,
                         lr=[1e-6])
    fit(build_model("lenet5", 0), (x, y), (x[:64], y[:64]), config, progress=False, log=None)
    # once before the pass (the paper), then after updates 5, 10 and 15 of 20
    assert calls == [100, 100, 100, 100]
