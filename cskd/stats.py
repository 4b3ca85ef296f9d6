"""Per-run metrics computed once: `stats-<split>.npz` next to a run's predictions.

Everything the dashboard shows about a run comes from here, so a softmax over the logits is taken
once per predictions file (in row chunks: an ImageNet validation run, 50,000 x 1,000 logits, never
needs more than a few tens of MB at a time), not once per page, bin count or view.

Scalars (meta "metrics"; fractions in [0, 1] unless said otherwise; None when undefined), named as
analysis.report.run_metrics names them:
  top1_error, top5_error (k = min(5, C); ties in the label's favour), nll (nats), ece, mce (20
  equal-width bins, analysis.calibration's convention), adaptive_ece (20 equal-mass bins),
  classwise_ece, brier (in [0, 2]), overconfidence (mean confidence - accuracy, in [-1, 1]),
  ece_ci_low / ece_ci_high (percentile bootstrap, 1,000 resamples, 95 %, seed 0), recall_at_1
  (exact L2 search with FAISS, the query excluded), temperature (fitted on the run's validation
  predictions, never on the test split; None without them), ece_after_ts, mce_after_ts,
  nll_after_ts, hierarchical_accuracy (with a coarse grouping).
Arrays (N samples, C classes, K neighbours, G coarse groups):
  confidence f8 (N,)      max softmax probability
  correct ?    (N,)       argmax (ties to the lowest id) equals the label
  pred i4      (N,)       argmax class
  true_logprob f8 (N,)    log softmax probability of the true class (its probability: exp)
  pred_logprob f8 (N,)    log softmax probability of the predicted class (= log confidence)
  true_rank i4 (N,)       classes scoring strictly higher than the true class (0: top-1 right)
  entropy f4   (N,)       of the softmax, nats
  ts_confidence f8, ts_correct ?, ts_true_logprob f8 (N,)   the same after temperature scaling
  neighbours i4 (N, K), neighbour_distances f4 (N, K)   K = min(10, N - 1) nearest samples in
                          feature space (squared L2, exact FAISS search, the query excluded)
  confusion i8 (C, C)     [true, predicted] counts; per_class_accuracy f8 (C,) (NaN: no sample)
  confused_pairs i8 (P, 3)  the P <= 50 most confused (true, predicted, count), most first
  group_error f8 (G,)     fine-label top-1 error of each coarse group (NaN: no sample)

Freshness: the file records the write_id of the predictions it was computed from (RunFolder's
derived-cache rule) and of the validation predictions the temperature was fitted on
("val_source"); either rewritten, it is recomputed. It is written in two steps: everything but the
neighbour search first ("complete": false), then again with it, so the cheap numbers are there
within seconds even when the exact search takes minutes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .runfolder import RunFolder, stats_name

STATS_VERSION = 1  # of the content below; another version is recomputed
N_BINS = 20
N_BOOT = 1000
CI_LEVEL = 0.95
NEIGHBOURS = 10
TOP_PAIRS = 50
CHUNK_ELEMENTS = 1 << 22  # logits handled at a time (32 MB as float64)
SEARCH_BATCH = 4096

PER_SAMPLE = {"confidence": "f", "correct": "b", "pred": "i", "true_logprob": "f", "pred_logprob": "f",
              "true_rank": "i", "entropy": "f"}
AFTER_TS = {"ts_confidence": "f", "ts_correct": "b", "ts_true_logprob": "f"}


@dataclass
class Stats:
    """An opened stats cache: `metrics` (dict of scalars), `meta`, and its arrays as read-only
    memory maps (`array(name)`, or the attributes named after them; None when absent)."""

    path: Path
    split: str
    meta: dict
    npz: object  # cskd.runfolder.npz.NpzFile

    @property
    def metrics(self) -> dict:
        return dict(self.meta["metrics"])

    def report_metrics(self, coarse_names: list[str] | None = None) -> dict:
        """The metrics as analysis.report.run_metrics names them (20 bins): the defined scalars,
        and with a coarse grouping one top1_error[<group>] per group."""
        from analysis.hierarchy import group_error_key

        m = {k: float(v) for k, v in self.meta["metrics"].items() if v is not None}
        errors = self.array("group_error") if self.has("group_error") else None
        if errors is not None:
            names = coarse_names or [str(g) for g in range(len(errors))]
            m.update({group_error_key(g): float(e) for g, e in zip(names, errors)})
        return m

    @property
    def settings(self) -> dict:
        """What the metrics were computed with, as analysis.report.run_metrics names it."""
        return {k: self.meta[k] for k in ("n_bins", "n_boot", "ci_level")}

    @property
    def complete(self) -> bool:
        """False while the neighbour search (Recall@1) is still to be done."""
        return bool(self.meta.get("complete"))

    @property
    def num_samples(self) -> int:
        return int(self.meta["n_samples"])

    @property
    def num_classes(self) -> int:
        return int(self.meta["n_classes"])

    @property
    def temperature(self) -> float | None:
        return self.meta["metrics"].get("temperature")

    def has(self, name: str) -> bool:
        return name in self.npz

    def array(self, name: str) -> np.ndarray | None:
        return self.npz.array(name) if name in self.npz else None

    def __getattr__(self, name: str):
        if name in PER_SAMPLE or name in AFTER_TS or name in (
                "neighbours", "neighbour_distances", "confusion", "per_class_accuracy", "confused_pairs",
                "group_error"):
            return self.array(name)
        raise AttributeError(name)


# ---------------------------------------------------------------------------------------- reading

def _val_predictions(folder: RunFolder, split: str):
    """The validation predictions a temperature may be fitted on: fresh ones, for test stats only."""
    if split != "test" or folder.predictions_status("val")[0] != "fresh":
        return None
    return folder.predictions("val")


def _open(folder: RunFolder, split: str, preds, val) -> Stats | None:
    """The stats cache made from `preds` (and `val`), checked; None when absent or stale."""
    z = folder.derived(stats_name(split), kind="stats", predictions=preds)
    if z is None or z.meta.get("stats_version") != STATS_VERSION or \
            z.meta.get("val_source") != (val.write_id if val is not None else None):
        return None
    stats = Stats(z.path, split, z.meta, z)
    _check(stats, preds)
    return stats


def _check(stats: Stats, preds) -> None:
    """Shapes, dtypes and ranges of an opened cache (a UserError naming it otherwise)."""
    n, c, m, z = preds.num_samples, preds.num_classes, stats.meta, stats.npz
    problem = None
    if not isinstance(m.get("metrics"), dict) or m.get("n_samples") != n or m.get("n_classes") != c:
        problem = "its metadata does not match the predictions"
    else:
        bad = [k for k, v in m["metrics"].items()
               if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v))]
        names = list(PER_SAMPLE) + (list(AFTER_TS) if m["metrics"].get("temperature") is not None else [])
        missing = [k for k in names if k not in z or z.shape(k) != (n,) or z.dtype(k).kind != PER_SAMPLE.get(
            k, AFTER_TS.get(k))]
        if bad or missing:
            problem = f"{', '.join(bad + missing)} {'is' if len(bad + missing) == 1 else 'are'} malformed"
        elif "confusion" not in z or z.shape("confusion") != (c, c):
            problem = "its confusion matrix has the wrong shape"
        elif "neighbours" in z and (len(z.shape("neighbours")) != 2 or z.shape("neighbours")[0] != n):
            problem = "its neighbour table has the wrong shape"
        else:
            pred, conf = stats.pred, stats.confidence
            if pred.min() < 0 or pred.max() >= c or not (0 <= conf.min() and conf.max() <= 1):
                problem = "its predicted classes or confidences are out of range"
            elif "neighbours" in z and z.shape("neighbours")[1] and (
                    stats.neighbours.min() < 0 or stats.neighbours.max() >= n):
                problem = "its neighbours are out of range"
    if problem:
        raise UserError(f"{stats.path} is damaged ({problem}); it is a cache: recompute it")


def read_stats(run, split: str = "test") -> Stats | None:
    """The run's stats cache of `split` when it was made from the current predictions (and
    validation predictions); None when it is absent or stale, or the predictions are not fresh.
    Never writes; a damaged cache is a UserError naming it."""
    folder = run if isinstance(run, RunFolder) else RunFolder(run)
    if folder.predictions_status(split)[0] != "fresh":
        return None
    preds = folder.predictions(split)
    return _open(folder, split, preds, _val_predictions(folder, split))


def ensure_stats(run, split: str = "test", *, on_step=None, retrieval: bool = True) -> Stats:
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
    state, reason = folder.predictions_status(split)
    if state != "fresh":
        raise UserError(f"{folder.file(f'predictions-{split}.npz')}: {reason}; "
                        f"{folder.predictions_fix(split)} before computing its metrics")
    if not folder.writable():
        return _unsaved(folder, split, retrieval, step)  # a read-only run (a shared archive) is analysed too
    with folder.writing(command=f"cskd stats {folder.path} [{split}]"):
        preds = folder.predictions(split)
        val = _val_predictions(folder, split)
        try:
            stats = _open(folder, split, preds, val)
        except UserError:
            stats = None  # damaged: a cache, so computed again
        if stats is not None and (stats.complete or not retrieval):
            step(1.0, "cached")
            return stats
        plan = Plan(preds, val, retrieval)
        arrays, meta = (_first_step(preds, val, plan, step) if stats is None
                        else ({k: np.asarray(stats.array(k)) for k in stats.npz.names()}, dict(stats.meta)))
        if stats is None:  # an incomplete cache is not written again (a failing search would loop)
            _write(folder, split, preds, arrays, meta, complete=not plan.searchable)
        if plan.search:
            _search_step(preds, arrays, meta, plan, step)
            _write(folder, split, preds, arrays, meta, complete=True)
        step(1.0, "done")
        return _open(folder, split, preds, val)


def _unsaved(folder: RunFolder, split: str, retrieval: bool, step) -> Stats:
    """The stats of a run folder cskd may not write to, computed and kept out of it."""
    preds, val = folder.predictions(split), _val_predictions(folder, split)
    plan = Plan(preds, val, retrieval)
    arrays, meta = _first_step(preds, val, plan, step)
    if plan.search:
        _search_step(preds, arrays, meta, plan, step)
    z = folder.unsaved_derived(stats_name(split), arrays, kind="stats", predictions=preds,
                               **{**meta, "complete": plan.search or not plan.searchable})
    stats = Stats(folder.file(stats_name(split)), split, z.meta, z)
    _check(stats, preds)
    step(1.0, "done (not saved: the run folder is read-only)")
    return stats


def _write(folder: RunFolder, split: str, preds, arrays: dict, meta: dict, *, complete: bool) -> None:
    keep = {k: v for k, v in meta.items() if k not in ("format", "kind", "source")}
    folder.write_derived(stats_name(split), arrays, kind="stats", predictions=preds,
                         **{**keep, "complete": complete})


# ------------------------------------------------------------------------------------- computing

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


def _rows(n: int, c: int):
    step = max(1, CHUNK_ELEMENTS // max(c, 1))
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def fit_temperature(logits, labels, *, t_min: float = 0.01, t_max: float = 100.0) -> float:
    """analysis.calibration.fit_temperature (bounded Brent search of log T minimising the mean NLL
    of softmax(logits / T), same bounds and tolerance) over row chunks of `logits`, so a large
    (memory-mapped) validation set is never converted to float64 as a whole."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(labels, dtype=np.int64)
    chunks = _rows(len(y), logits.shape[1])

    def loss(log_t: float) -> float:
        t, total = math.exp(log_t), 0.0
        for s, e in chunks:
            lp = _log_softmax(np.asarray(logits[s:e], dtype=np.float64) / t)
            total += float(np.sum(lp[np.arange(e - s), y[s:e]]))
        return -total / len(y)

    res = minimize_scalar(loss, bounds=(math.log(t_min), math.log(t_max)), method="bounded",
                          options={"xatol": 1e-5})
    return float(math.exp(res.x))


def _softmax_pass(logits, labels, t: float, want_all: bool) -> dict:
    """Per-sample summaries of softmax(logits / t) in row chunks, and the sums class-wise ECE and
    the Brier score need."""
    n, c = logits.shape
    y = np.asarray(labels, dtype=np.int64)
    out = {"confidence": np.empty(n), "correct": np.empty(n, bool), "true_logprob": np.empty(n)}
    if want_all:
        out.update(pred=np.empty(n, np.int32), pred_logprob=np.empty(n), true_rank=np.empty(n, np.int32),
                   entropy=np.empty(n, np.float32))
        inner = np.linspace(0.0, 1.0, N_BINS + 1)[1:-1]
        sum_p, sum_y, brier = np.zeros(c * N_BINS), np.zeros(c * N_BINS), 0.0
    for s, e in _rows(n, c):
        z = np.asarray(logits[s:e], dtype=np.float64)
        zt = z / t if t != 1.0 else z
        lp = _log_softmax(zt)
        p = np.exp(lp)
        rows, yy = np.arange(e - s), y[s:e]
        pred = p.argmax(axis=1)
        out["confidence"][s:e] = p[rows, pred]
        out["correct"][s:e] = pred == yy
        out["true_logprob"][s:e] = lp[rows, yy]
        if want_all:
            out["pred"][s:e] = pred
            out["pred_logprob"][s:e] = lp[rows, pred]
            out["true_rank"][s:e] = (z > z[rows, yy][:, None]).sum(axis=1)
            out["entropy"][s:e] = -(p * lp).sum(axis=1)
            # analysis.calibration.classwise_ece's (class, bin) cells, accumulated over chunks
            cell = (np.arange(c)[None, :] * N_BINS + np.searchsorted(inner, p, side="left")).ravel()
            onehot = np.zeros_like(p)
            onehot[rows, yy] = 1.0
            sum_p += np.bincount(cell, weights=p.ravel(), minlength=c * N_BINS)
            sum_y += np.bincount(cell, weights=onehot.ravel(), minlength=c * N_BINS)
            brier += float(np.sum((p * p).sum(axis=1) - 2.0 * p[rows, yy] + 1.0))
    if want_all:
        out["_classwise_ece"] = float((np.abs(sum_y - sum_p).reshape(c, N_BINS).sum(axis=1) / n).mean())
        out["_brier"] = brier / n
    return out


def _calibration(conf, correct) -> tuple[float, float]:
    from analysis import calibration as cal

    bins = cal.reliability_bins_from_confidence(conf, correct, n_bins=N_BINS)
    return cal.ece_from_bins(bins), cal.mce_from_bins(bins)


def _first_step(preds, val, plan: Plan, step) -> tuple[dict, dict]:
    """Everything but the neighbour search: (arrays, meta)."""
    from analysis import calibration as cal
    from analysis.confusion import confusion_matrix, most_confused_pairs
    from analysis.hierarchy import hierarchical_accuracy, top1_error_by_group

    t0 = time.monotonic()
    logits, labels = preds.logits, np.asarray(preds.labels, dtype=np.int64)
    n, c = logits.shape
    step(0.0, "softmax of the logits")
    s = _softmax_pass(logits, labels, 1.0, True)
    conf, correct = s["confidence"], s["correct"]
    ece, mce = _calibration(conf, correct)
    m = {"top1_error": float(np.mean(s["true_rank"] >= 1)), "top5_error": float(np.mean(s["true_rank"] >= min(5, c))),
         "nll": float(-np.mean(s["true_logprob"])), "ece": ece, "mce": mce,
         "adaptive_ece": cal.ece_from_bins(cal.reliability_bins_from_confidence(conf, correct, n_bins=N_BINS,
                                                                                strategy="quantile")),
         "classwise_ece": s.pop("_classwise_ece"), "brier": s.pop("_brier"),
         "overconfidence": float(conf.mean() - correct.mean()), "recall_at_1": None, "temperature": None,
         "ece_after_ts": None, "mce_after_ts": None, "nll_after_ts": None, "hierarchical_accuracy": None}
    step(0.3 * plan.first, "bootstrap interval of the ECE")
    m["ece_ci_low"], m["ece_ci_high"] = cal.ece_bootstrap_ci_from_confidence(conf, correct, n_bins=N_BINS,
                                                                             n_boot=N_BOOT, level=CI_LEVEL, seed=0)
    arrays = dict(s)
    if val is not None:
        step(0.45 * plan.first, "temperature fitted on the validation predictions")
        t = fit_temperature(val.logits, np.asarray(val.labels))
        ts = _softmax_pass(logits, labels, t, False)
        m["temperature"] = t
        m["ece_after_ts"], m["mce_after_ts"] = _calibration(ts["confidence"], ts["correct"])
        m["nll_after_ts"] = float(-np.mean(ts["true_logprob"]))
        arrays.update({f"ts_{k}": v for k, v in ts.items()})
    step(0.9 * plan.first, "confusion matrix")
    pred = arrays["pred"]
    confusion = confusion_matrix(pred, labels, n_classes=c)
    with np.errstate(invalid="ignore", divide="ignore"):
        arrays["per_class_accuracy"] = np.diag(confusion) / confusion.sum(axis=1)
    arrays["confusion"] = confusion
    arrays["confused_pairs"] = np.array(most_confused_pairs(confusion, k=TOP_PAIRS), dtype=np.int64).reshape(-1, 3)
    mapping = preds.fine_to_coarse
    if mapping is not None:
        n_groups = len(preds.coarse_names) if preds.coarse_names else int(np.max(mapping)) + 1
        m["hierarchical_accuracy"] = hierarchical_accuracy(pred, labels, mapping)
        arrays["group_error"] = top1_error_by_group(pred, labels, mapping, n_coarse=n_groups)
    meta = {"stats_version": STATS_VERSION, "metrics": m, "n_samples": n, "n_classes": c, "n_bins": N_BINS,
            "n_boot": N_BOOT, "ci_level": CI_LEVEL, "val_source": val.write_id if val is not None else None,
            "features": preds.features is not None, "seconds": round(time.monotonic() - t0, 3)}
    return arrays, meta


def _search_step(preds, arrays: dict, meta: dict, plan: Plan, step) -> None:
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


__all__ = ["Stats", "ensure_stats", "read_stats", "estimate_seconds", "fit_temperature", "N_BINS", "NEIGHBOURS"]
