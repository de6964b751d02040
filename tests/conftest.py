"""Shared fixtures: real MNIST from the project's cache or ../shared, else a clear skip."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "datasets" / "mnist"
SHARED_PAPER = ROOT.parent / "shared" / "paper"


def _data_root() -> Path | None:
    from lenet_utils.data import SPLIT_FILES, raw_folder

    candidates = [Path(os.environ["LENET_DATA"])] if os.environ.get("LENET_DATA") else []
    candidates.append(ROOT / "data")
    for root in candidates:
        if all((raw_folder(root) / n).is_file() for names in SPLIT_FILES.values() for n in names):
            return root
    return None


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    """A data folder holding verified MNIST: the project's, or one imported from ../shared."""
    root = _data_root()
    if root is not None:
        return root
    if not SHARED_MNIST.is_dir():
        pytest.skip("real MNIST not available: run `python -m lenet_utils.data import DIR` "
                    f"or provide {SHARED_MNIST}")
    from lenet_utils.data import import_mnist

    root = tmp_path_factory.mktemp("data")
    import_mnist(SHARED_MNIST, root)
    return root


@pytest.fixture(scope="session")
def mnist_test(mnist_root):
    from lenet_utils.data import load_mnist

    return load_mnist("test", mnist_root, download=False)


@pytest.fixture(scope="session")
def mnist_train(mnist_root):
    from lenet_utils.data import load_mnist

    return load_mnist("train", mnist_root, download=False)
