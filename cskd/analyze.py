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
from .runs import load_predictions, read_config, read_tsne_cache

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
            cached = read_tsne_cache(path, source, len(preds["labels"]), max_points=max_points)
        except UserError:  # a damaged cache is simply recomputed
            cached = None
        if cached is not None:
            return cached
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


def prepare_run(run: Path, *, split: str = "test", progress: bool | None = None,
                tsne_max_points: int = TSNE_MAX_POINTS, on_step=None) -> tuple[dict, dict | None, tuple]:
    """Predict `split` where its predictions are missing or stale, and for the test split also the
    validation split (temperature scaling is fitted there, never on the test split) when the run
    has one; then cache the t-SNE. Returns (predictions of `split`, validation predictions or None,
    (t-SNE coords, rows)). `on_step(fraction, text)` is told before each step (a progress bar)."""
    run = Path(run)
    step = on_step or (lambda fraction, text: None)
    step(0.0, f"predicting the {split} split")
    if not is_fresh(run, split):
        predict(run, split=split, progress=progress)
    preds = load_predictions(predictions_path(run, split))
    val = None
    if split == "test" and read_config(run).val_fraction > 0:
        step(0.4, "predicting the validation split")
        if not is_fresh(run, "val"):
            predict(run, split="val", progress=progress)
        val = load_predictions(predictions_path(run, "val"))
    step(0.7, f"t-SNE of the {split} features")
    tsne = cached_tsne(run, split, preds, max_points=tsne_max_points)
    step(1.0, "done")
    return preds, val, tsne


def run_arrays(run: Path, *, split: str = "test", progress: bool | None = None,
               tsne_max_points: int = TSNE_MAX_POINTS) -> dict:
    """Everything `analysis.report.analyze_runs` takes for one run, predicting first where needed."""
    preds, val, tsne = prepare_run(run, split=split, progress=progress, tsne_max_points=tsne_max_points)
    arrays = {k: preds[k] for k in ("logits", "features", "labels", "indices", "class_names", "dataset", "split")}
    arrays["config"] = read_config(Path(run)).to_dict()
    arrays["images"] = image_lookup(preds)
    for key in ("fine_to_coarse", "coarse_names"):
        if key in preds:
            arrays[key] = preds[key]
    if val is not None:
        arrays["val_logits"], arrays["val_labels"] = val["logits"], val["labels"]
    arrays["tsne"] = tsne
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
