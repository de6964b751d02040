import gzip
import shutil
import subprocess
import sys

import pytest
import torch

from lenet_utils.data import (MNIST_SHA256, MNISTError, batches, import_mnist, load_mnist,
                              raw_folder, to_lenet_input)
from lenet_utils.paper import BACKGROUND, FOREGROUND

from conftest import SHARED_MNIST


def test_scaling_on_real_mnist(mnist_test):
    x, y = mnist_test
    assert x.shape == (10_000, 1, 32, 32) and x.dtype == torch.float32
    assert y.shape == (10_000,) and y.dtype == torch.int64
    assert float(x.min()) == pytest.approx(BACKGROUND) and float(x.max()) == pytest.approx(FOREGROUND)
    # The 2-pixel padding is pure background.
    border = torch.cat([x[..., :2, :].flatten(), x[..., -2:, :].flatten(),
                        x[..., :, :2].flatten(), x[..., :, -2:].flatten()])
    assert torch.all(border == torch.tensor(BACKGROUND))
    assert torch.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_paper_mean_and_variance_claim_is_not_met(mnist_train):
    """The paper says mean "roughly 0", variance "roughly 1": measured, it is not."""
    x, _ = mnist_train
    assert 0.02 < float(x.mean()) < 0.04
    assert 0.33 < float(x.std()) < 0.37


def test_to_lenet_input_maps_pixels_linearly():
    img = torch.zeros(1, 28, 28, dtype=torch.uint8)
    img[0, 0, 0], img[0, 0, 1] = 255, 51
    x = to_lenet_input(img)
    assert x.shape == (1, 1, 32, 32)
    assert x[0, 0, 2, 2].item() == pytest.approx(FOREGROUND)
    assert x[0, 0, 2, 3].item() == pytest.approx(-0.1 + 1.275 * 51 / 255)
    assert x[0, 0, 0, 0].item() == pytest.approx(BACKGROUND)
    with pytest.raises(TypeError, match="uint8"):
        to_lenet_input(img.float())
    with pytest.raises(ValueError, match="28, 28"):
        to_lenet_input(torch.zeros(2, 32, 32, dtype=torch.uint8))


def test_batches_cover_a_permutation_once():
    x = torch.arange(10.0)[:, None]
    y = torch.arange(10)
    seen = torch.cat([yb for _, yb in batches(x, y, 3, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    for xb, yb in batches(x, y, 4, generator=torch.Generator().manual_seed(1)):
        assert torch.equal(xb[:, 0].long(), yb)


@pytest.fixture()
def shared_copy(tmp_path):
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"{SHARED_MNIST} not present: the offline-import tests need the original files")
    src = tmp_path / "src"
    shutil.copytree(SHARED_MNIST, src)
    return src


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lenet_utils.data", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_import_good_folder(shared_copy, tmp_path):
    result = _cli("import", str(shared_copy), "--root", str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    for name in MNIST_SHA256:
        assert (raw_folder(tmp_path / "data") / name).is_file()
    x, y = load_mnist("test", tmp_path / "data", download=False)
    assert len(x) == len(y) == 10_000


def test_import_accepts_raw_uncompressed_files(shared_copy, tmp_path):
    name = "t10k-labels-idx1-ubyte"
    (shared_copy / name).write_bytes(gzip.decompress((shared_copy / f"{name}.gz").read_bytes()))
    (shared_copy / f"{name}.gz").unlink()
    import_mnist(shared_copy, tmp_path / "data")
    assert (raw_folder(tmp_path / "data") / name).is_file()


def test_import_refuses_a_corrupt_file_and_writes_nothing(shared_copy, tmp_path):
    name = "train-labels-idx1-ubyte"
    data = bytearray(gzip.decompress((shared_copy / f"{name}.gz").read_bytes()))
    data[100] ^= 0xFF  # one flipped label byte
    (shared_copy / f"{name}.gz").write_bytes(gzip.compress(bytes(data)))
    result = _cli("import", str(shared_copy), "--root", str(tmp_path / "data"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and name in result.stderr and "SHA-256 mismatch" in result.stderr
    folder = raw_folder(tmp_path / "data")
    assert not folder.exists() or not any(folder.iterdir())


def test_import_refuses_a_truncated_gzip(shared_copy, tmp_path):
    gz = shared_copy / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:5000])
    result = _cli("import", str(shared_copy), "--root", str(tmp_path / "data"))
    assert result.returncode == 1 and "t10k-images-idx3-ubyte.gz" in result.stderr
    assert "not a valid gzip file" in result.stderr and "Traceback" not in result.stderr


def test_import_names_a_missing_file(shared_copy, tmp_path):
    (shared_copy / "train-images-idx3-ubyte.gz").unlink()
    result = _cli("import", str(shared_copy), "--root", str(tmp_path / "data"))
    assert result.returncode == 1 and "missing train-images-idx3-ubyte.gz" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_without_download_says_how_to_import(tmp_path):
    with pytest.raises(MNISTError, match=r"python -m lenet_utils\.data import DIR"):
        load_mnist("train", tmp_path / "empty", download=False)


def test_damaged_cache_is_refused_on_load(shared_copy, tmp_path):
    root = tmp_path / "data"
    import_mnist(shared_copy, root)
    path = raw_folder(root) / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(MNISTError, match="t10k-labels-idx1-ubyte: SHA-256 mismatch"):
        load_mnist("test", root, download=False)
