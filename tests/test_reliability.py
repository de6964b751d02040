"""Bad input through the public API, damaged files, no network, determinism, resume.

Each bad input must end in an exception (or, for 0..1 pixels, a warning) whose message
says what is wrong and what to do; none may give a silent wrong answer. No test here
touches the network: sockets to the outside are refused for the whole module.
"""
from __future__ import annotations

import errno
import os
import socket
import urllib.error
import urllib.request
import warnings

import pytest
import torch

from lenet_utils import LeNet5, ModernLeNet5, load_mnist, load_pretrained, to_lenet_input
from lenet_utils import data as data_module
from lenet_utils.checkpoint import CheckpointError, load_model, load_weights, read_checkpoint, save_checkpoint
from lenet_utils.data import MNIST_SHA256, MNISTError, import_mnist, raw_folder, sha256
from lenet_utils.losses import cross_entropy, map_loss, mse_loss
from lenet_utils.train import TrainConfig, build_model, confusion_matrix, error_rate, fit

MODELS = [LeNet5, ModernLeNet5]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to reach another host fails at once, as on a machine without network."""
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(errno.ENETUNREACH, "network unreachable (blocked by test_reliability)")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def blank(n: int = 2) -> torch.Tensor:
    """A batch of empty digits in the paper's scaling (background -0.1)."""
    return torch.full((n, 1, 32, 32), -0.1)


# --- images ----------------------------------------------------------------------

BAD_IMAGES = {
    # name: (tensor, exception, part of the message)
    "28x28 digits, unpadded": (torch.zeros(2, 1, 28, 28), ValueError, "to_lenet_input"),
    "28x28 without channel": (torch.zeros(2, 28, 28), ValueError, r"unsqueeze\(1\)"),
    "single image, no batch dim": (torch.zeros(1, 32, 32), ValueError, r"unsqueeze\(0\)"),
    "2-D image": (torch.zeros(32, 32), ValueError, r"\(N, 1, 32, 32\)"),
    "three channels": (torch.zeros(2, 3, 32, 32), ValueError, r"got \(2, 3, 32, 32\)"),
    "raw uint8 pixels": (torch.zeros(2, 1, 32, 32, dtype=torch.uint8), TypeError, "to_lenet_input"),
    "int64 pixels": (torch.zeros(2, 1, 32, 32, dtype=torch.int64), TypeError, "float tensor"),
    "float64 input": (torch.zeros(2, 1, 32, 32, dtype=torch.float64), TypeError, "torch.float32"),
    "numpy array": (torch.zeros(2, 1, 32, 32).numpy(), TypeError, "torch.Tensor"),
    "pixels 0..255 as float": (torch.full((2, 1, 32, 32), 255.0), ValueError, "Raw 0..255 pixels"),
    "NaN pixels": (torch.full((2, 1, 32, 32), float("nan")), ValueError, "NaN"),
    "infinite pixels": (torch.full((2, 1, 32, 32), float("inf")), ValueError, "infinite"),
    "empty batch": (torch.zeros(0, 1, 32, 32), ValueError, "empty batch"),
}


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", BAD_IMAGES, ids=str)
def test_bad_images_are_refused_with_a_hint(cls, case):
    x, exc, match = BAD_IMAGES[case]
    model = cls()
    for call in (model, model.predict, model.activations):
        with pytest.raises(exc, match=match):
            call(x)


def test_real_digits_in_0_255_range_are_refused(mnist_test):
    x, _ = mnist_test
    raw = (x[:4] - x.min()) / (x.max() - x.min()) * 255  # what a user gets from uint8.float()
    with pytest.raises(ValueError, match="input values reach 255.*to_lenet_input"):
        load_pretrained("lenet5").predict(raw)


def test_digits_scaled_to_0_1_give_a_warning(mnist_test):
    """Pixels / 255 (torchvision's ToTensor) run, but classify worse: the user is warned."""
    x, _ = mnist_test
    unit = (x[:8] - x.min()) / (x.max() - x.min())
    model = load_pretrained("lenet5")
    with pytest.warns(UserWarning, match="scaled to 0..1.*to_lenet_input"):
        model.predict(unit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(x[:8])          # the paper's scaling: no warning
        model.predict(blank())        # blank digits: no warning
        model(torch.rand(2, 1, 32, 32))  # noise without an exact-0 background: no warning


def test_device_mismatch_says_where_the_model_is():
    model = LeNet5().to("meta")
    with pytest.raises(ValueError, match="model is on meta"):
        model(blank())


def test_to_lenet_input_refuses_what_it_cannot_convert():
    with pytest.raises(TypeError, match="uint8"):
        to_lenet_input(torch.rand(2, 28, 28))
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        to_lenet_input(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):  # scaling twice
        to_lenet_input(to_lenet_input(torch.zeros(2, 28, 28, dtype=torch.uint8)))


# --- labels and evaluation --------------------------------------------------------

BAD_LABELS = {
    "label 10": (torch.tensor([1, 10]), ValueError, "labels must lie in 0..9"),
    "label -1": (torch.tensor([-1, 1]), ValueError, "labels must lie in 0..9"),
    "float labels": (torch.tensor([1.0, 2.0]), TypeError, "int64"),
    "int32 labels": (torch.tensor([1, 2], dtype=torch.int32), TypeError, "int64"),
    "too many labels": (torch.tensor([1, 2, 3]), ValueError, "2 images but 3 labels|shape"),
}


@pytest.mark.parametrize("case", BAD_LABELS, ids=str)
def test_bad_labels_in_losses_and_evaluation(case):
    y, exc, match = BAD_LABELS[case]
    model = LeNet5()
    out = model(blank())
    for loss in (mse_loss, map_loss, cross_entropy):
        with pytest.raises(exc, match=match):
            loss(out, y)
    for evaluate in (error_rate, confusion_matrix):  # never a silent error rate or a crash
        with pytest.raises(exc, match=match):
            evaluate(model, blank(), y)


def test_empty_batch_in_losses_and_evaluation():
    empty_out, empty_y = torch.zeros(0, 10), torch.zeros(0, dtype=torch.long)
    for loss in (mse_loss, map_loss, cross_entropy):
        with pytest.raises(ValueError, match="empty batch"):  # was a silent NaN
            loss(empty_out, empty_y)
    with pytest.raises(ValueError, match="empty"):
        error_rate(LeNet5(), blank(0), empty_y)


def test_fit_refuses_bad_data_before_training():
    model, x, y = LeNet5(), blank(4), torch.tensor([0, 1, 2, 3])
    cfg = TrainConfig(epochs=1, hessian_samples=4)
    cases = [
        ((x[:0], y[:0]), (x, y), ValueError, "training set is empty"),
        ((x, torch.tensor([0, 1, 2, 10])), (x, y), ValueError, "training set: labels must lie in 0..9"),
        ((x, y), (x, torch.tensor([0, 1, 2, 12])), ValueError, "test set: labels must lie in 0..9"),
        ((x, y[:3]), (x, y), ValueError, "training set: 4 images but 3 labels"),
        ((x * 0 + 255, y), (x, y), ValueError, "Raw 0..255 pixels"),
        ((x[:, :, 2:30, 2:30], y), (x, y), ValueError, "to_lenet_input"),
    ]
    for train, test, exc, match in cases:
        with pytest.raises(exc, match=match):
            fit(model, train, test, cfg, progress=False, log=None)


def test_fit_refuses_a_config_for_the_other_model():
    with pytest.raises(ValueError, match=r"TrainConfig\(model='modern'"):
        fit(ModernLeNet5(), (blank(), torch.tensor([0, 1])), (blank(), torch.tensor([0, 1])),
            TrainConfig(model="lenet5", epochs=1), progress=False, log=None)


def test_unknown_names():
    with pytest.raises(ValueError, match="choose one of"):
        load_pretrained("lenet")
    with pytest.raises(ValueError, match="choose one of"):
        build_model("resnet")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_mnist("validation", download=False)


# --- checkpoints ------------------------------------------------------------------


@pytest.fixture()
def saved(tmp_path):
    return {"lenet5": save_checkpoint(tmp_path / "lenet5.pt", LeNet5()),
            "modern": save_checkpoint(tmp_path / "modern.pt", ModernLeNet5())}


def test_checkpoint_of_the_other_model(saved):
    with pytest.raises(CheckpointError, match=r"holds a 'modern' model, not 'lenet5'.*ModernLeNet5\(\)"):
        load_weights(LeNet5(), read_checkpoint(saved["modern"]), str(saved["modern"]))
    with pytest.raises(CheckpointError, match="holds a 'lenet5' model, not 'modern'"):
        load_weights(ModernLeNet5(), read_checkpoint(saved["lenet5"]))
    assert isinstance(load_model(saved["modern"]), ModernLeNet5)  # load_model picks the class


@pytest.mark.parametrize("damage", ["truncated", "empty", "html", "flipped"])
def test_damaged_checkpoint_is_refused(saved, damage):
    path = saved["lenet5"]
    data = path.read_bytes()
    path.write_bytes({"truncated": data[:len(data) // 2], "empty": b"",
                      "html": b"<html><body>404 Not Found</body></html>",
                      "flipped": data[:64] + bytes(b ^ 0xFF for b in data[64:1064]) + data[1064:]}[damage])
    with pytest.raises(CheckpointError, match="not a readable checkpoint .truncated or damaged"):
        load_model(path)


def test_foreign_files_are_not_taken_for_checkpoints(tmp_path):
    plain = tmp_path / "state_dict.pt"
    torch.save(LeNet5().state_dict(), plain)
    with pytest.raises(CheckpointError, match="not a lenet_utils checkpoint"):
        load_model(plain)
    wrong_shapes = tmp_path / "wrong_shapes.pt"
    torch.save({"format": "lenet_utils.checkpoint/1", "model": "lenet5",
                "state_dict": {"C1.weight": torch.zeros(3)}}, wrong_shapes)
    with pytest.raises(CheckpointError, match="do not fit LeNet5"):
        load_model(wrong_shapes)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_model(tmp_path / "missing.pt")
    pickled = tmp_path / "pickled_module.pt"
    torch.save({"model": LeNet5()}, pickled)  # torch.save(model): not loadable safely
    with pytest.raises(CheckpointError, match="Python objects other than tensors.*not a lenet_utils"):
        load_model(pickled)
    html = tmp_path / "page.pt"
    html.write_text("<html>404</html>")
    with pytest.raises(CheckpointError) as info:
        load_model(html)
    assert "not a PyTorch file" in str(info.value) and "weights_only" not in str(info.value)


def test_training_cli_reports_a_damaged_checkpoint_in_one_line(mnist_root, tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "run.pt"
    bad.write_bytes(b"garbage")
    result = subprocess.run([sys.executable, "-m", "lenet_utils.train", "--root", str(mnist_root),
                             "--epochs", "1", "--train-size", "32", "--no-progress", "--out", str(bad),
                             "--resume"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"error: {bad}: not a readable checkpoint")


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "run.pt", LeNet5(), epoch=1)
    before = path.read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, LeNet5(), epoch=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]


# --- MNIST files ------------------------------------------------------------------


def _cache_with(mnist_root, tmp_path, name, content):
    """A copy of the test split's cache in which file ``name`` holds ``content``."""
    root = tmp_path / "data"
    raw_folder(root).mkdir(parents=True)
    for n in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        target = raw_folder(root) / n
        target.write_bytes(content(n, (raw_folder(mnist_root) / n).read_bytes()) if n == name
                           else (raw_folder(mnist_root) / n).read_bytes())
    return root


def _flip_one_pixel(_, data):
    data = bytearray(data)
    data[16 + 28 * 14 + 14] ^= 0x80  # one pixel of the first digit, same size
    return bytes(data)


@pytest.mark.parametrize("name,content,match", [
    ("t10k-images-idx3-ubyte", _flip_one_pixel, "t10k-images-idx3-ubyte: SHA-256 mismatch"),
    ("t10k-images-idx3-ubyte", lambda n, d: b"<html>captive portal</html>", "SHA-256 mismatch"),
    ("t10k-labels-idx1-ubyte", lambda n, d: d[:8] + bytes([(d[8] + 1) % 10]) + d[9:],
     "t10k-labels-idx1-ubyte: SHA-256 mismatch"),
    ("t10k-labels-idx1-ubyte", lambda n, d: b"", "SHA-256 mismatch"),
])
def test_corrupt_mnist_cache_is_refused(mnist_root, tmp_path, name, content, match):
    root = _cache_with(mnist_root, tmp_path, name, content)
    with pytest.raises(MNISTError, match=match):
        load_mnist("test", root, download=False)


def test_missing_mnist_file_is_named(mnist_root, tmp_path):
    root = _cache_with(mnist_root, tmp_path, None, None)
    (raw_folder(root) / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(MNISTError, match=r"missing t10k-labels-idx1-ubyte; download=False.*"
                                         r"python -m lenet_utils\.data import DIR"):
        load_mnist("test", root, download=False)


def test_no_network_download_fails_with_the_offline_recipe(tmp_path, monkeypatch):
    """torchvision's real download path, with urlopen failing as it does offline."""
    calls = []

    def offline(request, *args, **kwargs):
        calls.append(getattr(request, "full_url", request))
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(MNISTError) as info:
        load_mnist("test", tmp_path / "data", download=True)
    message = str(info.value)
    assert calls, "torchvision's download was not reached"
    assert "download failed" in message and "Temporary failure in name resolution" in message
    assert "python -m lenet_utils.data import DIR" in message and "\n" not in message
    leftovers = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert leftovers == []


def test_a_failed_import_write_leaves_no_partial_file(mnist_root, tmp_path, monkeypatch):
    """The disk fills up while the second file is written: nothing half-written remains."""
    source = raw_folder(mnist_root)  # import accepts the uncompressed IDX files too
    real_fdopen, opened = os.fdopen, []

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        opened.append(f)
        return HalfWriter(f) if len(opened) == 2 else f

    monkeypatch.setattr(data_module.os, "fdopen", fdopen)
    with pytest.raises(MNISTError, match="could not write .*No space left on device.*no partial file"):
        import_mnist(source, tmp_path / "data")
    files = list(raw_folder(tmp_path / "data").iterdir())
    assert not [p.name for p in files if p.name.endswith(".part") or p.name.startswith(".")]
    for path in files:  # whatever is there is complete and verified
        assert sha256(path.read_bytes()) == MNIST_SHA256[path.name]
    assert len(files) == 1
    import_mnist(source, tmp_path / "data")  # and a second try completes the import
    assert sorted(p.name for p in raw_folder(tmp_path / "data").iterdir()) == sorted(MNIST_SHA256)


# --- determinism and resume -------------------------------------------------------


@pytest.fixture(scope="module")
def small_mnist(mnist_train, mnist_test):
    (x, y), (xt, yt) = mnist_train, mnist_test
    return (x[:320], y[:320]), (xt[:100], yt[:100])


def _train(name, small_mnist, epochs, **kwargs):
    train, test = small_mnist
    model = build_model(name, seed=kwargs.pop("init_seed", 3))
    config = TrainConfig(model=name, epochs=epochs, seed=3, hessian_samples=100)
    kwargs.setdefault("log", None)
    history = fit(model, train, test, config, progress=False, **kwargs)
    return model, history


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), f"{key} differs"


@pytest.mark.parametrize("name", ["lenet5", "modern"])
def test_same_seed_gives_bit_identical_weights_after_training(small_mnist, name):
    a, ha = _train(name, small_mnist, epochs=2)
    b, hb = _train(name, small_mnist, epochs=2)
    _assert_same_weights(a, b)
    assert [e.train_loss for e in ha.epochs] == [e.train_loss for e in hb.epochs]
    assert not torch.equal(build_model(name, seed=4).F6.weight, build_model(name, seed=3).F6.weight)


@pytest.mark.parametrize("name", ["lenet5", "modern"])
def test_interrupted_training_resumes_to_identical_weights(small_mnist, tmp_path, name):
    whole, history = _train(name, small_mnist, epochs=3)

    checkpoint = tmp_path / "run.pt"

    def interrupt(line):  # Ctrl-C while pass 2 is being reported: its checkpoint is not written
        if line.startswith("epoch  2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(name, small_mnist, epochs=3, checkpoint=checkpoint, log=interrupt)
    assert read_checkpoint(checkpoint)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no partial file

    resumed, resumed_history = _train(name, small_mnist, epochs=3, checkpoint=checkpoint,
                                      resume=True, init_seed=99)  # other init: weights come from the file
    _assert_same_weights(whole, resumed)
    strip = [(e.epoch, e.lr, e.train_loss, e.train_error, e.test_error) for e in history.epochs]
    assert [(e.epoch, e.lr, e.train_loss, e.train_error, e.test_error)
            for e in resumed_history.epochs] == strip
    assert read_checkpoint(checkpoint)["epoch"] == 3


def test_resume_refuses_a_checkpoint_it_cannot_continue(small_mnist, tmp_path):
    weights_only = save_checkpoint(tmp_path / "weights.pt", LeNet5())
    with pytest.raises(CheckpointError, match="holds weights only.*cannot be resumed"):
        _train("lenet5", small_mnist, epochs=1, checkpoint=weights_only, resume=True)
    other = save_checkpoint(tmp_path / "modern.pt", ModernLeNet5())
    with pytest.raises(CheckpointError, match="holds a 'modern' model, not 'lenet5'"):
        _train("lenet5", small_mnist, epochs=1, checkpoint=other, resume=True)
    adam_run = tmp_path / "adam.pt"
    _train("modern", small_mnist, epochs=1, checkpoint=adam_run)
    train, test = small_mnist
    with pytest.raises(CheckpointError, match="trained with optimizer='adam'"):
        fit(build_model("modern"), train, test, TrainConfig(model="modern", optimizer="sgd", epochs=2),
            progress=False, log=None, checkpoint=adam_run, resume=True)


def test_training_cli_interrupted_says_how_to_resume(mnist_root, tmp_path):
    """Ctrl-C during a run: the message names the checkpoint, which holds the last pass."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run.pt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lenet_utils.train", "--root", str(mnist_root), "--epochs", "100",
         "--train-size", "320", "--no-progress", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert out.exists(), "no checkpoint written"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().endswith(f"interrupted; the last finished pass is in {out}: add --resume to continue")
    assert read_checkpoint(out)["epoch"] >= 1
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]
