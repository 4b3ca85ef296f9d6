"""Calibration: reliability bins, ECE (the paper's, M = 20), MCE, adaptive and class-wise ECE,
and temperature scaling.

Bin convention everywhere: M equal-width bins B_m = (m/M, (m+1)/M] for m = 0..M-1, except that
the first bin also holds 0, so every confidence in [0, 1] falls in exactly one of the M bins and
a confidence of exactly 1.0 lands in the LAST bin (there is no extra bin for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from . import _checks
from .metrics import log_softmax


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of max-softmax confidence; all arrays have length n_bins.

    lower, upper: bin edges (bin m covers (lower[m], upper[m]], and bin 0 also holds 0).
    accuracy, confidence: mean correctness and mean confidence of the bin; NaN for empty bins.
    count: number of samples in the bin (int64); counts sum to the number of samples.
    """

    lower: np.ndarray
    upper: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray
    count: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.count.sum())


def _bin_index(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin id in [0, n_bins) of each value in [0, 1] under the (lower, upper] convention."""
    inner = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    # side="left" counts the inner edges strictly below the value: a value equal to an edge goes
    # to the bin that edge closes, 1.0 to the last bin and 0.0 to the first.
    return np.searchsorted(inner, values, side="left")


def reliability_bins(probs, labels, *, n_bins: int = 20) -> ReliabilityBins:
    """Group samples into `n_bins` equal-width bins of confidence = max softmax probability.

    accuracy[m] = mean(argmax(p_i) == y_i) over the bin; confidence[m] = mean(max(p_i)) over the
    bin. Ties in argmax go to the lowest class index.
    """
    p, y = _checks.probs_and_labels(probs, labels)
    n_bins = _checks.positive_int(n_bins, "n_bins")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    b = _bin_index(conf, n_bins)
    count = np.bincount(b, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 -> NaN marks an empty bin
        acc = np.bincount(b, weights=correct, minlength=n_bins) / count
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return ReliabilityBins(edges[:-1], edges[1:], acc, mean_conf, count)


def ece_from_bins(bins: ReliabilityBins) -> float:
    """ECE of precomputed bins: sum over non-empty bins of count/n * |accuracy - confidence|."""
    full = bins.count > 0
    gap = np.abs(bins.accuracy[full] - bins.confidence[full])
    return float(np.sum(bins.count[full] / bins.count.sum() * gap))


def ece(probs, labels, *, n_bins: int = 20) -> float:
    """Expected calibration error in [0, 1] (paper §3.1): sum_m |B_m|/n * |acc(B_m) - conf(B_m)|
    over `n_bins` equal-width confidence bins (see module docstring for the edges)."""
    return ece_from_bins(reliability_bins(probs, labels, n_bins=n_bins))


def mce(probs, labels, *, n_bins: int = 20) -> float:
    """Maximum calibration error in [0, 1]: max over non-empty bins of |acc(B_m) - conf(B_m)|."""
    bins = reliability_bins(probs, labels, n_bins=n_bins)
    full = bins.count > 0
    return float(np.max(np.abs(bins.accuracy[full] - bins.confidence[full])))


def adaptive_ece(probs, labels, *, n_bins: int = 20) -> float:
    """ECE in [0, 1] over equal-mass bins: samples sorted by confidence (stable sort) and split
    into `n_bins` consecutive groups whose sizes differ by at most one (np.array_split), then
    sum_m |B_m|/n * |acc(B_m) - conf(B_m)|. Groups left empty when n_bins > n are skipped."""
    p, y = _checks.probs_and_labels(probs, labels)
    n_bins = _checks.positive_int(n_bins, "n_bins")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    order = np.argsort(conf, kind="stable")
    total = 0.0
    for group in np.array_split(order, n_bins):
        if group.size:
            total += group.size * abs(correct[group].mean() - conf[group].mean())
    return float(total / conf.size)


def classwise_ece(probs, labels, *, n_bins: int = 20) -> float:
    """Class-wise ECE in [0, 1]: (1/C) * sum_c sum_m |B_mc|/n * |mean(1[y=c]) - mean(p_c)| over
    B_mc, the samples whose probability p_c for class c falls in equal-width bin m."""
    p, y = _checks.probs_and_labels(probs, labels)
    n_bins = _checks.positive_int(n_bins, "n_bins")
    n, c = p.shape
    # One flat bincount over (class, bin) cells instead of a Python loop over classes.
    cell = np.arange(c)[None, :] * n_bins + _bin_index(p, n_bins)
    onehot = np.zeros_like(p)
    onehot[np.arange(n), y] = 1.0
    size = c * n_bins
    sum_p = np.bincount(cell.ravel(), weights=p.ravel(), minlength=size)
    sum_y = np.bincount(cell.ravel(), weights=onehot.ravel(), minlength=size)
    # |B| * |mean_y - mean_p| == |sum_y - sum_p|, and empty cells contribute 0.
    per_class = np.abs(sum_y - sum_p).reshape(c, n_bins).sum(axis=1) / n
    return float(per_class.mean())


def apply_temperature(logits, t: float) -> np.ndarray:
    """Return logits / t as float64; softmax of the result is the temperature-scaled prediction."""
    z = _checks.logits(logits)
    if isinstance(t, bool) or not np.isscalar(t) or not np.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a finite number > 0; got {t!r}")
    return z / float(t)


def fit_temperature(logits, labels, *, t_min: float = 0.01, t_max: float = 100.0) -> float:
    """Temperature T in [t_min, t_max] minimising the mean NLL of softmax(logits / T).

    Fit on held-out (validation) logits, then apply to test logits. The search is over log T
    (bounded Brent), which is smooth and treats T and 1/T symmetrically.
    """
    z, y = _checks.logits_and_labels(logits, labels)
    if not 0 < t_min < t_max:
        raise ValueError(f"need 0 < t_min < t_max; got t_min={t_min}, t_max={t_max}")
    rows = np.arange(z.shape[0])

    def loss(log_t: float) -> float:
        return float(-np.mean(log_softmax(z / np.exp(log_t))[rows, y]))

    res = minimize_scalar(loss, bounds=(np.log(t_min), np.log(t_max)), method="bounded",
                          options={"xatol": 1e-5})
    return float(np.exp(res.x))
