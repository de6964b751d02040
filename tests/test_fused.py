"""The fused CPU engine computes what the reference layers compute, gradients included."""
import subprocess
import sys

import pytest
import torch

from lenet_utils import LeNet5, ModernLeNet5, fused, load_pretrained
from lenet_utils.losses import map_loss
from lenet_utils.train import TrainConfig, build_model, fit, forward_fn

needs_kernel = pytest.mark.skipif(not fused.available(),
                                  reason="the fused engine needs a C++ compiler (g++ or clang++)")


def _grads(model, forward, x, y):
    model.zero_grad()
    map_loss(forward(x), y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@needs_kernel
@pytest.mark.parametrize("name", ["fresh", "trained"])
def test_forward_equals_reference(name, mnist_test):
    model = build_model("lenet5", 0) if name == "fresh" else load_pretrained("lenet5")
    x = mnist_test[0][:200]
    with torch.no_grad():
        ref, out = model.activations(x), fused.features(model, x)
        assert torch.allclose(out, ref["S4"], atol=2e-5)
        penalties = fused.forward(model, x)
    assert torch.allclose(penalties, ref["output"], rtol=1e-5, atol=1e-3)
    assert torch.equal(penalties.argmin(1), ref["output"].argmin(1))


@needs_kernel
@pytest.mark.parametrize("n", [1, 16, 37])  # one lane, one full block, a ragged last block
def test_gradients_equal_reference(n, mnist_test):
    model = load_pretrained("lenet5")
    x, y = mnist_test[0][:n], mnist_test[1][:n]
    ref = _grads(model, model, x, y)
    got = _grads(model, lambda t: fused.forward(model, t), x, y)
    for name, g in ref.items():
        scale = g.abs().max().item() + 1e-6
        assert torch.allclose(got[name], g, rtol=1e-4, atol=1e-4 * scale), name


@needs_kernel
def test_absent_c3_connections_get_no_gradient(mnist_test):
    model = build_model("lenet5", 0)
    grads = _grads(model, lambda t: fused.forward(model, t), *(t[:64] for t in mnist_test))
    absent = ~model.C3.mask.bool().expand_as(model.C3.weight)
    assert absent.sum() == 900
    assert torch.count_nonzero(grads["C3.weight"][absent]) == 0
    assert torch.count_nonzero(grads["C3.weight"][~absent]) == 1516 - 16


@needs_kernel
def test_same_input_same_bits_and_threads_agree(mnist_test):
    model = build_model("lenet5", 0)
    x, y = mnist_test[0][:96], mnist_test[1][:96]
    forward = lambda t: fused.forward(model, t)  # noqa: E731
    first, second = _grads(model, forward, x, y), _grads(model, forward, x, y)
    assert all(torch.equal(first[n], second[n]) for n in first)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = _grads(model, forward, x, y)
    finally:
        torch.set_num_threads(threads)
    for n, g in first.items():  # thread count changes the order of sums only
        assert torch.allclose(single[n], g, rtol=1e-4, atol=1e-4 * g.abs().max().item()), n


@needs_kernel
def test_training_with_either_engine_follows_the_same_path(mnist_test, mnist_train):
    """100 Adam steps from the same start end at nearly the same weights."""
    train = (mnist_train[0][:3200], mnist_train[1][:3200])
    test = (mnist_test[0][:500], mnist_test[1][:500])
    weights = {}
    for engine in ("torch", "fused"):
        model = build_model("lenet5", 0)
        config = TrainConfig(epochs=1, batch_size=32, optimizer="adam", lr=1e-3, engine=engine)
        history = fit(model, train, test, config, progress=False, log=None)
        weights[engine] = torch.cat([p.detach().flatten() for p in model.parameters()])
        assert history.epochs[0].test_error < 0.7  # it learns (chance: 0.9)
    start = torch.cat([p.detach().flatten() for p in build_model("lenet5", 0).parameters()])
    moved = (weights["torch"] - start).norm()
    assert (weights["fused"] - weights["torch"]).norm() < 1e-4 * moved  # measured: 6e-7


@needs_kernel
def test_refuses_what_it_does_not_compute(mnist_test):
    x = mnist_test[0][:4]
    with pytest.raises(fused.FusedUnavailable, match="ModernLeNet5.*engine='torch'"):
        fused.forward(ModernLeNet5(), x)
    with pytest.raises(fused.FusedUnavailable, match="float32"):
        fused.forward(LeNet5().double(), x.double())
    with pytest.raises(fused.FusedUnavailable, match="gradient with respect to the input"):
        fused.forward(LeNet5(), x.clone().requires_grad_())
    for call in (fused.forward, fused.features):  # checked before the kernel reads memory
        with pytest.raises(ValueError, match="expected input of shape"):
            call(LeNet5(), x[:, :, :28, :28])
    with pytest.raises(ValueError, match="unknown engine 'gpu'"):
        forward_fn(LeNet5(), "gpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_refuses_gpu_tensors():
    model = LeNet5().cuda()
    with pytest.raises(fused.FusedUnavailable, match="runs on the CPU"):
        fused.forward(model, torch.zeros(2, 1, 32, 32, device="cuda"))


def test_without_a_compiler_the_error_says_what_to_do(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(fused.shutil, "which", lambda name: None)
    with pytest.raises(fused.FusedUnavailable, match="no C\\+\\+ compiler.*engine='torch'"):
        fused._build()


@needs_kernel
def test_a_failed_build_reports_the_compiler_output(monkeypatch, tmp_path):
    bad = tmp_path / "features.cpp"
    bad.write_text("this is not C++\n")
    monkeypatch.setattr(fused, "SOURCE", bad)
    monkeypatch.setenv("LENET_CACHE", str(tmp_path / "cache"))
    with pytest.raises(fused.FusedUnavailable, match="(?s)failed; train with engine='torch'.*error"):
        fused._build()
    assert not list((tmp_path / "cache").glob("*.so"))  # nothing half-built left behind


@needs_kernel
def test_the_build_is_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("LENET_CACHE", str(tmp_path))
    first = fused._build()
    stamp = first.stat().st_mtime_ns
    assert fused._build() == first and first.stat().st_mtime_ns == stamp


def test_cli_rejects_the_fused_engine_for_the_modern_model(mnist_root):
    run = subprocess.run([sys.executable, "-m", "lenet_utils.train", "--model", "modern",
                          "--engine", "fused", "--epochs", "1", "--root", str(mnist_root),
                          "--no-progress"], capture_output=True, text=True)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert "error:" in run.stderr and "engine" in run.stderr


def test_speed_helpers_time_both_engines(mnist_train):
    """Smoke test of what the benchmark and the speed chapter time (no timing asserted)."""
    from lenet_utils.speed import milliseconds_by_kind, resident_rate

    train = (mnist_train[0][:512], mnist_train[1][:512])
    for engine in ["torch"] + (["fused"] if fused.available() else []):
        assert resident_rate("lenet5", 64, train, 128, engine) > 0
    model = LeNet5()
    ms = milliseconds_by_kind(lambda: model(train[0][:32]).sum().backward(), calls=2)
    assert ms["convolutions (C1, C3)"] > 0 and ms["squashing (tanh)"] > 0


@needs_kernel
def test_the_portable_fallback_build_agrees(monkeypatch, tmp_path, mnist_test):
    """Where a compiler lacks OpenMP or -march=native, the plain build (SSE2 on x86,
    std::thread) is used: it must compute the same function."""
    target = tmp_path / "plain.so"
    assert fused._compile(fused._compiler(), fused.FLAGS, target) is None
    monkeypatch.setattr(fused, "_library", lambda: fused._load(target))
    model = load_pretrained("lenet5")
    x, y = mnist_test[0][:37], mnist_test[1][:37]
    with torch.no_grad():
        assert torch.allclose(fused.features(model, x), model.activations(x)["S4"], atol=2e-5)
    ref = _grads(model, model, x, y)
    got = _grads(model, lambda t: fused.forward(model, t), x, y)
    for name, g in ref.items():
        assert torch.allclose(got[name], g, rtol=1e-4, atol=1e-4 * g.abs().max().item()), name
