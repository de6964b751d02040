"""Timing training: this project's pipeline against the usual tutorial one.

Shared by ``benchmarks/epoch_speed.py`` and the speed chapter. Every rate is images per
second of whole training steps (forward, loss, backward, update) after one warm-up
batch. "Tutorial" is what most PyTorch MNIST tutorials do: torchvision's MNIST with
per-sample PIL transforms (Pad, ToTensor, Normalize) and a DataLoader with batch 64,
feeding the same model and optimizer. "Resident" keeps MNIST in memory as tensors and
slices shuffled batches from it (:func:`lenet_utils.data.batches`).
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from .data import batches
from .losses import get_loss
from .sdlm import SDLM
from .train import TrainConfig, build_model, forward_fn, make_optimizer

#: The tutorial pipeline's batch size.
TUTORIAL_BATCH = 64


def rate(forward: Callable[[Tensor], Tensor], optimizer: torch.optim.Optimizer,
         loss_fn: Callable, pairs: Iterable[tuple[Tensor, Tensor]], limit: int) -> float:
    """Images per second over at least ``limit`` images of ``pairs`` (after one warm-up batch)."""
    seen, start = 0, None
    for xb, yb in pairs:
        loss = loss_fn(forward(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if start is None:  # the first batch pays one-time costs
            start = time.perf_counter()
            continue
        seen += len(yb)
        if seen >= limit:
            break
    return seen / (time.perf_counter() - start)


def setup(name: str, batch_size: int, x: Tensor) -> tuple[nn.Module, torch.optim.Optimizer, Callable]:
    """A fresh model with its default optimizer (SDLM primed on 500 patterns) and loss."""
    config = TrainConfig(model=name, batch_size=batch_size).resolved()
    model = build_model(name, 0)
    optimizer = make_optimizer(model, config)
    if isinstance(optimizer, SDLM):
        optimizer.update_hessian(x[:500])
    return model, optimizer, get_loss(config.loss)


def resident_rate(name: str, batch_size: int, train: tuple[Tensor, Tensor], limit: int,
                  engine: str = "torch") -> float:
    """Training images per second with MNIST resident as tensors."""
    model, optimizer, loss_fn = setup(name, batch_size, train[0])
    pairs = batches(*train, batch_size, generator=torch.Generator().manual_seed(0))
    return rate(forward_fn(model, engine), optimizer, loss_fn, pairs, limit)


def tutorial_rate(name: str, root: str | Path, train: tuple[Tensor, Tensor], limit: int) -> float:
    """Training images per second with the usual tutorial pipeline (reference layers)."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Pad(2), transforms.ToTensor(),
                             transforms.Normalize((0.1307,), (0.3081,))])
    loader = torch.utils.data.DataLoader(datasets.MNIST(str(root), train=True, transform=tf),
                                         batch_size=TUTORIAL_BATCH, shuffle=True)
    model, optimizer, loss_fn = setup(name, TUTORIAL_BATCH, train[0])
    return rate(model, optimizer, loss_fn, iter(loader), limit)


#: Kinds of operator for :func:`milliseconds_by_kind`: a kind's name and substrings of
#: the ``aten::`` operator names that belong to it (checked in this order).
OPERATOR_KINDS = {
    "convolutions (C1, C3)": ("conv",),
    "squashing (tanh)": ("tanh",),
    "subsampling (avg_pool2d)": ("pool",),
    "matrix products (C5, F6)": ("mm", "linear"),
}


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """The profiler's C++ engine (Kineto) prints status lines straight to file descriptor
    2, bypassing Python: Jupyter would show them under the cell."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def milliseconds_by_kind(step: Callable[[], None], calls: int = 10) -> dict[str, float]:
    """Milliseconds per call of ``step``, by kind of operator (:data:`OPERATOR_KINDS`, then
    "everything else"), from the self time of each ``aten::`` operator in PyTorch's profiler."""
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            step()
    out: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith("aten::"):
            kind = next((k for k, keys in OPERATOR_KINDS.items()
                         if any(key in event.key for key in keys)), "everything else")
            out[kind] = out.get(kind, 0.0) + event.self_cpu_time_total / 1e3 / calls
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
