"""A fast CPU engine for LeNet-5: C1, S2, C3 and S4 in one compiled kernel.

The reference model (:mod:`lenet_utils.layers`) is what the book reads and what the
shipped weights were trained with. On a small CPU most of its training time goes to
PyTorch's convolutions with 1 and 6 input maps and to the elementwise passes of the
squashing and the subsampling. ``csrc/features.cpp`` computes the same four layers,
forward and backward, with 16 images in each SIMD vector; C5, F6, the RBF output and
the loss stay in PyTorch (they are matrix products, which PyTorch already does well).

The kernel is compiled on first use with the system's C++ compiler (about a second)
and cached under ``~/.cache/lenet_utils`` (or ``$LENET_CACHE``). Results equal the
reference up to float rounding: the order of additions differs, and the kernel's own
``exp`` is accurate to about 1e-7 (tests/test_fused.py). They are not
bit-identical to it, so a run trained with ``engine="fused"`` is reproducible with
the same engine and thread count, not with the reference engine.

    from lenet_utils import fused
    out = fused.forward(model, x)      # same as model(x), faster on the CPU
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn

from .layers import ScaledTanh
from .paper import SQUASH_A, SQUASH_S

SOURCE = Path(__file__).with_name("csrc") / "features.cpp"
FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread"]
# OpenMP lets the kernel share PyTorch's thread pool (the loader reuses the libgomp
# already in the process); two pools spinning against each other on 2 cores made an
# epoch ~1.7x slower. Where the compiler has no OpenMP, the kernel uses std::thread.
OPENMP = ["-fopenmp"]
NATIVE = ["-march=native"]  # AVX-512 or AVX2 where the CPU has them


class FusedUnavailable(RuntimeError):
    """The fused engine cannot run here (no compiler, a failed build, or a GPU tensor)."""


def _cache_dir() -> Path:
    if os.environ.get("LENET_CACHE"):
        return Path(os.environ["LENET_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lenet_utils"


def _cpu_signature() -> str:
    """What -march=native depends on: a library built for one CPU may crash on another."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith(("flags", "Features")))
    except (OSError, StopIteration):
        flags = ""
    return platform.machine() + flags


def _compiler() -> str:
    for name in (os.environ.get("CXX"), "g++", "clang++", "c++"):
        if name and shutil.which(name):
            return name
    raise FusedUnavailable("the fused engine compiles a small C++ kernel, and no C++ compiler was "
                           "found (g++, clang++ or $CXX): install one (Debian/Ubuntu: apt install "
                           "g++), or train with engine='torch'")


def _compile(compiler: str, flags: list[str], target: Path) -> str | None:
    """Build ``target`` atomically; the compiler's error output if it fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        run = subprocess.run([compiler, *flags, str(SOURCE), "-o", str(built)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            return run.stderr[-2000:]
        os.replace(built, target)  # a parallel build never sees half a file
    return None


def _build() -> Path:
    """Compile the kernel unless a build for this source, compiler and CPU is cached."""
    compiler = _compiler()
    key = hashlib.sha256(SOURCE.read_bytes() + compiler.encode()
                         + _cpu_signature().encode()).hexdigest()[:16]
    # Best first; each fallback drops what some compilers lack (OpenMP on macOS's clang,
    # -march=native on some ARM compilers).
    variants = [(_cache_dir() / f"lenet_features_{key}_{name}.so", flags) for name, flags in
                (("omp", FLAGS + NATIVE + OPENMP), ("native", FLAGS + NATIVE), ("plain", FLAGS))]
    cached = next((target for target, _ in variants if target.is_file()), None)
    if cached:  # a fallback built earlier: do not retry the variants that failed then
        return cached
    errors = ""
    for target, flags in variants:
        error = _compile(compiler, flags, target)
        if error is None:
            return target
        errors = error
    raise FusedUnavailable(f"compiling {SOURCE.name} with {compiler} failed; train with "
                           f"engine='torch' instead. Compiler output:\n{errors}")


@functools.cache
def _library() -> ctypes.CDLL:
    return _load(_build())


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    p, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    lib.lenet_features_forward.argtypes = [i64, i32, f32, f32, p, p, p, p, p]
    lib.lenet_features_backward.argtypes = [i64, i32, f32, f32, p, p, p, p, p]
    lib.lenet_features_forward.restype = lib.lenet_features_backward.restype = None
    return lib


def available() -> bool:
    """Whether the fused engine can run on this machine (compiles it if needed)."""
    try:
        _library()
    except (FusedUnavailable, OSError):
        return False
    return True


def _ptr(t: Tensor) -> int:
    return t.data_ptr()


class _Features(torch.autograd.Function):
    """(N, 1, 32, 32) inputs and the flat C1..S4 parameters -> S4 outputs (N, 16, 5, 5)."""

    @staticmethod
    def forward(ctx, x: Tensor, params: Tensor, conn: Tensor) -> Tensor:
        lib, n = _library(), len(x)
        x, params = x.contiguous(), params.detach().contiguous()
        if params.numel() != lib.lenet_parameter_count():  # the kernel reads a fixed layout
            raise FusedUnavailable(f"the kernel expects {lib.lenet_parameter_count()} C1..S4 "
                                   f"parameters, got {params.numel()}: not LeNet-5's shapes")
        blocks = -(-n // lib.lenet_lanes())
        saved = torch.empty(blocks, lib.lenet_saved_per_block())
        out = torch.empty(n, 16, 5, 5)
        lib.lenet_features_forward(n, torch.get_num_threads(), SQUASH_A, SQUASH_S, _ptr(x),
                                   _ptr(params), _ptr(conn), _ptr(saved), _ptr(out))
        ctx.save_for_backward(params, conn, saved)
        ctx.n = n
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        params, conn, saved = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grads = torch.empty_like(params)
        _library().lenet_features_backward(ctx.n, torch.get_num_threads(), SQUASH_A, SQUASH_S,
                                           _ptr(params), _ptr(conn), _ptr(saved), _ptr(grad_out),
                                           _ptr(grads))
        return None, grads, None


def _flat_parameters(model: nn.Module) -> Tensor:
    """C1..S4 parameters in the kernel's order; C3 through its connection mask, so that
    autograd zeroes the gradient of absent connections exactly as the reference does."""
    return torch.cat([model.C1.weight.reshape(-1), model.C1.bias,
                      model.S2.coefficient, model.S2.bias,
                      model.C3.kernel().reshape(-1), model.C3.bias,
                      model.S4.coefficient, model.S4.bias])


def _check(model: nn.Module, x: Tensor) -> None:
    from .model import LeNet5

    if not isinstance(model, LeNet5):
        raise FusedUnavailable(f"the fused engine implements the faithful LeNet5, not "
                               f"{type(model).__name__}: use engine='torch' for it")
    if not all(isinstance(getattr(model, n).activation, ScaledTanh) for n in ("C1", "S2", "C3", "S4")):
        raise FusedUnavailable("the fused engine computes the paper's squashing function; this "
                               "model's C1..S4 use other activations: use engine='torch'")
    if x.dtype != torch.float32 or model.C1.weight.dtype != torch.float32:
        raise FusedUnavailable(f"the fused engine computes in float32; got input {x.dtype} and "
                               f"weights {model.C1.weight.dtype}: use engine='torch'")
    if x.requires_grad:
        raise FusedUnavailable("the fused engine gives no gradient with respect to the input "
                               "(saliency maps and the like): use model(x)")
    if x.device.type != "cpu":
        raise FusedUnavailable(f"the fused engine runs on the CPU; the input is on {x.device} "
                               "(on a GPU, engine='torch' is the fast one)")


def features(model: nn.Module, x: Tensor) -> Tensor:
    """S4's output for ``x``, equal to the reference layers' up to float rounding."""
    _check(model, x)
    model.check_input(x)  # shape, dtype, device, values: the kernel trusts all of them
    conn = model.C3.mask.flatten(1).to(torch.uint8).contiguous()
    return _Features.apply(x, _flat_parameters(model), conn)


def forward(model: nn.Module, x: Tensor) -> Tensor:
    """``model(x)`` with C1..S4 computed by the fused kernel: RBF penalties (N, 10)."""
    h = features(model, x)
    for name in ("C5", "F6", "output"):
        h = getattr(model, name)(h)
    return h.flatten(1)
