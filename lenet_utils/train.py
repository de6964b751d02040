"""Training and evaluation, for both models, with the paper's schedule and SDLM.

Command line (one line per pass)::

    python -m lenet_utils.train --model lenet5 --epochs 20 --out runs/lenet5.pt
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from .checkpoint import CheckpointError, load_weights, read_checkpoint, save_checkpoint
from .data import MNISTError, batches, load_mnist
from . import fused
from .distort import random_affine
from .losses import get_loss
from .model import MODELS
from .paper import PAPER_LR_SCHEDULE, SDLM_HESSIAN_SAMPLES, SDLM_MU
from .runtime import get_device, seed_everything
from .sdlm import SDLM

Data = tuple[Tensor, Tensor]


#: SDLM as measured to work with mini-batches (see the training chapter): the paper's
#: schedule divided by 4 under the linear batch rule, h re-estimated every 200 updates
#: as well as before each pass, and a linear warm-up over the first pass. The paper's
#: small initial weights make h tiny at first, and the paper's full rate then diverges.
SDLM_LR_SCALE = 0.25
SDLM_HESSIAN_EVERY = 200
SDLM_WARMUP = 1.0


@dataclass
class TrainConfig:
    """Everything that decides a run. ``None`` means "the model's own default"."""

    model: str = "lenet5"
    epochs: int = 20
    batch_size: int = 32
    loss: str | None = None          # lenet5: "map" (Eq. 9); modern: "cross_entropy"
    optimizer: str | None = None     # lenet5: "sdlm"; modern: "adam"
    lr: Sequence[float] | float | None = None  # sdlm: paper's schedule x SDLM_LR_SCALE; adam: 1e-3
    mu: float = SDLM_MU
    hessian_samples: int = SDLM_HESSIAN_SAMPLES
    hessian_every: int | None = None  # sdlm: also re-estimate h every N updates (SDLM_HESSIAN_EVERY)
    distort: float = 0.0             # probability that a training pattern is distorted
    # passes of linear warm-up (sdlm: SDLM_WARMUP, else 0). What matters is its length in
    # updates (1,875 on the full set at batch 32): on a smaller set, raise it to match.
    warmup: float | None = None
    seed: int = 0
    # "torch": the reference layers (what the book reads, what the shipped weights used);
    # "fused": lenet5's C1..S4 in one compiled CPU kernel (lenet_utils.fused), several
    # times faster on a CPU, equal up to float rounding but not bit for bit.
    engine: str = "torch"

    def resolved(self) -> "TrainConfig":
        """The same config with every ``None`` replaced by the model's default."""
        optimizer = self.optimizer or ("sdlm" if self.model == "lenet5" else "adam")
        sdlm = optimizer == "sdlm"
        lr = self.lr
        if lr is None:
            lr = [SDLM_LR_SCALE * eta for eta in PAPER_LR_SCHEDULE] if sdlm else 1e-3
        return replace(self, loss=self.loss or MODELS[self.model].default_loss,
                       optimizer=optimizer, lr=lr,
                       hessian_every=self.hessian_every if self.hessian_every is not None
                       else (SDLM_HESSIAN_EVERY if sdlm else None),
                       warmup=self.warmup if self.warmup is not None else (SDLM_WARMUP if sdlm else 0.0))

    def lr_at(self, epoch: int) -> float:
        """Learning rate of pass ``epoch`` (0-based); a schedule repeats its last value."""
        if isinstance(self.lr, (int, float)):
            return float(self.lr)
        return float(self.lr[min(epoch, len(self.lr) - 1)])

    def warmup_factor(self, progress: float) -> float:
        """Factor on the rate after ``progress`` passes (1 once warm-up is over)."""
        warmup = self.warmup or 0.0
        return 1.0 if progress >= warmup else progress / warmup


@dataclass
class EpochResult:
    epoch: int
    lr: float
    train_loss: float
    train_error: float   # measured on the fly during the pass, as in the paper's Fig. 5
    test_error: float
    seconds: float

    def line(self, epochs: int) -> str:
        return (f"epoch {self.epoch:>2}/{epochs}  loss {self.train_loss:.4f}  "
                f"train error {100 * self.train_error:5.2f}%  test error {100 * self.test_error:5.2f}%  "
                f"lr {self.lr:.1e}  {self.seconds:5.1f} s")


@dataclass
class History:
    config: TrainConfig
    epochs: list[EpochResult] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"config": asdict(self.config), "epochs": [asdict(e) for e in self.epochs]}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(TrainConfig(**d["config"]), [EpochResult(**e) for e in d["epochs"]])


@torch.no_grad()
def predict_all(model: nn.Module, x: Tensor, batch_size: int = 5000) -> Tensor:
    """Predicted classes for all of ``x``, in eval mode, batch by batch."""
    was_training = model.training
    model.eval()
    out = torch.cat([model.predict(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def check_data(x: Tensor, y: Tensor, what: str = "evaluation data", classes: int = 10) -> None:
    """Raise a ValueError/TypeError unless ``(x, y)`` is a non-empty labelled set."""
    if len(x) != len(y):
        raise ValueError(f"{what}: {len(x)} images but {len(y)} labels")
    if len(x) == 0:
        raise ValueError(f"{what} is empty (0 images): nothing to train on or evaluate")
    if y.dtype != torch.int64 or y.dim() != 1:
        raise TypeError(f"{what}: labels must be a 1-D int64 tensor of class indices, got "
                        f"dtype {y.dtype} and shape {tuple(y.shape)}")
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        raise ValueError(f"{what}: labels must lie in 0..{classes - 1}, got values from {low} "
                         f"to {high}")


def error_rate(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Fraction of misclassified patterns."""
    check_data(x, y)
    return float((predict_all(model, x) != y).float().mean())


def confusion_matrix(model: nn.Module, x: Tensor, y: Tensor, classes: int = 10) -> Tensor:
    """(classes, classes) int64 counts: row = true label, column = prediction."""
    check_data(x, y, classes=classes)
    pred = predict_all(model, x)
    return torch.bincount(y.cpu() * classes + pred.cpu(), minlength=classes * classes).view(classes, classes)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sdlm":
        return SDLM(model, lr=config.lr_at(0), mu=config.mu, batch_size=config.batch_size)
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr_at(0))
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr_at(0), momentum=0.9)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose sdlm, adam or sgd")


def forward_fn(model: nn.Module, engine: str) -> Callable[[Tensor], Tensor]:
    """What computes the model's output in training: ``model`` itself, or the fused kernel."""
    if engine == "torch":
        return model
    if engine == "fused":
        return lambda x: fused.forward(model, x)
    raise ValueError(f"unknown engine {engine!r}; choose 'torch' or 'fused'")


def _progress(iterable, total: int, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, leave=False)


def _hessian_sample(x: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``n`` random patterns of ``x`` for the SDLM curvature estimate."""
    return x[torch.randperm(len(x), generator=generator)[:n].to(x.device)]


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable,
                train: Data, config: TrainConfig, epoch: int, progress: bool = False) -> tuple[float, float]:
    """One pass over ``train``; returns (mean loss, on-the-fly error rate)."""
    x, y = train
    generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)  # resumable order
    lr = config.lr_at(epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    sdlm = isinstance(optimizer, SDLM)
    if sdlm:
        optimizer.update_hessian(_hessian_sample(x, config.hessian_samples, generator))
    model.train()
    forward = forward_fn(model, config.engine)
    total_loss = torch.zeros((), device=x.device)
    errors = torch.zeros((), dtype=torch.long, device=x.device)
    steps = -(-len(x) // config.batch_size)
    for step, (xb, yb) in enumerate(_progress(batches(x, y, config.batch_size, generator=generator),
                                              steps, progress, f"pass {epoch + 1}")):
        if sdlm and config.hessian_every and step and step % config.hessian_every == 0:
            optimizer.update_hessian(_hessian_sample(x, config.hessian_samples, generator))
        if epoch < (config.warmup or 0.0):
            for group in optimizer.param_groups:
                group["lr"] = lr * config.warmup_factor(epoch + (step + 1) / steps)
        if config.distort:
            xb = random_affine(xb, generator, p=config.distort)
        out = forward(xb)
        loss = loss_fn(out, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            total_loss += loss.detach() * len(yb)
            errors += (model.scores(out).argmax(1) != yb).sum()
    return float(total_loss) / len(x), int(errors) / len(x)


def fit(model: nn.Module, train: Data, test: Data, config: TrainConfig | None = None,
        progress: bool = True, checkpoint: str | Path | None = None, resume: bool = False,
        log: Callable[[str], None] | None = print) -> History:
    """Train ``model`` on ``train``, measuring test error after each pass.

    With ``checkpoint``, the state is saved after every pass; with ``resume`` too, a
    run starts from that file's last pass and continues identically (each pass's data
    order is a function of the seed and the pass number only).
    """
    config = (config or TrainConfig()).resolved()
    for (x, y), what in ((train, "training set"), (test, "test set")):
        check_data(x, y, what=what)
        if hasattr(model, "check_input"):  # the whole set, once, before any training
            try:
                model.check_input(x)
            except (TypeError, ValueError) as err:
                raise type(err)(f"{what}: {err}") from None
    for name, cls in MODELS.items():
        if type(model) is cls and name != config.model:
            raise ValueError(f"the model is a {cls.__name__} but the config says "
                             f"model={config.model!r}: use TrainConfig(model={name!r}, ...)")
    forward = forward_fn(model, config.engine)  # an unknown engine fails here
    if config.engine != "torch":
        with torch.no_grad():  # and an unusable one now (no compiler...), not mid-run
            forward(train[0][:1])
    loss_fn = get_loss(config.loss)
    optimizer = make_optimizer(model, config)
    history = History(config)
    if resume and checkpoint and Path(checkpoint).is_file():
        payload = read_checkpoint(checkpoint)
        load_weights(model, payload, str(checkpoint))
        if "optimizer" not in payload or "history" not in payload:
            raise CheckpointError(f"{checkpoint} holds weights only, not a training run's "
                                  "state (optimizer, history): it cannot be resumed")
        saved = payload["history"]["config"]
        changed = [k for k in ("optimizer", "loss", "batch_size") if saved.get(k) != getattr(config, k)]
        if changed:
            raise CheckpointError(f"{checkpoint} was trained with " + ", ".join(
                f"{k}={saved.get(k)!r}" for k in changed) + "; resume with the same settings "
                "(" + ", ".join(f"not {k}={getattr(config, k)!r}" for k in changed) + ")")
        optimizer.load_state_dict(payload["optimizer"])
        history = History.from_dict(payload["history"])
        history.config = config
    else:
        seed_everything(config.seed)
    for epoch in range(len(history.epochs), config.epochs):
        start = time.perf_counter()
        loss, train_err = train_epoch(model, optimizer, loss_fn, train, config, epoch, progress)
        seconds = time.perf_counter() - start
        result = EpochResult(epoch + 1, config.lr_at(epoch), loss, train_err,
                             error_rate(model, *test), seconds)
        history.epochs.append(result)
        if log:
            log(result.line(config.epochs))
        if checkpoint:
            save_checkpoint(checkpoint, model, optimizer=optimizer.state_dict(),
                            history=history.as_dict(), epoch=epoch + 1)
    return history


def build_model(name: str, seed: int = 0) -> nn.Module:
    """A freshly initialized model, seeded so that the same seed gives the same weights."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    seed_everything(seed)
    return MODELS[name]()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lenet_utils.train", description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(MODELS), default="lenet5")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--loss", choices=["map", "mse", "cross_entropy"])
    p.add_argument("--optimizer", choices=["sdlm", "adam", "sgd"])
    p.add_argument("--lr", type=float, help="constant learning rate (default: the model's schedule)")
    p.add_argument("--distort", type=float, default=0.0, help="probability of distorting a pattern")
    p.add_argument("--train-size", type=int, help="train on the first N patterns only (quick checks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=None, help="MNIST data folder (default: ./data)")
    p.add_argument("--device", default="auto")
    p.add_argument("--engine", choices=["torch", "fused"], default="torch",
                   help="fused: lenet5's C1..S4 in a compiled CPU kernel (several times faster)")
    p.add_argument("--out", type=Path, help="checkpoint written after every pass")
    p.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.resume and not a.out:
        p.error("--resume needs --out")
    device = get_device(a.device)
    try:
        train, test = (load_mnist(s, a.root, device=device) for s in ("train", "test"))
    except MNISTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if a.train_size:
        train = (train[0][:a.train_size], train[1][:a.train_size])
    config = TrainConfig(model=a.model, epochs=a.epochs, batch_size=a.batch_size, loss=a.loss,
                         optimizer=a.optimizer, lr=a.lr, distort=a.distort, seed=a.seed,
                         engine=a.engine)
    model = build_model(a.model, a.seed).to(device)
    print(f"training {a.model} on {device} ({len(train[0]):,} patterns, batch {a.batch_size})")
    try:
        fit(model, train, test, config, progress=not a.no_progress, checkpoint=a.out, resume=a.resume)
    except (CheckpointError, fused.FusedUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        saved = f"; the last finished pass is in {a.out}: add --resume to continue" if a.out else ""
        print(f"interrupted{saved}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
