"""A run's scalar metrics, computed once: one pass over the logits in row chunks keeps per-sample
summaries of softmax(logits / T) (confidence, correctness, log-probabilities) and the sums that
class-wise ECE and the Brier score need; every other metric is a function of those summaries.

`run_scalars` is the one implementation: the report (`run_metrics`, below, which analysis.report
calls) and cskd's stats cache (cskd.evaluation.stats_compute) both compute through it, on the same code path, so the
numbers they give are the same floats. Reading the logits a chunk at a time
(analysis.metrics.row_chunks, CHUNK_ELEMENTS float64 values at a time) keeps an ImageNet run's
50,000 x 1,000 logits from ever being held as float64 (or as probabilities) whole.

Conventions: probabilities are exp(log_softmax(logits / T)); confidence = max probability;
correct = argmax (ties to the lowest class id) equals the label; ranks and top-k errors count the
classes scoring strictly higher than the label (ties in the label's favour); bins as in
analysis.calibration (N_BINS equal-width bins for ECE / MCE, equal-mass for adaptive ECE).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from . import _checks
from . import calibration as cal
from .hierarchy import group_error_key, group_names, hierarchical_accuracy, top1_error_by_group
from .metrics import finite_chunk, log_softmax, logit_rows, row_chunks
from .report_input import RunData
from .retrieval import recall_at_k
from .smooth_calibration import smooth_ece_from_confidence

# The scalars run_scalars returns, in this order (without n_boot no interval, without validation
# predictions no temperature): what analysis.report.run_metrics and the stats cache hold.
CORE = ("top1_error", "top5_error", "nll", "ece", "mce", "adaptive_ece", "classwise_ece", "brier", "overconfidence",
        "smooth_ece")
AFTER_TS = ("temperature", "ece_after_ts", "mce_after_ts", "nll_after_ts")
INTERVAL = ("ece_ci_low", "ece_ci_high")


@dataclass(frozen=True, eq=False)
class LogitSummary:
    """Per-sample summaries (N,) of softmax(logits / temperature), and two sums over all samples.

    confidence f8: max probability, in [0, 1]; correct bool: argmax equals the label;
    true_logprob f8: log probability of the true class (nats, <= 0). With full=True also
    pred i4 (argmax class), pred_logprob f8 (= log confidence), true_rank i4 (classes scoring
    strictly higher than the true class on the unscaled logits; 0: top-1 right), entropy f4 (nats),
    classwise_cells (sum_p, sum_y of analysis.calibration.classwise_cells over all rows, n_bins
    bins) and brier_sum (analysis.calibration.brier_sum over all rows); else None.
    """

    n_classes: int
    n_bins: int
    confidence: np.ndarray
    correct: np.ndarray
    true_logprob: np.ndarray
    pred: np.ndarray | None = None
    pred_logprob: np.ndarray | None = None
    true_rank: np.ndarray | None = None
    entropy: np.ndarray | None = None
    classwise_cells: tuple[np.ndarray, np.ndarray] | None = None
    brier_sum: float | None = None

    PER_SAMPLE = ("confidence", "correct", "true_logprob", "pred", "pred_logprob", "true_rank", "entropy")

    @property
    def n_samples(self) -> int:
        return int(self.confidence.size)

    def arrays(self) -> dict:
        """{name: (N,) array} of the per-sample summaries held (see the class docstring)."""
        return {k: getattr(self, k) for k in self.PER_SAMPLE if getattr(self, k) is not None}


def summarize_logits(logits: ArrayLike, labels: ArrayLike, *, temperature: float = 1.0, n_bins: int = cal.N_BINS,
                     full: bool = True,
                     chunk_elements: int | None = None) -> LogitSummary:
    """One pass over logits (N, C) (any array, e.g. a read-only memory map) and labels (N,) in row
    chunks of at most chunk_elements values (analysis.metrics.CHUNK_ELEMENTS when None): the
    LogitSummary of softmax(logits / temperature). full=False keeps only confidence, correct and
    true_logprob (what the metrics after temperature scaling need)."""
    n, c = logit_rows(logits)
    y = _checks.labels(labels, n, c)
    n_bins = _checks.positive_int(n_bins, "n_bins")
    t = float(temperature)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}")
    conf, correct, true_lp = np.empty(n), np.empty(n, bool), np.empty(n)
    if full:
        pred, pred_lp, rank = np.empty(n, np.int32), np.empty(n), np.empty(n, np.int32)
        entropy = np.empty(n, np.float32)
        sum_p, sum_y, brier = np.zeros(c * n_bins), np.zeros(c * n_bins), 0.0
    for s, e in row_chunks(n, c, chunk_elements):
        z = finite_chunk(logits, s, e)
        lp = log_softmax(z / t if t != 1.0 else z)
        p = np.exp(lp)
        rows, yy = np.arange(e - s), y[s:e]
        top = p.argmax(axis=1)
        conf[s:e] = p[rows, top]
        correct[s:e] = top == yy
        true_lp[s:e] = lp[rows, yy]
        if full:
            pred[s:e] = top
            pred_lp[s:e] = lp[rows, top]
            rank[s:e] = (z > z[rows, yy][:, None]).sum(axis=1)
            entropy[s:e] = -(p * lp).sum(axis=1)
            cell_p, cell_y = cal.classwise_cells(p, yy, n_bins)
            sum_p += cell_p
            sum_y += cell_y
            brier += cal.brier_sum(p, yy)
    if not full:
        return LogitSummary(c, n_bins, conf, correct, true_lp)
    return LogitSummary(c, n_bins, conf, correct, true_lp, pred, pred_lp, rank, entropy, (sum_p, sum_y), brier)


def calibration_errors(summary: LogitSummary, n_bins: int) -> tuple[float, float]:
    """(ECE, MCE) of the summary's confidences over n_bins equal-width bins."""
    bins = cal.reliability_bins_from_confidence(summary.confidence, summary.correct, n_bins=n_bins)
    return cal.ece_from_bins(bins), cal.mce_from_bins(bins)


def core_scalars(s: LogitSummary) -> dict:
    """The CORE metrics of a full summary (its n_bins bins), {name: float}, in CORE's order."""
    if s.true_rank is None:
        raise ValueError("core_scalars needs a full summary (summarize_logits(..., full=True))")
    ece, mce = calibration_errors(s, s.n_bins)
    quantile = cal.reliability_bins_from_confidence(s.confidence, s.correct, n_bins=s.n_bins, strategy="quantile")
    return {"top1_error": float(np.mean(s.true_rank >= 1)),
            "top5_error": float(np.mean(s.true_rank >= min(5, s.n_classes))),
            "nll": float(-np.mean(s.true_logprob)), "ece": ece, "mce": mce, "adaptive_ece": cal.ece_from_bins(quantile),
            "classwise_ece": cal.classwise_ece_of_cells(*s.classwise_cells, n=s.n_samples, n_bins=s.n_bins),
            "brier": s.brier_sum / s.n_samples,
            "overconfidence": cal.overconfidence_from_confidence(s.confidence, s.correct),
            "smooth_ece": smooth_ece_from_confidence(s.confidence, s.correct)}


@dataclass(frozen=True, eq=False)
class RunScalars:
    """run_scalars' result: metrics {name: float} (CORE, then AFTER_TS with validation predictions,
    then INTERVAL with n_boot >= 1), the full summary of the logits and, with a temperature, the
    summary (full=False) of the scaled logits."""

    metrics: dict
    summary: LogitSummary
    scaled: LogitSummary | None


def run_scalars(logits: ArrayLike, labels: ArrayLike, *, val_logits: ArrayLike | None = None,
                val_labels: ArrayLike | None = None, n_bins: int = cal.N_BINS,
                n_boot: int = cal.N_BOOT, ci_level: float = cal.CI_LEVEL, seed: int = 0,
                on_step=None) -> RunScalars:
    """Every scalar metric of one run's logits (N, C) and labels (N,), computed in row chunks.

    CORE: top1_error, top5_error (k = min(5, C)), nll (nats), ece, mce (n_bins equal-width bins),
    adaptive_ece (n_bins equal-mass bins), classwise_ece, brier (in [0, 2]), overconfidence (mean
    confidence - accuracy, in [-1, 1]), smooth_ece (no bins: analysis.smooth_calibration). AFTER_TS,
    with val_logits / val_labels: temperature
    (analysis.calibration.fit_temperature on them), ece_after_ts, mce_after_ts, nll_after_ts of
    logits / temperature. INTERVAL, with n_boot >= 1: ece_ci_low, ece_ci_high (percentile bootstrap
    of the ECE, n_boot resamples at ci_level, seeded). `on_step(fraction, text)` is told before each
    phase (a progress bar). Inputs are only read.
    """
    step = on_step or (lambda fraction, text: None)
    if (val_logits is None) != (val_labels is None):
        raise ValueError("give both val_logits and val_labels, or neither")
    n_boot = _checks.nonnegative_int(n_boot, "n_boot")
    step(0.0, "softmax of the logits")
    s = summarize_logits(logits, labels, n_bins=n_bins)
    m = core_scalars(s)
    scaled = None
    if val_logits is not None:
        step(0.5, "temperature fitted on the validation predictions")
        t = cal.fit_temperature(val_logits, val_labels)
        scaled = summarize_logits(logits, labels, temperature=t, n_bins=n_bins, full=False)
        m["temperature"] = t
        m["ece_after_ts"], m["mce_after_ts"] = calibration_errors(scaled, n_bins)
        m["nll_after_ts"] = float(-np.mean(scaled.true_logprob))
    if n_boot:
        step(0.3 if val_logits is None else 0.8, "bootstrap interval of the ECE")
        m["ece_ci_low"], m["ece_ci_high"] = cal.ece_bootstrap_ci_from_confidence(
            s.confidence, s.correct, n_bins=n_bins, n_boot=n_boot, level=ci_level, seed=seed)
    return RunScalars(m, s, scaled)


def run_metrics(run, *, n_bins: int = cal.N_BINS, n_boot: int = cal.N_BOOT, ci_level: float = cal.CI_LEVEL,
                seed: int = 0) -> dict:
    """All scalar metrics of one run (a RunData, or a mapping with its logits, labels and
    optionally features, val_logits / val_labels, fine_to_coarse, coarse_names), {name: float}.

    run_scalars' metrics (the same code path as cskd's stats cache): top1_error, top5_error
    (k = min(5, C)), nll (nats), ece, mce (equal-width bins), adaptive_ece (equal-mass bins),
    classwise_ece, brier (in [0, 2]), overconfidence (mean confidence - accuracy, in [-1, 1]);
    recall_at_1 (when the run has features); with n_boot >= 1 ece_ci_low and ece_ci_high
    (percentile bootstrap interval at ci_level, seeded; n_boot = 0 skips it); with val_logits /
    val_labels: temperature (fitted there), ece_after_ts, mce_after_ts, nll_after_ts; with
    fine_to_coarse: hierarchical_accuracy and one group_error_key(<group>) per coarse group (the
    fine-label top-1 error of the group's samples; NaN for a group without samples). Errors, ECE and
    recall are fractions in [0, 1]. Inputs are only read (read-only memmaps are fine).
    """
    get = (lambda k: getattr(run, k)) if isinstance(run, RunData) else run.get
    y = np.asarray(get("labels"))
    scalars = run_scalars(get("logits"), y, val_logits=get("val_logits"), val_labels=get("val_labels"),
                          n_bins=n_bins, n_boot=n_boot, ci_level=ci_level, seed=seed)
    computed = scalars.metrics
    m = {k: computed[k] for k in CORE}
    if get("features") is not None:  # imported predictions may come without features: no Recall@1 then
        m["recall_at_1"] = recall_at_k(get("features"), y, k=1)
    m.update({k: computed[k] for k in INTERVAL + AFTER_TS if k in computed})
    mapping = get("fine_to_coarse")
    if mapping is not None:
        pred = scalars.summary.pred
        names = group_names(mapping, get("coarse_names"))
        m["hierarchical_accuracy"] = hierarchical_accuracy(pred, y, mapping)
        errors = top1_error_by_group(pred, y, mapping, n_coarse=len(names))
        m.update({group_error_key(g): float(e) for g, e in zip(names, errors)})
    return m
