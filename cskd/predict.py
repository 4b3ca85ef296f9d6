"""`cskd predict`: the one step after training that touches a model, and the one module that writes
`RUN/predictions-<split>.npz`.

Arrays in the file (N samples of the split, C classes, D feature dims):
  logits    float32 (N, C)   the model's logits
  features  float16 (N, D)   pooled penultimate features
  labels    int64   (N,)     ground-truth class
  indices   int64   (N,)     position of each sample in its data set's source list (train or test)
  class_names  str  (C,)
  images    uint8   (N, H, W, C)  the samples as stored (in-memory sets) or 64-px thumbnails (file
                                  sets of at most 20,000 images), so the dashboard can show them
  fine_to_coarse int64 (C,), coarse_names str (G,)   when the data set has a coarse grouping
  dataset, split, checkpoint, epoch, run_config (JSON string)
Memory: the output arrays are allocated once at full size and filled batch by batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import atomic_write
from .config import TrainConfig
from .data import DataBundle, Split
from .decode_cache import open_rgb
from .device import autocast, pick_device, use_bf16
from .errors import UserError, choose
from .loaders import eval_batches
from .methods import load_run_model
from .runs import made_by_run, read_config

SPLITS = ("test", "val")
CHECKPOINTS = ("best", "last")
THUMBNAIL_LIMIT = 20_000  # file data sets: store 64-px thumbnails only up to this many samples


def predictions_path(run: Path, split: str) -> Path:
    return Path(run) / f"predictions-{split}.npz"


def is_fresh(run: Path, split: str, checkpoint: str = "best") -> bool:
    """True when the predictions file exists, is newer than `checkpoint`, and was made from that
    checkpoint of this run: its recorded config equals the run's config.json (a file copied from
    another run, or written before the run was trained again, differs in seed, method, folder...)."""
    path, ckpt = predictions_path(run, split), Path(run) / f"{checkpoint}.pt"
    if not (path.is_file() and ckpt.is_file() and path.stat().st_mtime >= ckpt.stat().st_mtime):
        return False
    return made_by_run(path, run, checkpoint)


def _split_of(bundle: DataBundle, split: str) -> Split:
    part = bundle.test if split == "test" else bundle.val
    if part is None:
        raise UserError("this run was trained with --val-fraction 0: it has no validation split; use --split test")
    return part


def _images_for_display(part: Split) -> np.ndarray | None:
    if part.images is not None and part.sizes is None:
        return part.images.permute(0, 2, 3, 1).numpy()
    if len(part) > THUMBNAIL_LIMIT:
        return None
    from PIL import Image

    thumbs = np.zeros((len(part), 64, 64, 3), dtype=np.uint8)
    for i in range(len(part)):
        if part.files is not None:
            thumbs[i] = np.asarray(open_rgb(part.files[i]).resize((64, 64)))
        else:  # padded in-memory 224-px set
            thumbs[i] = np.asarray(Image.fromarray(part.image_hwc(i)).resize((64, 64)))
    return thumbs


def predict(run: Path, *, split: str = "test", checkpoint: str = "best", force: bool = False,
            batch_size: int = 256, progress: bool | None = None) -> Path:
    """Write RUN/predictions-<split>.npz unless a fresh one exists (or `force`). Returns its path."""
    run = Path(run)
    choose("split", split, {s: None for s in SPLITS})
    choose("checkpoint", checkpoint, {c: None for c in CHECKPOINTS})
    cfg: TrainConfig = read_config(run)
    out = predictions_path(run, split)
    if not force and is_fresh(run, split, checkpoint):
        return out
    # A run trained on CUDA can be predicted on a machine without one.
    device = pick_device(cfg.device if cfg.device != "cuda" or torch.cuda.is_available() else "auto")
    cfg, bundle, model, state = load_run_model(run, checkpoint=checkpoint, device=device)
    part = _split_of(bundle, split)
    bf16 = use_bf16(cfg, device)

    n = len(part)
    logits = np.empty((n, bundle.num_classes), dtype=np.float32)
    features = np.empty((n, model.feature_dim), dtype=np.float16)
    labels = np.empty(n, dtype=np.int64)
    indices = np.empty(n, dtype=np.int64)
    row = 0
    batches = eval_batches(bundle, part, batch_size=batch_size, device=device, workers=cfg.workers)
    with torch.no_grad(), tqdm(total=n, desc=f"predict {run.name} [{split}]", unit="img", leave=False,
                               disable=(not progress) if progress is not None else None) as bar:
        for x, y, idx in batches:
            with autocast(device, bf16):
                f = model.forward_features(x)
                z = model.head(f)
            b = len(y)
            logits[row:row + b] = z.float().cpu().numpy()
            features[row:row + b] = f.float().cpu().numpy()
            labels[row:row + b] = y.cpu().numpy()
            indices[row:row + b] = idx.numpy()
            row += b
            bar.update(b)
    arrays = {"logits": logits, "features": features, "labels": labels, "indices": indices,
              "class_names": np.array(bundle.class_names), "dataset": np.array(cfg.dataset),
              "split": np.array(split), "checkpoint": np.array(checkpoint), "epoch": np.array(state["epoch"] + 1),
              "run_config": np.array(json.dumps(cfg.to_dict()))}
    images = _images_for_display(part)
    if images is not None:
        arrays["images"] = images
    if bundle.fine_to_coarse is not None:
        arrays["fine_to_coarse"] = np.asarray(bundle.fine_to_coarse, dtype=np.int64)
        arrays["coarse_names"] = np.array(bundle.coarse_names)
    atomic_write(out, lambda f: np.savez(f, **arrays))
    return out
