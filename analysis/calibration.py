"""Calibration: reliability bins (equal-width or equal-mass), ECE (the paper's, M = N_BINS = 20), MCE,
adaptive and class-wise ECE, a bootstrap interval for ECE, the Brier score, over-confidence and
temperature scaling.

confidence = max softmax probability of a sample; correct = its argmax (ties to the lowest class
id) equals the label.

Equal-width ("uniform") bins, the paper's convention: M bins B_m = (m/M, (m+1)/M] for m = 0..M-1,
except that the first bin also holds 0, so every confidence in [0, 1] falls in exactly one of the
M bins and a confidence of exactly 1.0 lands in the LAST bin (there is no extra bin for it).

Equal-mass ("quantile") bins: the samples sorted by confidence (stable sort, so tied confidences
keep their input order) are cut into M consecutive groups whose sizes differ by at most one, the
larger groups first (numpy.array_split). Bin m's upper edge is the largest confidence in it, its
lower edge the previous bin's upper edge (0 for the first bin), so the bins tile
[0, max confidence] and each sample's confidence c satisfies lower <= c <= upper (lower < c unless
tied confidences straddle a cut, which are then split between two bins by their input order).
When M > N the last M - N bins are empty, with both edges at the largest confidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from . import _checks
from .metrics import finite_chunk, log_softmax, logit_rows, row_chunks

N_BINS = 20  # confidence bins of ECE / MCE and the reliability diagrams: the paper's M
N_BOOT = 1000  # bootstrap resamples of the ECE's interval
CI_LEVEL = 0.95  # coverage of that interval
STRATEGIES = ("uniform", "quantile")
# Bootstrap resamples are drawn this many sample indices at a time (bounds memory, ~32 MB int64).
_BOOT_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True, eq=False)
class ReliabilityBins:
    """Per-bin statistics of max-softmax confidence; all arrays have length n_bins.

    lower, upper: bin edges (see the module docstring for each strategy's convention).
    accuracy, confidence: mean correctness and mean confidence of the bin, in [0, 1]; NaN for
    empty bins. count: number of samples in the bin (int64); counts sum to the number of samples.
    strategy: "uniform" (equal-width) or "quantile" (equal-mass).
    """

    lower: np.ndarray
    upper: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray
    count: np.ndarray
    strategy: str = "uniform"

    @property
    def n_samples(self) -> int:
        return int(self.count.sum())

    @property
    def edges(self) -> np.ndarray:
        """The n_bins + 1 bin edges: lower[0], then every upper."""
        return np.concatenate([self.lower[:1], self.upper])

    @property
    def gap(self) -> np.ndarray:
        """confidence - accuracy per bin (positive: over-confident), NaN for empty bins."""
        return self.confidence - self.accuracy


def _bin_index(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin id in [0, n_bins) of each value in [0, 1] under the (lower, upper] convention."""
    inner = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    # side="left" counts the inner edges strictly below the value: a value equal to an edge goes
    # to the bin that edge closes, 1.0 to the last bin and 0.0 to the first.
    return np.searchsorted(inner, values, side="left")


def _equal_mass_index(conf: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin id per sample, lower edges, upper edges) of equal-mass bins (module docstring)."""
    n = conf.size
    sizes = np.full(n_bins, n // n_bins, dtype=np.int64)
    sizes[: n % n_bins] += 1  # numpy.array_split's sizes: the larger groups first
    order = np.argsort(conf, kind="stable")
    b = np.empty(n, dtype=np.int64)
    b[order] = np.repeat(np.arange(n_bins), sizes)
    ends = np.cumsum(sizes)
    # An empty bin (only when n_bins > n, at the end) gets the largest confidence as both edges.
    upper = conf[order][np.maximum(ends, 1) - 1]
    lower = np.concatenate([[0.0], upper[:-1]])
    return b, lower, upper


def confidence_and_correctness(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample (confidence, correct): confidence[i] = max_c p[i, c], float64 in [0, 1];
    correct[i] = (argmax_c p[i, c] == y_i), bool, ties in argmax going to the lowest class id.

    Cache these two arrays to recompute bins for any bin count or strategy with
    `reliability_bins_from_confidence` without recomputing a softmax.
    """
    p, y = _checks.probs_and_labels(probs, labels)
    return p.max(axis=1), p.argmax(axis=1) == y


def reliability_bins_from_confidence(confidence: ArrayLike, correct: ArrayLike, *, n_bins: int = N_BINS,
                                     strategy: str = "uniform") -> ReliabilityBins:
    """Reliability bins from per-sample confidence (N,) in [0, 1] and correctness (N,) bool.

    accuracy[m] = mean(correct) and confidence[m] = mean(confidence) over the samples of bin m;
    bins are equal-width ("uniform") or equal-mass ("quantile") as defined in the module docstring.
    """
    conf, right = _checks.confidence_and_correct(confidence, correct)
    n_bins = _checks.positive_int(n_bins, "n_bins")
    if strategy == "uniform":
        b = _bin_index(conf, n_bins)
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        lower, upper = edges[:-1], edges[1:]
    elif strategy == "quantile":
        b, lower, upper = _equal_mass_index(conf, n_bins)
    else:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}")
    count = np.bincount(b, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 -> NaN marks an empty bin
        acc = np.bincount(b, weights=right.astype(np.float64), minlength=n_bins) / count
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
    return ReliabilityBins(lower, upper, acc, mean_conf, count, strategy)


def reliability_bins(probs: ArrayLike, labels: ArrayLike, *, n_bins: int = N_BINS,
                     strategy: str = "uniform") -> ReliabilityBins:
    """Group samples into `n_bins` bins of confidence = max softmax probability, equal-width
    ("uniform", the paper's) or equal-mass ("quantile"); see the module docstring for the edges.

    accuracy[m] = mean(argmax(p_i) == y_i) over the bin; confidence[m] = mean(max(p_i)) over the
    bin. Ties in argmax go to the lowest class index.

    >>> import numpy as np
    >>> from analysis.metrics import softmax
    >>> logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])  # 3 samples, 2 classes
    >>> probs = softmax(logits)  # confidences 0.881, 0.953 (right) and 0.731 (wrong: label 1)
    >>> labels = [0, 1, 1]
    >>> bins = reliability_bins(probs, labels, n_bins=4)
    >>> bins.count.tolist(), bins.accuracy[2:].tolist()  # (0.5, 0.75] and (0.75, 1]
    ([0, 0, 1, 2], [0.0, 1.0])
    """
    conf, right = confidence_and_correctness(probs, labels)
    return reliability_bins_from_confidence(conf, right, n_bins=n_bins, strategy=strategy)


def ece_from_bins(bins: ReliabilityBins) -> float:
    """ECE of precomputed bins, in [0, 1]: sum over non-empty bins of count/n * |accuracy - confidence|."""
    full = bins.count > 0
    gap = np.abs(bins.accuracy[full] - bins.confidence[full])
    return float(np.sum(bins.count[full] / bins.count.sum() * gap))


def mce_from_bins(bins: ReliabilityBins) -> float:
    """MCE of precomputed bins, in [0, 1]: max over non-empty bins of |accuracy - confidence|."""
    full = bins.count > 0
    return float(np.max(np.abs(bins.accuracy[full] - bins.confidence[full])))


def ece(probs: ArrayLike, labels: ArrayLike, *, n_bins: int = N_BINS) -> float:
    """Expected calibration error in [0, 1] (paper §3.1): sum_m |B_m|/n * |acc(B_m) - conf(B_m)|
    over `n_bins` equal-width confidence bins (see module docstring for the edges).

    >>> import numpy as np
    >>> from analysis.metrics import softmax
    >>> logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])  # 3 samples, 2 classes
    >>> probs = softmax(logits)  # confidences 0.881, 0.953 (right) and 0.731 (wrong: label 1)
    >>> labels = [0, 1, 1]
    >>> round(ece(probs, labels), 4)  # (0.119 + 0.047 + 0.731) / 3: each in its own bin
    0.2992
    """
    return ece_from_bins(reliability_bins(probs, labels, n_bins=n_bins))


def mce(probs: ArrayLike, labels: ArrayLike, *, n_bins: int = N_BINS) -> float:
    """Maximum calibration error in [0, 1]: max over non-empty equal-width bins of |acc(B_m) - conf(B_m)|.

    >>> import numpy as np
    >>> from analysis.metrics import softmax
    >>> logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])  # 3 samples, 2 classes
    >>> probs = softmax(logits)  # confidences 0.881, 0.953 (right) and 0.731 (wrong: label 1)
    >>> labels = [0, 1, 1]
    >>> round(mce(probs, labels), 4)  # the wrong sample's bin: |0 - 0.731|
    0.7311
    """
    return mce_from_bins(reliability_bins(probs, labels, n_bins=n_bins))


def adaptive_ece(probs: ArrayLike, labels: ArrayLike, *, n_bins: int = N_BINS) -> float:
    """ECE in [0, 1] over equal-mass bins: samples sorted by confidence (stable sort) and split
    into `n_bins` consecutive groups whose sizes differ by at most one (np.array_split), then
    sum_m |B_m|/n * |acc(B_m) - conf(B_m)|. Groups left empty when n_bins > n are skipped.
    Equals ece_from_bins(reliability_bins(..., strategy="quantile")).

    >>> import numpy as np
    >>> from analysis.metrics import softmax
    >>> logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])  # 3 samples, 2 classes
    >>> probs = softmax(logits)  # confidences 0.881, 0.953 (right) and 0.731 (wrong: label 1)
    >>> labels = [0, 1, 1]
    >>> round(adaptive_ece(probs, labels, n_bins=2), 4)  # bins {0.731, 0.881}, {0.953}
    0.2198
    """
    return ece_from_bins(reliability_bins(probs, labels, n_bins=n_bins, strategy="quantile"))


def classwise_ece(probs: ArrayLike, labels: ArrayLike, *, n_bins: int = N_BINS) -> float:
    """Class-wise ECE in [0, 1]: (1/C) * sum_c sum_m |B_mc|/n * |mean(1[y=c]) - mean(p_c)| over
    B_mc, the samples whose probability p_c for class c falls in equal-width bin m.

    >>> import numpy as np
    >>> from analysis.metrics import softmax
    >>> logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])  # 3 samples, 2 classes
    >>> probs = softmax(logits)  # confidences 0.881, 0.953 (right) and 0.731 (wrong: label 1)
    >>> labels = [0, 1, 1]
    >>> round(classwise_ece(probs, labels), 4)
    0.2992
    """
    p, y = _checks.probs_and_labels(probs, labels)
    n_bins = _checks.positive_int(n_bins, "n_bins")
    return classwise_ece_of_cells(*classwise_cells(p, y, n_bins), n=p.shape[0], n_bins=n_bins)


def classwise_cells(p: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-wise ECE's sums over some rows of probabilities p (R, C) and labels y (R,), already
    checked: (sum_p, sum_y), flat float64 arrays of C * n_bins cells, cell c * n_bins + m summing
    p_c and 1[y = c] over the rows whose p_c falls in equal-width bin m. Sums over row chunks add
    up to the sums over all rows (so classwise_ece_of_cells can be fed chunk by chunk)."""
    r, c = p.shape
    # One flat bincount over (class, bin) cells instead of a Python loop over classes.
    cell = (np.arange(c)[None, :] * n_bins + _bin_index(p, n_bins)).ravel()
    onehot = np.zeros_like(p)
    onehot[np.arange(r), y] = 1.0
    size = c * n_bins
    return (np.bincount(cell, weights=p.ravel(), minlength=size),
            np.bincount(cell, weights=onehot.ravel(), minlength=size))


def classwise_ece_of_cells(sum_p: np.ndarray, sum_y: np.ndarray, *, n: int, n_bins: int) -> float:
    """Class-wise ECE from the cell sums of classwise_cells over all n samples."""
    # |B| * |mean_y - mean_p| == |sum_y - sum_p|, and empty cells contribute 0.
    per_class = np.abs(sum_y - sum_p).reshape(-1, n_bins).sum(axis=1) / n
    return float(per_class.mean())


def ece_bootstrap_ci(probs: ArrayLike, labels: ArrayLike, *, n_bins: int = N_BINS, n_boot: int = N_BOOT,
                     level: float = CI_LEVEL,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval (low, high), in [0, 1], for the equal-width ECE of `ece`.

    Each of the `n_boot` replicates draws N samples with replacement (numpy default_rng(seed)) and
    computes their ECE with the same fixed bin edges; the interval is the (1 - level)/2 and
    (1 + level)/2 quantiles of the replicate ECEs (numpy.quantile, linear interpolation). The
    result is a deterministic function of the inputs, n_bins, n_boot, level and seed.

    >>> import numpy as np
    >>> from analysis.metrics import softmax
    >>> logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])  # 3 samples, 2 classes
    >>> probs = softmax(logits)  # confidences 0.881, 0.953 (right) and 0.731 (wrong: label 1)
    >>> labels = [0, 1, 1]
    >>> low, high = ece_bootstrap_ci(probs, labels, n_boot=100)
    >>> bool(low <= ece(probs, labels) <= high)
    True
    """
    conf, right = confidence_and_correctness(probs, labels)
    return ece_bootstrap_ci_from_confidence(conf, right, n_bins=n_bins, n_boot=n_boot, level=level, seed=seed)


def ece_bootstrap_ci_from_confidence(confidence: ArrayLike, correct: ArrayLike, *, n_bins: int = N_BINS,
                                     n_boot: int = N_BOOT,
                                     level: float = CI_LEVEL, seed: int = 0) -> tuple[float, float]:
    """`ece_bootstrap_ci` from per-sample confidence (N,) in [0, 1] and correctness (N,) bool
    (see confidence_and_correctness): the same replicates and interval, without the (N, C)
    probabilities."""
    conf, right = _checks.confidence_and_correct(confidence, correct)
    n_bins = _checks.positive_int(n_bins, "n_bins")
    n_boot = _checks.positive_int(n_boot, "n_boot")
    level = _checks.open_fraction(level, "level")
    n = conf.size
    b = _bin_index(conf, n_bins)
    diff = right - conf  # |sum over a bin of (correct - conf)| / n is the bin's ECE term
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // n)
    eces = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        reps = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(reps, n))
        cell = (np.arange(reps)[:, None] * n_bins + b[idx]).ravel()
        sums = np.bincount(cell, weights=diff[idx].ravel(), minlength=reps * n_bins)
        eces[start:start + reps] = np.abs(sums.reshape(reps, n_bins)).sum(axis=1) / n
    low, high = np.quantile(eces, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def brier_score(probs: ArrayLike, labels: ArrayLike) -> float:
    """Multi-class Brier score in [0, 2]: (1/N) sum_i sum_c (p_ic - 1[y_i = c])^2, i.e. the squared
    L2 distance between each predicted distribution and the one-hot label, summed over the C
    classes and averaged over the N samples (0: certain and right; 2: certain and wrong).

    >>> import numpy as np
    >>> from analysis.metrics import softmax
    >>> logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])  # 3 samples, 2 classes
    >>> probs = softmax(logits)  # confidences 0.881, 0.953 (right) and 0.731 (wrong: label 1)
    >>> labels = [0, 1, 1]
    >>> round(brier_score(probs, labels), 4)  # (0.028 + 0.004 + 1.069) / 3
    0.3673
    """
    p, y = _checks.probs_and_labels(probs, labels)
    return brier_sum(p, y) / p.shape[0]


def brier_sum(p: np.ndarray, y: np.ndarray) -> float:
    """sum_i sum_c (p_ic - 1[y_i = c])^2 over some rows of checked probabilities (R, C) and labels
    (R,): brier_score times R; sums over row chunks add up."""
    # sum_c (p_c - 1[y=c])^2 = sum_c p_c^2 - 2 p_y + 1
    return float(np.sum((p * p).sum(axis=1) - 2.0 * p[np.arange(p.shape[0]), y] + 1.0))


def overconfidence(probs: ArrayLike, labels: ArrayLike) -> float:
    """Mean confidence minus accuracy, in [-1, 1]: (1/N) sum_i max_c p_ic - (1/N) sum_i
    1[argmax_c p_ic = y_i]. Positive: over-confident on average; negative: under-confident.
    Equals sum_m |B_m|/n * (conf(B_m) - acc(B_m)) for any binning (the signed ECE).

    >>> import numpy as np
    >>> from analysis.metrics import softmax
    >>> logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])  # 3 samples, 2 classes
    >>> probs = softmax(logits)  # confidences 0.881, 0.953 (right) and 0.731 (wrong: label 1)
    >>> labels = [0, 1, 1]
    >>> round(overconfidence(probs, labels), 4)  # mean confidence 0.855 - accuracy 0.667
    0.1881
    """
    return overconfidence_from_confidence(*confidence_and_correctness(probs, labels))


def overconfidence_from_confidence(confidence: ArrayLike, correct: ArrayLike) -> float:
    """overconfidence from per-sample max probabilities (N,) and correctness (N,) already computed."""
    return float(np.mean(confidence) - np.mean(correct))


def apply_temperature(logits: ArrayLike, t: float) -> np.ndarray:
    """Return logits / t as float64; softmax of the result is the temperature-scaled prediction.

    >>> import numpy as np
    >>> apply_temperature(np.array([[2.0, 0.0]]), 2.0).tolist()  # logits / T
    [[1.0, 0.0]]
    """
    z = _checks.logits(logits)
    if isinstance(t, bool) or not np.isscalar(t) or not np.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a finite number > 0; got {t!r}")
    return z / float(t)


def fit_temperature(logits: ArrayLike, labels: ArrayLike, *, t_min: float = 0.01, t_max: float = 100.0,
                    chunk_elements: int | None = None) -> float:
    """Temperature T in [t_min, t_max] minimising the mean NLL of softmax(logits / T).

    Fit on held-out (validation) logits, then apply to test logits. The search is over log T
    (bounded Brent, xatol 1e-5), which is smooth and treats T and 1/T symmetrically. The logits
    are read in row chunks (analysis.metrics.row_chunks), so a large memory-mapped validation set
    is never converted to float64 as a whole.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(size=(500, 3)) * 4
    >>> labels = np.where(rng.random(500) < 0.3, rng.integers(0, 3, 500), logits.argmax(1))  # 30 % noise
    >>> fit_temperature(logits, labels) > 1  # over-confident logits: softened by T > 1
    True
    """
    from scipy.optimize import minimize_scalar  # here: importing the constants above stays light

    n, c = logit_rows(logits)
    y = _checks.labels(labels, n, c)
    if not 0 < t_min < t_max:
        raise ValueError(f"need 0 < t_min < t_max; got t_min={t_min}, t_max={t_max}")
    chunks = row_chunks(n, c, chunk_elements)

    def loss(log_t: float) -> float:
        t, total = math.exp(log_t), 0.0
        for s, e in chunks:
            lp = log_softmax(finite_chunk(logits, s, e) / t)
            total += float(np.sum(lp[np.arange(e - s), y[s:e]]))
        return -total / n

    res = minimize_scalar(loss, bounds=(math.log(t_min), math.log(t_max)), method="bounded",
                          options={"xatol": 1e-5})
    return float(math.exp(res.x))
