"""Computing a run's stats cache (its definitions: cskd.evaluation.stats_cache): the scalars and
per-sample summaries of analysis.summary.run_scalars (one softmax pass over the logits in row
chunks, the temperature fit on the validation predictions, the bootstrap interval of the ECE: the
report's code path), the confusion matrix, and the exact neighbour search (FAISS).
`ensure_stats` runs them and writes the file under the run folder's lock.
"""

from __future__ import annotations

import time

import numpy as np

from cskd.errors import UserError
from cskd.evaluation.stats_cache import (
    CI_LEVEL,
    N_BINS,
    N_BOOT,
    NEIGHBOURS,
    STATS_VERSION,
    TOP_PAIRS,
    Stats,
    _check,
    _open,
    _val_predictions,
    read_stats,
)
from cskd.runfolder.derived import unsaved_derived, write_derived
from cskd.runfolder.folder import RunFolder
from cskd.runfolder.layout import DEFAULT_SPLIT, stats_name
from cskd.runfolder.predictions import predictions_fix, predictions_status, read_predictions

SEARCH_BATCH = 4096  # queries (and index additions) at a time


def estimate_seconds(n: int, c: int, d: int | None, n_val: int = 0) -> float:
    """Rough time of ensure_stats on a 2-core CPU (measured: 10,000 x 100 x 512 about 1 s,
    50,000 x 1,000 x 2,048 about 60 s, almost all of it the exact neighbour search)."""
    softmax = 8e-9 * n * c * 2 + 2.5e-9 * n_val * c * 30  # passes over the logits; the fit's ~30 evaluations
    search = 1.1e-11 * n * n * d if d else 0.0
    return 0.5 + softmax + 1.5e-8 * n * N_BOOT / 20 + search


class Plan:
    """What a computation will do, and the share of time of each step (for progress bars)."""

    def __init__(self, preds, val, retrieval: bool):
        n, c = preds.num_samples, preds.num_classes
        feats = preds.features
        self.d = feats.shape[1] if feats is not None else None
        self.searchable = self.d is not None and n >= 2  # a neighbour search has something to find
        self.search = retrieval and self.searchable
        n_val = val.num_samples if val is not None else 0
        self.total = estimate_seconds(n, c, self.d if self.search else None, n_val)
        self.first = estimate_seconds(n, c, None, n_val) / self.total


def first_step(preds, val, plan: Plan, step) -> tuple[dict, dict]:
    """Everything but the neighbour search: (arrays, meta). The scalars and per-sample summaries
    are analysis.summary.run_scalars' (the report's code path: one implementation, row-chunked)."""
    from cskd.analysis.confusion import accuracy_of_confusion, confusion_matrix, most_confused_pairs
    from cskd.analysis.hierarchy import group_names, hierarchical_accuracy, top1_error_by_group
    from cskd.analysis.summary import run_scalars

    t0 = time.monotonic()
    logits, labels = preds.logits, np.asarray(preds.labels, dtype=np.int64)
    n, c = logits.shape
    try:
        scalars = run_scalars(logits, labels, val_logits=None if val is None else val.logits,
                              val_labels=None if val is None else np.asarray(val.labels), n_bins=N_BINS,
                              n_boot=N_BOOT, ci_level=CI_LEVEL, seed=0,
                              on_step=lambda f, text: step(0.9 * plan.first * f, text))
    except ValueError as e:  # e.g. NaN logits: the predictions cannot be analysed as they are
        raise UserError(f"cannot compute the metrics of {preds.path}: {e}") from None
    computed = scalars.metrics
    # The cached scalars, in this order (None: undefined or not computed yet)
    m = dict.fromkeys(("top1_error", "top5_error", "nll", "ece", "mce", "adaptive_ece", "classwise_ece", "brier",
                       "overconfidence", "smooth_ece", "recall_at_1", "temperature", "ece_after_ts", "mce_after_ts",
                       "nll_after_ts", "hierarchical_accuracy", "ece_ci_low", "ece_ci_high"))
    m.update(computed)
    arrays = scalars.summary.arrays()
    if scalars.scaled is not None:
        arrays.update({f"ts_{k}": v for k, v in scalars.scaled.arrays().items()})
    step(0.9 * plan.first, "confusion matrix")
    pred = arrays["pred"]
    confusion = confusion_matrix(pred, labels, n_classes=c)
    arrays["per_class_accuracy"] = accuracy_of_confusion(confusion)
    arrays["confusion"] = confusion
    arrays["confused_pairs"] = np.array(most_confused_pairs(confusion, k=TOP_PAIRS), dtype=np.int64).reshape(-1, 3)
    mapping = preds.fine_to_coarse
    if mapping is not None:
        n_groups = len(group_names(mapping, preds.coarse_names))
        m["hierarchical_accuracy"] = hierarchical_accuracy(pred, labels, mapping)
        arrays["group_error"] = top1_error_by_group(pred, labels, mapping, n_coarse=n_groups)
    meta = {"stats_version": STATS_VERSION, "metrics": m, "n_samples": n, "n_classes": c, "n_bins": N_BINS,
            "n_boot": N_BOOT, "ci_level": CI_LEVEL, "val_source": val.write_id if val is not None else None,
            "features": preds.features is not None, "seconds": round(time.monotonic() - t0, 3)}
    return arrays, meta


def search_step(preds, arrays: dict, meta: dict, plan: Plan, step) -> None:
    """Exact K nearest neighbours of every sample in feature space (FAISS, squared L2, the query
    itself excluded as analysis.retrieval.recall_at_k does) and Recall@1 from the nearest one."""
    import faiss

    t0 = time.monotonic()
    feats, labels = preds.features, np.asarray(preds.labels, dtype=np.int64)
    n, d = feats.shape
    k = min(NEIGHBOURS, n - 1)
    index = faiss.IndexFlatL2(d)
    finite = True
    for s in range(0, n, SEARCH_BATCH):  # float32 copies a batch at a time: the index holds the only full copy
        x = np.ascontiguousarray(feats[s:s + SEARCH_BATCH], dtype=np.float32)
        finite &= bool(np.isfinite(x).all())
        index.add(x)
    if not finite:
        meta["metrics"]["recall_at_1"], meta["retrieval"] = None, "features are not all finite"
        return
    nbrs = np.empty((n, k), np.int32)
    dists = np.empty((n, k), np.float32)
    for s in range(0, n, SEARCH_BATCH):
        step(plan.first + (1 - plan.first) * s / n, f"nearest neighbours in feature space ({s:,} of {n:,})")
        q = np.arange(s, min(s + SEARCH_BATCH, n))
        dist, nbr = index.search(np.ascontiguousarray(feats[q], dtype=np.float32), k + 1)
        keep = nbr != q[:, None]
        keep[keep.all(axis=1), k] = False  # the query was not among them: drop the farthest instead
        nbrs[q] = nbr[keep].reshape(len(q), k)
        dists[q] = dist[keep].reshape(len(q), k)
    arrays["neighbours"], arrays["neighbour_distances"] = nbrs, dists
    meta["metrics"]["recall_at_1"] = float(np.mean(labels[np.clip(nbrs[:, 0], 0, None)] == labels)) if k else None
    meta["retrieval"] = "done"
    meta["search_seconds"] = round(time.monotonic() - t0, 3)


__all__ = ["Plan", "first_step", "search_step", "estimate_seconds"]


def ensure_stats(run, split: str = DEFAULT_SPLIT, *, on_step=None, retrieval: bool = True) -> Stats:
    """The run's stats cache of `split`: read when fresh and complete, else computed and written
    under the folder's writer lock (a damaged cache is recomputed). The predictions must be fresh
    (`cskd predict` first). `on_step(fraction, text)` is told the progress. `retrieval=False`
    stops after the first write (everything but the neighbour search)."""
    folder = run if isinstance(run, RunFolder) else RunFolder(run)
    step = on_step or (lambda fraction, text: None)
    try:  # a fresh cache is read without the lock: a read-only run folder can be analysed
        ready = read_stats(folder, split)
    except UserError:
        ready = None
    if ready is not None and (ready.complete or not retrieval):
        step(1.0, "cached")
        return ready
    state, reason = predictions_status(folder, split)
    if state != "fresh":
        raise UserError(f"{folder.file(f'predictions-{split}.npz')}: {reason}; "
                        f"{predictions_fix(folder, split)} before computing its metrics")
    if not folder.writable():
        return _unsaved(folder, split, retrieval, step)  # a read-only run (a shared archive) is analysed too
    with folder.writing(command=f"cskd stats {folder.path} [{split}]"):
        preds = read_predictions(folder, split)
        val = _val_predictions(folder, split)
        try:
            stats = _open(folder, split, preds, val)
        except UserError:
            stats = None  # damaged: a cache, so computed again
        if stats is not None and (stats.complete or not retrieval):
            step(1.0, "cached")
            return stats
        plan = Plan(preds, val, retrieval)
        arrays, meta = (first_step(preds, val, plan, step) if stats is None
                        else ({k: np.asarray(stats.array(k)) for k in stats.npz.names()}, dict(stats.meta)))
        if stats is None:  # an incomplete cache is not written again (a failing search would loop)
            _write(folder, split, preds, arrays, meta, complete=not plan.searchable)
        if plan.search:
            search_step(preds, arrays, meta, plan, step)
            _write(folder, split, preds, arrays, meta, complete=True)
        step(1.0, "done")
        return _open(folder, split, preds, val)


def _unsaved(folder: RunFolder, split: str, retrieval: bool, step) -> Stats:
    """The stats of a run folder cskd may not write to, computed and kept out of it."""
    preds, val = read_predictions(folder, split), _val_predictions(folder, split)
    plan = Plan(preds, val, retrieval)
    arrays, meta = first_step(preds, val, plan, step)
    if plan.search:
        search_step(preds, arrays, meta, plan, step)
    z = unsaved_derived(stats_name(split), arrays, kind="stats", predictions=preds,
                        **{**meta, "complete": plan.search or not plan.searchable})
    stats = Stats(folder.file(stats_name(split)), split, z.meta, z)
    _check(stats, preds)
    step(1.0, "done (not saved: the run folder is read-only)")
    return stats


def _write(folder: RunFolder, split: str, preds, arrays: dict, meta: dict, *, complete: bool) -> None:
    keep = {k: v for k, v in meta.items() if k not in ("format", "kind", "source")}
    write_derived(folder, stats_name(split), arrays, kind="stats", predictions=preds,
                  **{**keep, "complete": complete})
