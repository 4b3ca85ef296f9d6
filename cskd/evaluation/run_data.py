"""One run's data as analysis reads it: its predictions (predicted first where they are missing or
stale), the validation predictions temperature scaling is fitted on, the stats cache
(cskd.evaluation.stats_cache) and the t-SNE of its features (cached in the run folder).
`cskd analyze`, `cskd reproduce` and the dashboard's jobs all start here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cskd.analysis.embedding import TSNE_MAX_POINTS  # points of a t-SNE cache (it records them)
from cskd.analysis.report_input import RunData
from cskd.errors import UserError
from cskd.evaluation.predict import predict
from cskd.evaluation.stats_compute import ensure_stats
from cskd.runfolder.config_file import is_imported
from cskd.runfolder.derived import read_tsne, write_derived
from cskd.runfolder.folder import RunFolder
from cskd.runfolder.layout import DEFAULT_SPLIT, predictions_name, tsne_name
from cskd.runfolder.predictions import read_predictions
from cskd.runfolder.run_config import read_config, read_config_dict


def cached_tsne(folder: RunFolder, split: str, preds, *, max_points: int = TSNE_MAX_POINTS):
    """(coords, rows) of the run's t-SNE, from its cache when that was made from these predictions
    with these settings; else computed and cached (a damaged cache is simply recomputed)."""
    from cskd.analysis.embedding import tsne_2d

    try:
        cached = read_tsne(folder, split, preds, max_points=max_points)
    except UserError:
        cached = None
    if cached is not None:
        return cached
    from cskd.analysis.embedding import stratified_subsample

    labels = np.asarray(preds.labels)
    sub = stratified_subsample(labels, max_points, seed=0)  # read only the rows t-SNE uses (features are lazy)
    coords, idx = tsne_2d(np.asarray(preds.features[sub], dtype=np.float32), labels[sub], max_points=max_points,
                          seed=0)
    rows = sub[idx]
    if not folder.writable():  # a read-only run: computed, not cached
        return coords, rows
    with folder.writing():
        write_derived(folder, tsne_name(split), {"coords": coords, "rows": rows}, kind="tsne", predictions=preds,
                      max_points=max_points)
    return coords, rows


def image_lookup(preds):
    """A function dataset-index -> HxWxC uint8 image from the predictions' stored images, or None."""
    images = preds.images
    if images is None:
        return None
    row_of = {int(i): r for r, i in enumerate(preds.indices)}
    return lambda index: images[row_of[int(index)]]


def prepare_run(run: Path, *, split: str = DEFAULT_SPLIT, progress: bool | None = None,
                tsne_max_points: int = TSNE_MAX_POINTS, on_step=None, with_tsne: bool = True,
                retrieval: bool = True):
    """Predict `split` where its predictions are missing, stale or damaged, and for the test split
    also the validation split (temperature scaling is fitted there, never on the test split) when
    the run has one; then cache the t-SNE. Returns (predictions of `split`, validation predictions
    or None, (t-SNE coords, rows) or None when there are no features, the run's stats cache:
    cskd.evaluation.stats_cache, its metrics computed once). `on_step(fraction, text)` is told before each step
    (a progress bar). `retrieval=False` leaves the exact neighbour search (Recall@1) for later."""
    folder = RunFolder(run)
    step = on_step or (lambda fraction, text: None)
    step(0.0, f"predicting the {split} split")
    predict(folder.path, split=split, progress=progress)
    preds = read_predictions(folder, split)
    val = None
    if split == "test" and _has_val(folder):
        step(0.4, "predicting the validation split")
        predict(folder.path, split="val", progress=progress)
        val = read_predictions(folder, "val")
    stats = ensure_stats(folder.path, split, on_step=lambda f, t: step(0.4 + 0.3 * f, f"metrics: {t}"),
                         retrieval=retrieval)
    tsne = None
    if with_tsne and preds.features is not None:
        step(0.7, f"t-SNE of the {split} features")
        tsne = cached_tsne(folder, split, preds, max_points=tsne_max_points)
    step(1.0, "done")
    return preds, val, tsne, stats


def _has_val(folder: RunFolder) -> bool:
    if is_imported(folder):
        return folder.file(predictions_name("val")).is_file()
    cfg = read_config(folder)
    return cfg.val_fraction > 0 and cfg.protocol != "authors"


def run_arrays(run: Path, *, split: str = DEFAULT_SPLIT, progress: bool | None = None,
               tsne_max_points: int = TSNE_MAX_POINTS, with_tsne: bool = True) -> RunData:
    """Everything `analysis.report.analyze_runs` takes for one run (analysis.report_input.RunData,
    named after the run folder), predicting first where needed. Arrays are read-only memory maps
    of the predictions file; the metrics are the stats cache's (computed once per predictions
    file, by the report's own code path), with the settings it records."""
    preds, val, tsne, stats = prepare_run(run, split=split, progress=progress, tsne_max_points=tsne_max_points,
                                          with_tsne=with_tsne)
    folder = RunFolder(run)
    mapped = preds.fine_to_coarse is not None
    return RunData(name=folder.path.name, logits=preds.logits, features=preds.features, labels=preds.labels,
                   indices=preds.indices, class_names=preds.class_names, dataset=preds.dataset, split=preds.split,
                   config=read_config_dict(folder), images=image_lookup(preds), tsne=tsne,
                   fine_to_coarse=preds.fine_to_coarse if mapped else None,
                   coarse_names=preds.coarse_names if mapped else None,
                   val_logits=None if val is None else val.logits, val_labels=None if val is None else val.labels,
                   metrics=stats.report_metrics(preds.coarse_names), metrics_settings=stats.settings)
