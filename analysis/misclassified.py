"""Samples that models get wrong, and what they predict on them (paper Fig. 1b and Fig. 2)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _checks
from .metrics import log_softmax, softmax


def _wrong(logits, labels, name: str = "logits") -> np.ndarray:
    """Boolean (N,) mask: argmax (ties to the lowest class id) differs from the label."""
    z, y = _checks.logits_and_labels(logits, labels, name=name)
    return z.argmax(axis=1) != y


def misclassified_by_all(logits_by_run: dict, labels: ArrayLike) -> np.ndarray:
    """Sorted int64 row indices whose top-1 prediction is wrong in every run of `logits_by_run`
    (a dict run name -> (N, C) logits; at least one run, all with the same shape).

    >>> import numpy as np
    >>> z = {"a": np.array([[2.0, 0], [0, 2], [2, 0]]), "b": np.array([[0, 2.0], [0, 2], [2, 0]])}
    >>> misclassified_by_all(z, [1, 1, 1]).tolist()  # only row 2 is wrong in both
    [2]
    """
    if not isinstance(logits_by_run, dict) or not logits_by_run:
        raise ValueError("logits_by_run must be a non-empty dict of run name -> (N, C) logits")
    shapes = {name: np.shape(z) for name, z in logits_by_run.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"all runs must have logits of one shape; got {shapes}")
    wrong = np.ones(next(iter(shapes.values()))[0], dtype=bool)
    for name, z in logits_by_run.items():
        wrong &= _wrong(z, labels, name=f"logits of run {name!r}")
    return np.flatnonzero(wrong).astype(np.int64)


def misclassified_by_first_not_second(logits_a: ArrayLike, logits_b: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """Sorted int64 row indices wrong under `logits_a` but right under `logits_b` (top-1)."""
    if np.shape(logits_a) != np.shape(logits_b):
        raise ValueError(f"logits_a and logits_b must have one shape; got {np.shape(logits_a)} "
                         f"and {np.shape(logits_b)}")
    wrong = _wrong(logits_a, labels, "logits_a") & ~_wrong(logits_b, labels, "logits_b")
    return np.flatnonzero(wrong).astype(np.int64)


def log_probs_on(logits: ArrayLike, labels: ArrayLike, idx: ArrayLike) -> dict:
    """Natural-log softmax probabilities on rows `idx`: {"predicted": log max_c p_c,
    "true": log p_y}, each a float64 array of len(idx) in (-inf, 0] (paper Fig. 2 a/b)."""
    z, y = _checks.logits_and_labels(logits, labels)
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= z.shape[0]):
        raise ValueError(f"idx must lie in [0, {z.shape[0]}); got values in "
                         f"[{idx.min()}, {idx.max()}]")
    if idx.size == 0:  # no rows (e.g. no sample every run gets wrong): empty arrays, not an error
        return {"predicted": np.empty(0), "true": np.empty(0)}
    lp = log_softmax(z[idx])
    return {"predicted": lp.max(axis=1), "true": lp[np.arange(idx.size), y[idx]]}


def predictive_distribution(logits: ArrayLike, labels: ArrayLike, i: int, *, k: int = 5) -> dict:
    """Top-k softmax probabilities of row `i` (paper Fig. 1b).

    Returns {"classes": int64 (k,) class ids by decreasing probability (ties: lower id first),
    "probs": float64 (k,), "true_class": int, "true_prob": float, "true_in_topk": bool}.
    """
    z, y = _checks.logits_and_labels(logits, labels)
    i = _checks.index(i, z.shape[0])
    k = _checks.positive_int(k, "k")
    if k > z.shape[1]:
        raise ValueError(f"k must be at most the number of classes ({z.shape[1]}); got {k}")
    p = softmax(z[i:i + 1])[0]
    classes = np.argsort(-p, kind="stable")[:k].astype(np.int64)
    true_class = int(y[i])
    return {"classes": classes, "probs": p[classes], "true_class": true_class,
            "true_prob": float(p[true_class]), "true_in_topk": bool(true_class in classes)}


def logprob_hist_counts(logprobs_by_run: dict, *, bins: int = 30) -> tuple[np.ndarray, dict]:
    """Histogram of natural-log probabilities of several runs on shared bins (paper Fig. 2).

    Returns (edges float64 (bins + 1,), {run: int64 counts (bins,)}). The edges are equal-width,
    shared by the runs, from min(lowest finite value, -1e-3) to 0; numpy.histogram's convention
    (bins closed on the left, the last also on the right). log(0) = -inf is counted in the lowest
    bin and NaN is left out.
    """
    if not logprobs_by_run:
        raise ValueError("logprobs_by_run is empty; pass at least one run")
    bins = _checks.positive_int(bins, "bins")
    values = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in logprobs_by_run.items()}
    finite = np.concatenate([v[np.isfinite(v)] for v in values.values()])
    low = float(finite.min()) if finite.size else -1.0
    edges = np.linspace(min(low, -1e-3), 0.0, bins + 1)
    counts = {k: np.histogram(np.clip(v[~np.isnan(v)], edges[0], 0.0), bins=edges)[0].astype(np.int64)
              for k, v in values.items()}
    return edges, counts
