"""Batched augmentation on uint8 image tensors (N, C, H, W), on whatever device they live.

Same semantics as torchvision's RandomCrop(size, padding=p) (zero padding, uniform offsets in
[0, 2p]) + RandomHorizontalFlip(0.5) + ToTensor + Normalize, applied per sample with a seeded
generator, so CPU and CUDA give the same kind of batches and tests can check the statistics.

`keep` (a slice or an index tensor on the images' device) serves a process's share of a global
batch: the random numbers are drawn for all `total` samples of the global batch, as one process
alone would draw them, and only the kept samples (the ones `x` holds) are cropped and flipped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, *, pad: int, flip: bool, generator: torch.Generator, keep=slice(None),
                     total: int | None = None) -> torch.Tensor:
    """Random crop of the original size from the zero-padded image, then a horizontal flip with p=0.5.
    `x` holds the `keep` samples of a batch of `total` (default: all of them; see the module docstring)."""
    n, _, h, w = x.shape
    total = n if total is None else total
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (total,), generator=generator, device=x.device)[keep]
        dx = torch.randint(0, 2 * pad + 1, (total,), generator=generator, device=x.device)[keep]
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # n,1,h,1
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # n,1,1,w
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    if flip:
        do_flip = torch.rand(total, generator=generator, device=x.device)[keep] < 0.5
        x = torch.where(do_flip[:, None, None, None], x.flip(3), x)
    return x


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8, or float, in [0, 255] -> float32 (x/255 - mean) / std per channel (mean, std of
    shape (C,)). The input is never changed."""
    x = x.div(255.0) if x.is_floating_point() else x.float().div_(255.0)
    return x.sub_(mean[None, :, None, None]).div_(std[None, :, None, None])


def _per_sample(value, n: int, dev) -> torch.Tensor:
    """An int or a tensor (n,) as float32 (n,) on `dev`. torch.full, not torch.as_tensor of a
    Python number: the latter copies from the host and waits for the device on CUDA."""
    if isinstance(value, torch.Tensor):
        return value.to(dev, torch.float32).expand(n)
    return torch.full((n,), float(value), device=dev)


def random_resized_crop_boxes(n: int, height, width, *, generator: torch.Generator,
                              scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts: int = 10) -> torch.Tensor:
    """Boxes (n, 4) as (x1, y1, x2, y2) in pixels, drawn as torchvision's RandomResizedCrop.get_params:
    area fraction ~ U(scale), log aspect ratio ~ U(log ratio), the first of `attempts` draws that
    fits, else the central crop of the largest box within `ratio`. `height`/`width` are ints or
    per-sample tensors (n,) (images of different sizes padded into one batch)."""
    dev = generator.device
    height, width = (_per_sample(v, n, dev) for v in (height, width))
    area = (height * width)[:, None]
    frac = torch.empty(n, attempts, device=dev).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(n, attempts, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    w = torch.sqrt(area * frac * torch.exp(log_r)).round()
    h = torch.sqrt(area * frac / torch.exp(log_r)).round()
    ok = (w > 0) & (w <= width[:, None]) & (h > 0) & (h <= height[:, None])
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1, device=dev))
    pick = first.clamp_min(0)[:, None]
    w, h = w.gather(1, pick)[:, 0], h.gather(1, pick)[:, 0]
    # fallback: central crop of the largest box within `ratio` (torchvision's rule)
    in_ratio = width / height
    fw = torch.where(in_ratio > max(ratio), (height * max(ratio)).round(), width)
    fh = torch.where(in_ratio < min(ratio), (width / min(ratio)).round(), height)
    fallback = first < 0
    w, h = torch.where(fallback, fw, w), torch.where(fallback, fh, h)
    u = torch.rand(n, 2, device=dev, generator=generator)
    top = torch.where(fallback, ((height - fh) / 2).floor(), (u[:, 0] * (height - h + 1)).floor())
    left = torch.where(fallback, ((width - fw) / 2).floor(), (u[:, 1] * (width - w + 1)).floor())
    return torch.stack([left, top, left + w, top + h], 1)


def _roi(x: torch.Tensor, boxes: torch.Tensor, size: int, sampling_ratio: int) -> torch.Tensor:
    from torchvision.ops import roi_align

    rois = torch.cat([torch.arange(len(x), device=x.device, dtype=boxes.dtype)[:, None], boxes], 1)
    return roi_align(x.float(), rois, output_size=size, spatial_scale=1.0, sampling_ratio=sampling_ratio,
                     aligned=True)


def random_resized_crop_flip(x: torch.Tensor, *, size: int, generator: torch.Generator, flip: bool = True,
                             sizes: torch.Tensor | None = None, keep=slice(None), total: int | None = None):
    """Batched RandomResizedCrop(size) + horizontal flip (p=0.5) of uint8 images (N, C, H, W) on
    their device; bilinear resampling by roi_align with 2x2 samples per output pixel. `sizes`
    (N, 2) gives each image's (height, width) when smaller images are zero-padded into the batch:
    boxes then stay inside each image. Returns float images in [0, 255] (see `normalize`). `x` holds
    the `keep` samples of a batch of `total` (default: all of them); `sizes` are the whole batch's."""
    n, _, h, w = x.shape
    total = n if total is None else total
    heights, widths = (h, w) if sizes is None else (sizes[:, 0], sizes[:, 1])
    boxes = random_resized_crop_boxes(total, heights, widths, generator=generator)[keep]
    out = _roi(x, boxes, size, 2)
    if flip:
        do_flip = torch.rand(total, generator=generator, device=x.device)[keep] < 0.5
        out = torch.where(do_flip[:, None, None, None], out.flip(3), out)
    return out


def resize_center_crop(x: torch.Tensor, sizes: torch.Tensor, *, resize: int, size: int) -> torch.Tensor:
    """Resize(resize) + CenterCrop(size) of zero-padded uint8 images with per-image (height, width)
    `sizes`, as one roi_align: the crop is the centred square of side size * short / resize in the
    original image. When the short side equals `resize` the box is pixel-aligned and the output
    equals the plain crop exactly (one sample per output pixel, at the pixel centre)."""
    hs, ws = sizes[:, 0].float(), sizes[:, 1].float()
    side = size * torch.minimum(hs, ws) / resize
    top, left = (hs - side) / 2, (ws - side) / 2
    # torchvision rounds the crop's corner to whole pixels
    top, left = torch.where(side == size, top.round(), top), torch.where(side == size, left.round(), left)
    return _roi(x, torch.stack([left, top, left + side, top + side], 1), size, 1)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float in [0, 255] at size x size (bilinear, antialiased), as the test Resize."""
    return F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
