"""Batched augmentation on uint8 image tensors (N, C, H, W), on whatever device they live.

Same semantics as torchvision's RandomCrop(size, padding=p) (zero padding, uniform offsets in
[0, 2p]) + RandomHorizontalFlip(0.5) + ToTensor + Normalize, applied per sample with a seeded
generator, so CPU and CUDA give the same kind of batches and tests can check the statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, *, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop of the original size from the zero-padded image, then a horizontal flip with p=0.5."""
    n, _, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # n,1,h,1
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # n,1,1,w
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    if flip:
        do_flip = torch.rand(n, generator=generator, device=x.device) < 0.5
        x = torch.where(do_flip[:, None, None, None], x.flip(3), x)
    return x


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] -> float32 (x/255 - mean) / std per channel (mean, std of shape (C,))."""
    x = x.float().div_(255.0)
    return x.sub_(mean[None, :, None, None]).div_(std[None, :, None, None])
