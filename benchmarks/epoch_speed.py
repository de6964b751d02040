"""Training speed: this project's resident-tensor pipeline against the usual tutorial one.

    python benchmarks/epoch_speed.py [--root data] [--images 20000]

Measures images per second of training steps (lenet_utils.speed) and extrapolates to
one 60,000-image epoch: the usual tutorial pipeline (PIL transforms + DataLoader, batch
64, reference layers), MNIST resident as tensors, and resident + lenet_utils.fused (the
compiled CPU kernel for C1..S4; lenet5 only). All rows run in the same process, one
after the other, on the same cores. Also: C3 as one masked convolution against 16
separate convolutions (Table I).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from lenet_utils import fused
from lenet_utils.data import default_root, load_mnist
from lenet_utils.losses import get_loss
from lenet_utils.paper import C3_TABLE
from lenet_utils.checkpoint import read_checkpoint
from lenet_utils.pretrained import weights_path
from lenet_utils.reproduce import RECIPES
from lenet_utils.speed import resident_rate, tutorial_rate
from lenet_utils.train import build_model, make_optimizer, train_epoch


def c3_variants(batch: int = 256, reps: int = 20) -> tuple[float, float]:
    """ms per forward+backward of C3: one masked dense conv vs one conv per output map."""
    x = torch.randn(batch, 6, 14, 14)
    w = torch.randn(16, 6, 5, 5, requires_grad=True)
    mask = torch.zeros(16, 6, 1, 1)
    for o, maps in enumerate(C3_TABLE):
        mask[o, list(maps)] = 1
    ws = [torch.randn(1, len(m), 5, 5, requires_grad=True) for m in C3_TABLE]

    def masked():
        return F.conv2d(x, w * mask)

    def separate():
        return torch.cat([F.conv2d(x[:, list(m)], wi) for m, wi in zip(C3_TABLE, ws)], 1)

    out = []
    for f in (masked, separate):
        f().sum().backward()
        start = time.perf_counter()
        for _ in range(reps):
            f().sum().backward()
        out.append(1000 * (time.perf_counter() - start) / reps)
    return out[0], out[1]


def recipe_pass(name: str, train, images: int, engine: str = "torch") -> float:
    """Seconds per 60,000-pattern pass of a shipped recipe (SDLM with its periodic
    Hessian re-estimates, warm-up and all), timed on its first ``images`` patterns."""
    config = replace(RECIPES[name], engine=engine)
    model = build_model(config.model, 0)
    optimizer = make_optimizer(model, config.resolved())
    subset = (train[0][:images], train[1][:images])
    start = time.perf_counter()
    train_epoch(model, optimizer, get_loss(config.resolved().loss), subset, config.resolved(), 1)
    return (time.perf_counter() - start) * 60000 / images


def time_to_error(name: str, seconds_per_pass: float, target: float = 0.01) -> str:
    """Passes the shipped run needed to reach ``target`` test error, and the time that
    takes at the measured speed."""
    path = weights_path(name)
    if not path.is_file():
        return f"{name}: no shipped weights"
    epochs = read_checkpoint(path).get("history", {}).get("epochs", [])
    hit = next((e["epoch"] for e in epochs if e["test_error"] <= target), None)
    if hit is None:
        best = min((e["test_error"] for e in epochs), default=float("nan"))
        return f"{name}: never reached {100 * target:.2f}% (best {100 * best:.2f}%)"
    return (f"{name}: test error <= {100 * target:.2f}% after pass {hit}, "
            f"{hit * seconds_per_pass:.0f} s at {seconds_per_pass:.1f} s per pass")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=None)
    p.add_argument("--images", type=int, default=20_000, help="images timed per measurement")
    p.add_argument("--batch-sizes", default="32,128,512")
    a = p.parse_args()
    root = a.root or default_root()
    train = load_mnist("train", root)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.images:,} images per row\n")
    fast = ["fused"] if fused.available() else []
    if not fast:
        print("(no fused rows: lenet_utils.fused needs a C++ compiler)")
    engines = {"lenet5": ["torch", *fast], "modern": ["torch"]}  # fused: lenet5 only
    print(f"{'model':<8}{'pipeline':<36}{'images/s':>10}{'s/epoch':>9}{'speed-up':>10}")
    for name in ("lenet5", "modern"):
        base = tutorial_rate(name, root, train, a.images)
        print(f"{name:<8}{'tutorial (PIL + DataLoader, 64)':<36}{base:>10,.0f}{60000 / base:>9.1f}{'1.0x':>10}")
        for engine in engines[name]:
            for bs in map(int, a.batch_sizes.split(",")):
                rate = resident_rate(name, bs, train, a.images, engine)
                label = f"resident{' + fused kernel' if engine == 'fused' else ' tensors'}, batch {bs}"
                print(f"{name:<8}{label:<36}{rate:>10,.0f}{60000 / rate:>9.1f}{rate / base:>9.1f}x")
    print()
    for name in ("lenet5", "modern"):
        for engine in engines[name]:
            per_pass = recipe_pass(name, train, a.images, engine)
            print(f"shipped recipe {name}, engine {engine}: {per_pass:.1f} s per pass of 60,000 "
                  f"(measured on {a.images:,})")
            if engine == "torch":
                print("  " + time_to_error(name, per_pass))
    masked, separate = c3_variants()
    print(f"\nC3 forward+backward, batch 256: masked dense conv {masked:.1f} ms, "
          f"16 separate convs {separate:.1f} ms ({separate / masked:.1f}x)")


if __name__ == "__main__":
    main()
