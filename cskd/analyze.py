"""`cskd analyze`: gather runs' predictions (predicting where needed), cache their t-SNE, and hand
the arrays to `analysis.report.analyze_runs`, which writes metrics, tables and figures.

The t-SNE of a run's features is cached as RUN/tsne-<split>.npz (coords float32 (M, 2), rows int64
(M,) into the predictions) and recomputed only when the predictions file is newer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .checkpoint import atomic_write
from .errors import UserError
from .predict import is_fresh, predict, predictions_path
from .runs import load_predictions, read_config

TSNE_MAX_POINTS = 10_000


def tsne_path(run: Path, split: str) -> Path:
    return Path(run) / f"tsne-{split}.npz"


def cached_tsne(run: Path, split: str, preds: dict, *, max_points: int = TSNE_MAX_POINTS):
    """(coords, rows) of the run's t-SNE, from the cache when it is newer than the predictions."""
    from analysis.embedding import tsne_2d

    path = tsne_path(run, split)
    source = predictions_path(run, split)
    if path.is_file() and path.stat().st_mtime >= source.stat().st_mtime:
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["max_points"]) == max_points:
                    return z["coords"], z["rows"]
        except Exception:  # a damaged cache is simply recomputed
            pass
    coords, rows = tsne_2d(preds["features"].astype(np.float32), preds["labels"], max_points=max_points, seed=0)
    atomic_write(path, lambda f: np.savez(f, coords=coords, rows=rows, max_points=np.array(max_points)))
    return coords, rows


def image_lookup(preds: dict):
    """A function dataset-index -> HxWxC uint8 image from the predictions' stored images, or None."""
    if "images" not in preds:
        return None
    row_of = {int(i): r for r, i in enumerate(preds["indices"])}
    images = preds["images"]
    return lambda index: images[row_of[int(index)]]


def run_arrays(run: Path, *, split: str = "test", progress: bool | None = None,
               tsne_max_points: int = TSNE_MAX_POINTS) -> dict:
    """Everything `analysis.report.analyze_runs` takes for one run, predicting first where needed."""
    run = Path(run)
    cfg = read_config(run)
    if not is_fresh(run, split):
        predict(run, split=split, progress=progress)
    preds = load_predictions(predictions_path(run, split))
    arrays = {k: preds[k] for k in ("logits", "features", "labels", "indices", "class_names", "dataset", "split")}
    arrays["config"] = cfg.to_dict()
    arrays["images"] = image_lookup(preds)
    for key in ("fine_to_coarse", "coarse_names"):
        if key in preds:
            arrays[key] = preds[key]
    if split == "test" and cfg.val_fraction > 0:
        # Temperature scaling is fitted on the validation split, never on the test split.
        if not is_fresh(run, "val"):
            predict(run, split="val", progress=progress)
        val = load_predictions(predictions_path(run, "val"))
        arrays["val_logits"], arrays["val_labels"] = val["logits"], val["labels"]
    arrays["tsne"] = cached_tsne(run, split, preds, max_points=tsne_max_points)
    return arrays


def analyze(runs: list[str], out: str, *, split: str = "test", n_bins: int = 20, progress: bool | None = None,
            tsne_max_points: int = TSNE_MAX_POINTS) -> dict:
    """Analyse runs into `out` (metrics.json, table.md/.csv/.tex, figures/). Returns the metrics."""
    from analysis.report import analyze_runs

    if not 0 < n_bins <= 10_000:  # more bins than that hold almost no samples each (and cost memory)
        raise UserError(f"--bins must be an integer in [1, 10000]; got {n_bins}")
    if Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"--out {out} exists and is not a folder; choose a folder for the report")
    paths = [Path(r) for r in runs]
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise UserError("two runs share a folder name; give runs with distinct names")
    configs = {p.name: read_config(p) for p in paths}
    datasets = {cfg.dataset for cfg in configs.values()}
    if len(datasets) > 1:
        shown = ", ".join(f"{n}: {c.dataset}" for n, c in configs.items())
        raise UserError(f"cannot compare runs made on different data sets ({shown}); analyse each data set apart")
    arrays = {p.name: run_arrays(p, split=split, progress=progress, tsne_max_points=tsne_max_points) for p in paths}
    try:
        return analyze_runs(arrays, out, n_bins=n_bins, tsne_max_points=tsne_max_points, progress=progress)
    except ValueError as e:
        raise UserError(str(e)) from None
