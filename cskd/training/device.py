"""What the training device can do: which device, which arithmetic (--precision), torch.compile.

--precision (cskd.config.PRECISIONS), what each means on the device that runs it:
  fp32  float32 throughout; on CUDA TF32 is switched off for matmuls and convolutions (PyTorch lets
        cuDNN use TF32 by default), so it is the authors' arithmetic (their train.py has no autocast)
  tf32  float32 storage, TF32 tensor-core matmuls and convolutions (10-bit mantissa); CUDA, compute
        capability 8.0 (Ampere) or newer only
  bf16  bf16 autocast for the forward pass and the loss; CUDA with bf16, or a CPU with bf16
        instructions (AMX-BF16 or AVX512-BF16)
  auto  bf16 on a CUDA GPU that supports it, fp32 elsewhere (on every CPU, so that CPU results do not
        depend on the CPU model)
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys

import torch

from cskd.config import TrainConfig
from cskd.errors import UserError


def pick_device(name: str) -> torch.device:
    """--device: "auto" (CUDA when available, else the CPU), "cpu" or "cuda" (refused without a GPU)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is available; use --device auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def precision_used(cfg: TrainConfig, device: torch.device) -> str:
    """The arithmetic `cfg.precision` means on `device`: "fp32", "tf32" or "bf16" (module docstring)."""
    if cfg.precision == "auto":
        return "bf16" if device.type == "cuda" and bf16_is_native(device) else "fp32"  # not emulated bf16
    return cfg.precision


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse, in one line, a --precision `device` cannot compute."""
    if precision == "tf32" and (device.type != "cuda" or torch.cuda.get_device_capability(device)[0] < 8):
        where = "this GPU predates Ampere" if device.type == "cuda" else f"the device is {device.type}"
        raise UserError(f"--precision tf32 needs a CUDA GPU of compute capability 8.0 or newer ({where}); "
                        f"use --precision fp32")
    if precision == "bf16" and not bf16_is_native(device):
        what = "this GPU does not support bf16" if device.type == "cuda" else \
            "this CPU has no bf16 instructions (AMX-BF16 or AVX512-BF16)"
        raise UserError(f"--precision bf16: {what}; use --precision fp32")


def apply_precision(cfg: TrainConfig, device: torch.device) -> str:
    """Check `cfg.precision` on `device`, set PyTorch's TF32 switches to match, and return the
    precision used (precision_used). True for the whole process: a training process trains one run."""
    precision = precision_used(cfg, device)
    check_precision(precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    return precision


def prediction_precision(cfg: TrainConfig, device: torch.device) -> str:
    """The arithmetic to predict a run with on `device`: the run's own (precision_used), or fp32 where
    this device cannot compute it (a run trained on another machine); the TF32 switches set to match."""
    precision = precision_used(cfg, device)
    try:
        check_precision(precision, device)
    except UserError:
        precision = "fp32"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    return precision


def use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether the run's forward passes use bf16 autocast on `device` (--precision bf16, or auto on CUDA)."""
    return precision_used(cfg, device) == "bf16"


def bf16_is_native(device: torch.device) -> bool:
    """Whether `device` computes bf16 convolutions and matmuls in hardware: a CUDA GPU that supports
    bf16, or a CPU with AMX-BF16 or AVX512-BF16 (elsewhere the CPU emulates bf16, slower than fp32).
    `--precision auto` stays fp32 on every CPU, so CPU results do not depend on the CPU model.
    Native is not fast: without AMX a CPU's bf16 convolutions can be slower than fp32 (bf16_is_fast)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # absent from older torch
    if device.type != "cpu" or capabilities is None:
        return False
    caps = capabilities()
    return bool(caps.get("amx_bf16", False) or caps.get("avx512_bf16", False))


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast is expected to train faster than fp32 on `device`: a CUDA GPU with bf16
    (tensor cores), or a CPU with AMX-BF16 tiles. A CPU with AVX512-BF16 alone computes bf16 natively
    but was measured slower than fp32 there (docs/performance.md: casts and bf16 kernels cost more than
    the narrower arithmetic saves), so the speed paths keep fp32 on it."""
    if device.type == "cuda":
        return bf16_is_native(device)
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    return device.type == "cpu" and capabilities is not None and bool(capabilities().get("amx_bf16", False))


def compile_available(device: torch.device) -> bool:
    """Whether torch.compile can build code for `device`. On the CPU its back end (inductor) compiles
    C++ with $CXX, or g++ when $CXX is unset (clang++ on macOS), and tries no other compiler; on
    CUDA it generates Triton kernels, so the triton package must be installed."""
    if device.type == "cuda":
        return importlib.util.find_spec("triton") is not None
    compiler = os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++")
    words = compiler.split()
    return bool(words) and shutil.which(words[0]) is not None


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on `device`, or a context that changes nothing."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
