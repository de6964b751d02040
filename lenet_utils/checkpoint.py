"""Checkpoints as plain dicts of tensors and numbers, loadable with ``weights_only=True``."""
from __future__ import annotations

import os
import pickle
import zipfile
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .model import MODELS

FORMAT = "lenet_utils.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, damaged, or holds another model."""


def model_name(model: nn.Module) -> str:
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise TypeError(f"not a lenet_utils model: {type(model).__name__}")


def save_checkpoint(path: str | Path, model: nn.Module, **extra: Any) -> Path:
    """Write ``model``'s weights and ``extra`` (epoch, history, optimizer state...) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "model": model_name(model), "state_dict": model.state_dict(), **extra}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a checkpoint dict (safely: ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        # torch's UnpicklingError advises weights_only=False, which is wrong advice here
        unpickling = isinstance(err, pickle.UnpicklingError)
        if unpickling and "Unsupported global" in str(err):
            raise CheckpointError(f"{path}: a PyTorch file holding Python objects other than "
                                  "tensors and numbers: not a lenet_utils checkpoint") from err
        if unpickling:
            reason = ("its pickled content is damaged" if zipfile.is_zipfile(path)
                      else "the content is not a PyTorch file")
        else:
            reason = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or damaged?): "
                              f"{reason}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a lenet_utils checkpoint (expected format {FORMAT!r})")
    if payload.get("model") not in MODELS:
        raise CheckpointError(f"{path}: unknown model {payload.get('model')!r}")
    return payload


def load_weights(model: nn.Module, payload: dict[str, Any], source: str = "checkpoint") -> nn.Module:
    """Load the checkpoint's weights into ``model``, refusing a checkpoint of another model."""
    expected = model_name(model)
    if payload["model"] != expected:
        raise CheckpointError(f"{source} holds a {payload['model']!r} model, not {expected!r}: "
                              f"build {MODELS[payload['model']].__name__}() for it, or use "
                              "load_model(path)")
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{source}: its weights do not fit {type(model).__name__} (damaged "
                              f"or from another version?): {str(err).splitlines()[-1].strip()[:300]}"
                              ) from err
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A model of the right class with the checkpoint's weights, in eval mode."""
    payload = read_checkpoint(path)
    model = MODELS[payload["model"]]()
    return load_weights(model, payload, str(path)).to(device).eval()
