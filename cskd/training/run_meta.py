"""What config.json records about a run besides its config ("meta"): the versions, where and how
the run was made, and the data it saw."""

from __future__ import annotations

import datetime

import torch

from cskd import __version__
from cskd.config import TrainConfig
from cskd.data.bundle import DataBundle
from cskd.runfolder.provenance import git_commit
from cskd.training.machine import machine_meta


def config_meta(cfg: TrainConfig, bundle: DataBundle, device: torch.device, precision: str, world_size: int) -> dict:
    """config.json's meta of a run of `cfg` on `bundle`, trained on `device` in `precision` (what
    cskd.training.device.precision_used resolved) by `world_size` processes; with the machine
    (threads used, CPU, torch build: cskd.training.machine.machine_meta)."""
    selection = ("best validation epoch" if cfg.select_on == "val"
                 else "best TEST epoch (the authors' protocol; test accuracy is optimistically biased)")
    return {"cskd_version": __version__, "git_commit": git_commit(), "torch_version": torch.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": device.type, "precision": precision, "selection": selection,
            "world_size": world_size, "num_classes": bundle.num_classes, "class_names": bundle.class_names,
            "num_train": len(bundle.train), "num_val": len(bundle.val) if bundle.val is not None else 0,
            "num_test": len(bundle.test), "data": bundle.provenance, **machine_meta(device)}
