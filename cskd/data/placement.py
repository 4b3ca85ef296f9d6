"""Where a run's data lives while it trains: the decode cache, and moving image-file sets into
memory (or onto the GPU) when they fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cskd.data.bundle import DataBundle
from cskd.data.sets import load_bundle_of
from cskd.errors import UserError


def bundle_for(cfg) -> DataBundle:
    """The DataBundle a run's config (cskd.config.TrainConfig) describes, ready to train on."""
    bundle = load_bundle_of(cfg)
    if not bundle.in_memory and cfg.decode_cache != "off":
        bundle.decode_cache = Path(cfg.decode_cache_dir or Path(cfg.data_root) / ".cskd-cache")
        small = bundle.image_size == 32 and cfg.loader != "host"
        # 224-px sets go to the device when asked, or (auto) on CUDA when they fit
        maybe_device = cfg.loader == "device" or (cfg.loader == "auto" and cfg.device != "cpu"
                                                  and torch.cuda.is_available())
        if small or maybe_device:
            caches = _decode_caches(bundle)  # opened once: each one hashes the stat of every file
            if small:
                _load_into_memory(bundle, caches, padded=False)
            elif cfg.loader == "device" or _fits_on_gpu(caches):
                _load_into_memory(bundle, caches, padded=True)
    elif cfg.loader == "device" and not bundle.in_memory:
        raise UserError("--loader device needs the decode cache; drop --decode-cache off")
    return bundle


# Share of free GPU memory the padded images of a 224-px set may take for the automatic choice.
GPU_DATA_FRACTION = 0.4


def _decode_caches(bundle: DataBundle) -> dict:
    """{split name: DecodeCache} of the bundle's image-file splits (built on first use)."""
    from cskd.data.decode_cache import DecodeCache

    return {name: DecodeCache(getattr(bundle, name).files, bundle.decode_cache)
            for name in ("train", "val", "test") if getattr(bundle, name)}


def _fits_on_gpu(caches: dict) -> bool:
    """Automatic device path for 224-px sets on CUDA: the padded images take at most
    GPU_DATA_FRACTION of the free memory (on CPU, DataLoader workers decode in parallel instead)."""
    need = sum(c.padded_bytes() for c in caches.values())
    return need <= GPU_DATA_FRACTION * torch.cuda.mem_get_info()[0]


def _load_into_memory(bundle: DataBundle, caches: dict, *, padded: bool) -> None:
    """Move an image-file set into memory through its decode caches, for the device path.

    Images that all share one size (TinyImageNet: 64x64) become a plain uint8 tensor per split;
    with `padded` (224-px sets) images of any size are zero-padded into one tensor with their
    sizes kept in `Split.sizes`. Without `padded`, mixed sizes leave the set on the DataLoader path.
    """
    one_size = len(np.unique(np.concatenate([c.index[:, 1:] for c in caches.values()]), axis=0)) == 1
    if not (one_size or padded):
        return
    for name, cache in caches.items():
        part = getattr(bundle, name)
        part.images, sizes = cache.padded()
        part.sizes = sizes if padded else None  # sizes select the 224-px test crop in cskd.data.loaders
        part.files = None
