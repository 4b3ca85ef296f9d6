"""`cskd predict`: the one step after training that touches a model. It writes
RUN/predictions-<split>.npz through cskd.runfolder.predictions (arrays: docs/run-folder.md) while holding
the run folder's lock.

Memory: the output arrays are allocated once at full size and filled batch by batch (an ImageNet
validation run, 50k x 1000 logits and 50k x 2048 features, needs about 0.4 GB).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cskd.data.bundle import DataBundle, Split
from cskd.data.decode_cache import open_rgb
from cskd.data.loaders import EVAL_BATCH_SIZE, eval_batches
from cskd.data.placement import bundle_for
from cskd.errors import UserError, choose
from cskd.runfolder.config_file import is_imported
from cskd.runfolder.folder import RunFolder
from cskd.runfolder.layout import DEFAULT_SPLIT, SPLITS, predictions_name
from cskd.runfolder.predictions import predictions_status, read_predictions, write_predictions
from cskd.runfolder.run_config import read_config
from cskd.training.device import autocast, pick_device, prediction_precision
from cskd.training.run_model import load_run_model

CHECKPOINTS = ("best", "last")
THUMBNAIL_LIMIT = 20_000  # file data sets: store 64-px thumbnails only up to this many samples


def _split_of(bundle: DataBundle, split: str) -> Split:
    part = bundle.test if split == "test" else bundle.val
    if part is None:
        raise UserError("this run holds out no validation split (--val-fraction 0 or --protocol authors); "
                        "use --split test")
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


def predict(run: Path, *, split: str = DEFAULT_SPLIT, checkpoint: str = "best", force: bool = False,
            batch_size: int = EVAL_BATCH_SIZE, progress: bool | None = None) -> Path:
    """Write RUN/predictions-<split>.npz unless a fresh, undamaged one exists (or `force`).
    Returns its path. A file there that cskd did not write is never replaced (one-line error)."""
    choose("split", split, {s: None for s in SPLITS})
    choose("checkpoint", checkpoint, {c: None for c in CHECKPOINTS})
    folder = RunFolder(run)
    out = folder.file(predictions_name(split))
    if is_imported(folder):
        read_predictions(folder, split, verify=True)  # imported predictions cannot be recomputed: check them
        return out
    cfg = read_config(folder)
    if not force and predictions_status(folder, split, checkpoint)[0] == "fresh" and _whole(folder, split):
        return out  # read only: a fresh file needs no lock, so a read-only run folder can be analysed
    with folder.writing():
        status, _ = predictions_status(folder, split, checkpoint)
        if status == "foreign":
            raise UserError(f"{out} was not written by cskd in this run folder (copied or made elsewhere?); cskd "
                            f"never replaces such a file: move it away, then run `cskd predict {folder}` again")
        if not force and status == "fresh" and _whole(folder, split):
            return out  # made meanwhile by another process
        # A run trained on CUDA can be predicted on a machine without one.
        device = pick_device(cfg.device if cfg.device != "cuda" or torch.cuda.is_available() else "auto")
        cfg, bundle, model, state = load_run_model(folder.path, checkpoint=checkpoint, device=device,
                                                   bundle=bundle_for(cfg))
        bf16 = prediction_precision(cfg, device) == "bf16"  # the run's arithmetic where this device has it
        arrays = _predict_arrays(model, bundle, _split_of(bundle, split), device=device, bf16=bf16,
                                 batch_size=batch_size, workers=cfg.workers, progress=progress,
                                 desc=f"predict {folder.path.name} [{split}]")
        meta = {"checkpoint": checkpoint, "checkpoint_sha256": folder.recorded_sha256(f"{checkpoint}.pt"),
                 "epoch": state["epoch"] + 1, "dataset": cfg.dataset, "class_names": list(bundle.class_names),
                 "coarse_names": list(bundle.coarse_names) if bundle.coarse_names is not None else None,
                 "config": cfg.to_dict()}
        write_predictions(folder, split, arrays, meta)
    return out


def _whole(folder: RunFolder, split: str) -> bool:
    """Every byte of predictions-<split>.npz as written (its freshness: predictions_status)."""
    try:
        read_predictions(folder, split, verify=True)
        return True
    except UserError:  # bytes damaged since it was written: recompute it
        return False


def _predict_arrays(model, bundle: DataBundle, part: Split, *, device, bf16: bool, batch_size: int, workers: int,
                    progress, desc: str) -> dict:
    n = len(part)
    logits = np.empty((n, bundle.num_classes), dtype=np.float32)
    features = np.empty((n, model.feature_dim), dtype=np.float16)
    labels = np.empty(n, dtype=np.int64)
    indices = np.empty(n, dtype=np.int64)
    row = 0
    batches = eval_batches(bundle, part, batch_size=batch_size, device=device, workers=workers)
    with torch.no_grad(), tqdm(total=n, desc=desc, unit="img", leave=False,
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
    arrays = {"logits": logits, "features": features, "labels": labels, "indices": indices}
    images = _images_for_display(part)
    if images is not None:
        arrays["images"] = images
    if bundle.fine_to_coarse is not None:
        arrays["fine_to_coarse"] = np.asarray(bundle.fine_to_coarse, dtype=np.int64)
    return arrays
