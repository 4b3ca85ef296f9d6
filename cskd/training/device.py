"""What the training device can do: which device, bf16 autocast, torch.compile."""

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


def use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """--precision: bf16 autocast when asked for, or by default ("auto") on CUDA; fp32 otherwise."""
    return cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")


def bf16_is_native(device: torch.device) -> bool:
    """Whether `device` computes bf16 convolutions and matmuls in hardware: a CUDA GPU that supports
    bf16, or a CPU with AMX-BF16 or AVX512-BF16 (elsewhere the CPU emulates bf16, slower than fp32).
    `--precision auto` stays fp32 on every CPU, so CPU results do not depend on the CPU model."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # absent from older torch
    if device.type != "cpu" or capabilities is None:
        return False
    caps = capabilities()
    return bool(caps.get("amx_bf16", False) or caps.get("avx512_bf16", False))


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
