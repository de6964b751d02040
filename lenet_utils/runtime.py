"""Seeding and device choice."""
from __future__ import annotations

import random

import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python and torch (CPU and CUDA); return a CPU generator seeded the same."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for the library itself
        pass
    return torch.Generator().manual_seed(seed)


def get_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple's MPS, then the CPU; other names pass through."""
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} asked for, but CUDA is not available here; "
                               "use device='auto' or 'cpu'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
