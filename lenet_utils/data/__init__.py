"""MNIST, resident as tensors, scaled as in the paper.

``load_mnist`` downloads through torchvision (cached under ``root/MNIST/raw``) or
reads a copy imported offline with::

    python -m lenet_utils.data import DIR --root data

Every file is checked against the SHA-256 of the original decompressed IDX file, so
a damaged cache is refused with a message instead of parsed into wrong digits.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..paper import BACKGROUND, FOREGROUND

#: SHA-256 of the four decompressed IDX files (the originals, as torchvision uses them).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMPORT_HINT = "python -m lenet_utils.data import DIR --root {root}"


class MNISTError(RuntimeError):
    """MNIST is missing, damaged or cannot be downloaded; the message says what to do."""


def default_root() -> Path:
    """``$LENET_DATA`` if set; else ``data/`` here or in a parent folder that holds
    MNIST (so that notebooks in ``chapters/`` find the project's cache); else ``./data``."""
    if os.environ.get("LENET_DATA"):
        return Path(os.environ["LENET_DATA"])
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "data" / "MNIST" / "raw").is_dir():
            return folder / "data"
    return here / "data"


def raw_folder(root: str | Path) -> Path:
    return Path(root) / "MNIST" / "raw"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_bytes(name: str, data: bytes) -> None:
    """Raise MNISTError unless ``data`` is the original decompressed file ``name``."""
    digest = sha256(data)
    if digest != MNIST_SHA256[name]:
        raise MNISTError(f"{name}: SHA-256 mismatch ({len(data):,} bytes, sha256 {digest[:12]}..., "
                         f"expected {MNIST_SHA256[name][:12]}...): the file is damaged or not "
                         "the original MNIST")


_verified: dict[Path, tuple[int, int]] = {}


def _verify_file(path: Path) -> None:
    stat = path.stat()
    if _verified.get(path) == (stat.st_size, stat.st_mtime_ns):
        return
    verify_bytes(path.name, path.read_bytes())
    _verified[path] = (stat.st_size, stat.st_mtime_ns)


def _missing_message(root: Path, reason: str) -> str:
    return (f"MNIST is not in {raw_folder(root)} ({reason}). With internet access, "
            f"load_mnist(..., download=True) fetches it. Offline, copy the four files "
            f"({', '.join(n + '.gz' for n in MNIST_SHA256)}) into a folder DIR and run: "
            + IMPORT_HINT.format(root=root))


def _download(root: Path, split: str) -> None:
    from torchvision.datasets import MNIST  # torchvision only where a download is needed

    try:
        MNIST(str(root), train=(split == "train"), download=True)
    except Exception as err:  # torchvision raises RuntimeError/URLError/OSError on no network
        reason = " ".join(str(err).split())[:300]
        raise MNISTError(_missing_message(root, f"download failed: {reason}")) from err


def load_raw(split: str = "train", root: str | Path | None = None,
             download: bool = True) -> tuple[Tensor, Tensor]:
    """The original digits: uint8 images (N, 28, 28) with 0 = background, and int64 labels."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    if split not in SPLIT_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = default_root() if root is None else Path(root)
    paths = [raw_folder(root) / name for name in SPLIT_FILES[split]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing and download:
        _download(root, split)
    elif missing:
        raise MNISTError(_missing_message(root, f"missing {', '.join(missing)}; download=False"))
    for path in paths:
        _verify_file(path)
    return read_image_file(str(paths[0])), read_label_file(str(paths[1])).long()


def to_lenet_input(images: Tensor) -> Tensor:
    """uint8 MNIST digits (N, 28, 28) or (N, 1, 28, 28) -> float (N, 1, 32, 32).

    Pads 2 pixels of background on each side and maps pixel p in 0..255 linearly to
    -0.1 + 1.275 p / 255, so background is -0.1 and full ink 1.175 (Section II.B).
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"expected raw uint8 pixels 0..255, got dtype {images.dtype}")
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[1] != 1 or images.shape[-2:] != (28, 28):
        raise ValueError(f"expected images of shape (N, 28, 28) or (N, 1, 28, 28), got {tuple(images.shape)}")
    x = images.to(torch.float32) * ((FOREGROUND - BACKGROUND) / 255.0) + BACKGROUND
    return F.pad(x, (2, 2, 2, 2), value=BACKGROUND)


def load_mnist(split: str = "train", root: str | Path | None = None, download: bool = True,
               device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
    """A whole split as tensors on ``device``: images (N, 1, 32, 32) float32 in the
    paper's scaling, labels (N,) int64. 60,000 training and 10,000 test digits."""
    images, labels = load_raw(split, root, download)
    return to_lenet_input(images).to(device), labels.to(device)


def batches(x: Tensor, y: Tensor, batch_size: int, shuffle: bool = True,
            generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """Mini-batches as index slices of one permutation, on the tensors' own device.

    No per-sample work: one ``randperm`` per pass, then one gather per batch.
    """
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = len(x)
    if shuffle:
        order = torch.randperm(n, generator=generator).to(x.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield x[idx], y[idx]
    else:
        for start in range(0, n, batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]


# --- offline import --------------------------------------------------------------


def _read_candidate(folder: Path, name: str) -> bytes:
    """Decompressed bytes of ``name`` from ``folder``, given as ``name.gz`` or ``name``."""
    gz, raw = folder / (name + ".gz"), folder / name
    if gz.is_file():
        try:
            return gzip.decompress(gz.read_bytes())
        except (OSError, EOFError) as err:
            raise MNISTError(f"{gz}: not a valid gzip file ({err})") from err
    if raw.is_file():
        return raw.read_bytes()
    raise MNISTError(f"{folder}: missing {name}.gz (or {name})")


def import_mnist(source: str | Path, root: str | Path = "data") -> list[Path]:
    """Copy the four IDX files from ``source`` into ``root/MNIST/raw``, verified.

    All four are read and checked before anything is written, and each is written to
    a temporary file that is renamed into place, so a failure leaves no partial file.
    """
    source = Path(source)
    if not source.is_dir():
        raise MNISTError(f"{source}: no such folder")
    contents = {name: _read_candidate(source, name) for name in MNIST_SHA256}
    for name, data in contents.items():
        verify_bytes(name, data)
    target = raw_folder(root)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in contents.items():
        fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target / name)
        except OSError as err:  # disk full, no permission: say so in one line, leave no .part
            raise MNISTError(f"{target / name}: could not write ({err}); no partial file was "
                             "left, free space or pick another --root and import again") from err
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        written.append(target / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lenet_utils.data",
                                     description="Fetch or import MNIST for lenet_utils.")
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="import the four IDX files (.gz or raw) from a folder")
    imp.add_argument("source", help="folder holding train-images-idx3-ubyte.gz etc.")
    imp.add_argument("--root", default="data", help="data folder (default: data)")
    dl = sub.add_parser("download", help="download MNIST with torchvision")
    dl.add_argument("--root", default="data", help="data folder (default: data)")
    args = parser.parse_args(argv)
    try:
        if args.command == "import":
            for path in import_mnist(args.source, args.root):
                print(f"imported {path}")
        else:
            for split in SPLIT_FILES:
                load_raw(split, args.root, download=True)
            print(f"MNIST is in {raw_folder(args.root)}")
    except MNISTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
