"""The machine a run computes on, as config.json's meta records it, and the CPU thread count.

On the CPU the thread count changes results, not only speed: a reduction split over n threads adds
its partial sums in another order, and the rounding differs (the maximum logit difference between
--threads 1 and the default was 1-7 after a short training on one machine). A run therefore records
the threads it used, the CPU and the torch build, and `threads` is a setting that changes results
(cskd.config): a resumed run keeps it and runs that differ in it are not seeds of one experiment.
"""

from __future__ import annotations

import os
import platform

import torch

from cskd.config import TrainConfig


def set_threads(cfg: TrainConfig, device: torch.device) -> None:
    """--threads N (N > 0) on the CPU; 0 keeps torch's own choice (one thread per core)."""
    if cfg.threads and device.type == "cpu":
        torch.set_num_threads(cfg.threads)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; platform.processor() elsewhere), or "unknown"."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_capability() -> str:
    """The vector instruction set torch's CPU kernels dispatch to ("AVX512", "AVX2", ...)."""
    get = getattr(torch.backends.cpu, "get_cpu_capability", None)  # absent from older torch
    return get() if get is not None else "unknown"


def machine_meta(device: torch.device) -> dict:
    """What config.json's meta records of the machine: CPU model, cores, vector ISA, the CPU threads torch
    uses, torch's version and build (git commit, CUDA version or None) and the GPU's name on CUDA."""
    meta = {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "cpu_capability": cpu_capability(),
            "threads_used": torch.get_num_threads(), "torch_git": torch.version.git_version,
            "torch_cuda": torch.version.cuda}
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    return meta


def machine_line(threads: int = 0) -> str:
    """One line naming the machine: CPU model, cores, vector ISA, torch version, and the CPU threads
    (`threads`, or torch's current count when 0)."""
    return (f"machine: {cpu_model()}, {os.cpu_count()} cores ({cpu_capability()}), torch {torch.__version__}, "
            f"{threads or torch.get_num_threads()} CPU thread(s)")
