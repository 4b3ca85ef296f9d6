"""Per-run metrics computed once: `stats-<split>.npz` next to a run's predictions.

Every metric and per-sample summary the dashboard shows comes from here (it reads single rows of
the logits for a sample's predictive distribution, the t-SNE cache and metrics.jsonl besides), so
a softmax over the logits is taken once per predictions file (in row chunks: an ImageNet
validation run, 50,000 x 1,000 logits, never needs more than a few tens of MB at a time), not once
per page, bin count or view.

Scalars (meta "metrics"; fractions in [0, 1] unless said otherwise; None when undefined), named as
analysis.report.run_metrics names them:
  top1_error, top5_error (k = min(5, C); ties in the label's favour), nll (nats), ece, mce (N_BINS
  = analysis.calibration.N_BINS equal-width bins, analysis.calibration's convention), adaptive_ece
  (N_BINS equal-mass bins), classwise_ece, brier (in [0, 2]), overconfidence (mean confidence -
  accuracy, in [-1, 1]), smooth_ece (no bins; analysis.smooth_calibration), ece_ci_low /
  ece_ci_high (percentile bootstrap, N_BOOT resamples, CI_LEVEL, seed 0), all computed by
  analysis.summary.run_scalars (the report's code path), recall_at_1 (exact L2 search with FAISS,
  the query excluded), temperature (fitted on the run's validation predictions, never on the test
  split; None without them), ece_after_ts, mce_after_ts, nll_after_ts, hierarchical_accuracy (with
  a coarse grouping).
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

Freshness: the file records the write_id of the predictions it was computed from (the derived-cache
rule of cskd.runfolder.derived) and of the validation predictions the temperature was fitted on
("val_source"); either rewritten, it is recomputed. It is written in two steps: everything but the
neighbour search first ("complete": false), then again with it, so the cheap numbers are there
within seconds even when the exact search takes minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cskd.analysis.calibration import CI_LEVEL, N_BINS, N_BOOT
from cskd.errors import UserError
from cskd.runfolder.derived import read_derived
from cskd.runfolder.folder import RunFolder
from cskd.runfolder.layout import DEFAULT_SPLIT, stats_name
from cskd.runfolder.predictions import predictions_status, read_predictions

STATS_VERSION = 2  # of the content below; another version is recomputed (2: smooth_ece)
NEIGHBOURS = 10
TOP_PAIRS = 50

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
        """The metrics as analysis.report.run_metrics names them (N_BINS bins): the defined scalars,
        and with a coarse grouping one top1_error[<group>] per group."""
        from cskd.analysis.hierarchy import group_error_key, group_names

        m = {k: float(v) for k, v in self.meta["metrics"].items() if v is not None}
        errors = self.array("group_error") if self.has("group_error") else None
        if errors is not None:
            names = group_names(np.arange(len(errors)), coarse_names)  # one cached error per group
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
    if split != "test" or predictions_status(folder, "val")[0] != "fresh":
        return None
    return read_predictions(folder, "val")


def _open(folder: RunFolder, split: str, preds, val) -> Stats | None:
    """The stats cache made from `preds` (and `val`), checked; None when absent or stale."""
    z = read_derived(folder, stats_name(split), kind="stats", predictions=preds)
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


def read_stats(run, split: str = DEFAULT_SPLIT) -> Stats | None:
    """The run's stats cache of `split` when it was made from the current predictions (and
    validation predictions); None when it is absent or stale, or the predictions are not fresh.
    Never writes; a damaged cache is a UserError naming it."""
    folder = run if isinstance(run, RunFolder) else RunFolder(run)
    if predictions_status(folder, split)[0] != "fresh":
        return None
    preds = read_predictions(folder, split)
    return _open(folder, split, preds, _val_predictions(folder, split))


__all__ = ["Stats", "read_stats", "N_BINS", "N_BOOT", "CI_LEVEL", "NEIGHBOURS"]
