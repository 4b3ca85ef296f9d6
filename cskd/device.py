"""What the training device can do: which device, bf16 autocast, torch.compile."""

from __future__ import annotations

import contextlib
import os
import shutil

import torch

from .config import TrainConfig
from .errors import UserError


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is available; use --device auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    return cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")


def bf16_is_native(device: torch.device) -> bool:
    """Whether `device` computes bf16 convolutions and matmuls in hardware: a CUDA GPU that supports
    bf16, or a CPU with AMX-BF16 or AVX512-BF16 (elsewhere the CPU emulates bf16, slower than fp32).
    `--precision auto` stays fp32 on every CPU, so CPU results do not depend on the CPU model."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # absent from older torch
    if device.type != "cpu" or capabilities is None:
        return False
    caps = capabilities()
    return bool(caps.get("amx_bf16", False) or caps.get("avx512_bf16", False))


def compile_available(device: torch.device) -> bool:
    """Whether torch.compile can build code for `device`: on the CPU its back end (inductor) compiles
    C++, so a compiler must be on PATH ($CXX, g++ or clang++); on CUDA it generates Triton kernels,
    which CUDA builds of torch bring along."""
    if device.type == "cuda":
        return True
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "clang++") if c)


def autocast(device: torch.device, bf16: bool):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
