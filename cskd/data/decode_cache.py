"""Decode-once cache for image-file data sets: every image is decoded a single time, resized so its
short side is 256 px (never enlarged), and stored as uint8 HWC rows of one memory-mapped file.

Later epochs (and evaluation) read pixels from the cache instead of decoding JPEGs, and apply the
same torchvision transforms to the uint8 tensor: RandomResizedCrop(224) + flip for training,
Resize(256) + CenterCrop(224) for testing. The paper's RandomResizedCrop samples its box from the
whole image, so images are cached whole (aspect ratio kept), not pre-cropped. Its crops then come
from the 256-px copy rather than the original picture (--decode-cache off crops the originals).

Layout of a cache folder (one per list of files; the name is a hash of the paths, sizes and times):
  pixels.u8   all images' bytes back to back
  index.npy   int64 (N, 3): byte offset, height, width of each image
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cskd.errors import UserError, short_reason
from cskd.runfolder.store import FolderLock, atomic_write

SHORT_SIDE = 256


def _key(files: list[str]) -> str:
    h = hashlib.sha1()
    for f in files:
        st = os.stat(f)
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def open_rgb(path: str):
    """The image at `path` as an RGB PIL image, or a one-line UserError naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:  # not an image, truncated, too large
        raise UserError(f"cannot read image {path} ({short_reason(e)}); "
                        f"remove or replace it in the data folder") from None


def _decode(path: str, short_side: int) -> np.ndarray:
    from PIL import Image

    im = open_rgb(path)
    w, h = im.size
    scale = short_side / min(w, h)
    if scale < 1:  # only shrink: small images (e.g. TinyImageNet's 64 px) are kept as they are
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


class DecodeCache:
    """Cached pixels of `files` (in order), built on first use under `root`."""

    def __init__(self, files: list[str], root: Path, *, short_side: int = SHORT_SIDE, progress: bool | None = None):
        self.folder = Path(root) / f"{_key(files)}-s{short_side}"
        self.index = self._valid_index(len(files))
        root_created = not Path(root).exists()
        if self.index is None:  # absent, damaged (a truncated pixels.u8) or foreign: built (again)
            # One builder at a time; the others (several processes of one torchrun job, say) wait
            # for it and then find the cache built.
            with FolderLock(self.folder, "cskd decode cache", wait=True, what="decode cache"):
                self.index = self._valid_index(len(files))
                if self.index is None:
                    created = not (self.folder / "pixels.u8").exists() and not (self.folder / "index.npy").exists()
                    try:
                        for name in ("index.npy", "pixels.u8"):
                            with contextlib.suppress(FileNotFoundError):
                                (self.folder / name).unlink()
                        self._build(files, short_side, progress)
                    except BaseException:
                        if created:  # we hold the lock: no one else is building; leave no empty cache behind
                            shutil.rmtree(self.folder, ignore_errors=True)
                            if root_created:  # nor the caches' folder, unless another cache is in it now
                                with contextlib.suppress(OSError):
                                    Path(root).rmdir()
                        raise
                    self.index = self._valid_index(len(files))
            if self.index is None:
                raise UserError(f"the decode cache {self.folder} could not be built whole; check the disk")
        self.pixels = np.memmap(self.folder / "pixels.u8", dtype=np.uint8, mode="r")

    def _valid_index(self, n: int) -> np.ndarray | None:
        """The cache's index when it describes `n` images whose bytes pixels.u8 holds exactly, else None."""
        try:
            index = np.load(self.folder / "index.npy", allow_pickle=False)
            size = os.path.getsize(self.folder / "pixels.u8")
        except (OSError, ValueError):
            return None
        if index.shape != (n, 3) or index.dtype != np.int64 or (n and (index[:, 1:] <= 0).any()):
            return None
        ends = index[:, 0] + index[:, 1] * index[:, 2] * 3
        starts_ok = n == 0 or (index[0, 0] == 0 and np.array_equal(index[1:, 0], ends[:-1]))
        return index if starts_ok and (ends[-1] if n else 0) == size else None

    def _build(self, files, short_side, progress) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        index = np.zeros((len(files), 3), dtype=np.int64)

        def write(f):
            offset = 0
            for i, path in enumerate(tqdm(files, desc=f"decode cache ({len(files)} images)", unit="img",
                                          disable=(not progress) if progress is not None else None)):
                arr = _decode(path, short_side)
                f.write(arr.tobytes())
                index[i] = (offset, arr.shape[0], arr.shape[1])
                offset += arr.size

        # pixels first, index last: an index file only exists next to complete pixels
        atomic_write(self.folder / "pixels.u8", write, hashed=False)
        atomic_write(self.folder / "index.npy", lambda f: np.save(f, index), hashed=False)

    def __len__(self) -> int:
        return len(self.index)

    def image(self, i: int) -> torch.Tensor:
        """Image i as a uint8 CHW tensor (a copy: the memory map stays read-only)."""
        offset, h, w = (int(v) for v in self.index[i])
        arr = np.array(self.pixels[offset:offset + h * w * 3]).reshape(h, w, 3)
        return torch.from_numpy(arr).permute(2, 0, 1)

    def padded_bytes(self) -> int:
        """Size of `padded()`'s tensor: every image zero-padded to the largest height and width."""
        return 3 * len(self) * int(self.index[:, 1].max()) * int(self.index[:, 2].max()) if len(self) else 0

    def padded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as one uint8 tensor (N, 3, Hmax, Wmax), each in the top-left corner, zero padded,
        and their (height, width) as int64 (N, 2) — the device path's form of a 224-px set."""
        sizes = torch.as_tensor(self.index[:, 1:], dtype=torch.long)
        out = torch.zeros(len(self), 3, int(sizes[:, 0].max()), int(sizes[:, 1].max()), dtype=torch.uint8)
        for i in range(len(self)):
            h, w = sizes[i].tolist()
            out[i, :, :h, :w] = self.image(i)
        return out, sizes
