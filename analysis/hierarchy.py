"""Coarse-label (hierarchy) views of fine-label predictions (paper §3.3, Fig. 4)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _checks


def _coarse(pred_fine, true_fine, fine_to_coarse, n_coarse):
    m = np.asarray(fine_to_coarse)
    if m.ndim != 1 or m.size == 0:
        raise ValueError(f"fine_to_coarse must be a non-empty 1-D array (one coarse id per fine "
                         f"label); got shape {m.shape}")
    m = _checks.labels(m, m.size, None, name="fine_to_coarse", rows_of="fine_to_coarse")
    if n_coarse is None:
        n_coarse = int(m.max()) + 1
    n_coarse = _checks.positive_int(n_coarse, "n_coarse")
    if m.max() >= n_coarse:
        raise ValueError(f"fine_to_coarse must lie in [0, {n_coarse}); got {int(m.max())}")
    t = _checks.labels(true_fine, np.size(true_fine), m.size, name="true_fine",
                       rows_of="true_fine")
    p = _checks.labels(pred_fine, t.size, m.size, name="pred_fine", rows_of="true_fine")
    if t.size == 0:
        raise ValueError("true_fine is empty; need at least one sample")
    return m[p], m[t], n_coarse


def hierarchical_confusion(pred_fine: ArrayLike, true_fine: ArrayLike, fine_to_coarse: ArrayLike, *,
                           n_coarse=None) -> np.ndarray:
    """(n_coarse, n_coarse) float64 matrix H with H[g, h] = fraction of the samples whose true
    coarse group is g whose *predicted fine label* belongs to coarse group h.

    Rows sum to 1; a row with no samples is all NaN. `fine_to_coarse[f]` is the coarse group of
    fine label f; `n_coarse` defaults to max(fine_to_coarse) + 1.
    """
    pc, tc, n_coarse = _coarse(pred_fine, true_fine, fine_to_coarse, n_coarse)
    counts = np.bincount(tc * n_coarse + pc, minlength=n_coarse * n_coarse)
    counts = counts.reshape(n_coarse, n_coarse).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty rows become NaN on purpose
        return counts / counts.sum(axis=1, keepdims=True)


def hierarchical_accuracy(pred_fine: ArrayLike, true_fine: ArrayLike, fine_to_coarse: ArrayLike) -> float:
    """Fraction in [0, 1] of samples whose predicted fine label's coarse group equals the true
    fine label's coarse group (paper §3.3).

    >>> hierarchical_accuracy([0, 1, 2, 3], [1, 0, 3, 1], [0, 0, 1, 1])  # fine 0, 1 in group 0; 2, 3 in group 1
    0.75
    """
    pc, tc, _ = _coarse(pred_fine, true_fine, fine_to_coarse, None)
    return float(np.mean(pc == tc))


def group_names(fine_to_coarse: ArrayLike, coarse_names=None) -> list[str]:
    """The coarse groups' names: `coarse_names` as text when given (non-empty), else "0", "1", ...
    up to max(fine_to_coarse)."""
    if coarse_names is not None and len(coarse_names):
        return [str(g) for g in coarse_names]
    return [str(g) for g in range(int(np.max(fine_to_coarse)) + 1)]


def group_error_key(group_name) -> str:
    """Name of the per-run metric holding one coarse group's fine-label top-1 error:
    "top1_error[<group name>]"."""
    return f"top1_error[{group_name}]"


def top1_error_by_group(pred_fine: ArrayLike, true_fine: ArrayLike, fine_to_coarse: ArrayLike, *,
                        n_coarse=None) -> np.ndarray:
    """float64 (n_coarse,) array: error[g] = fraction in [0, 1] of the samples whose true fine
    label belongs to coarse group g whose predicted FINE label is wrong (pred_fine != true_fine),
    i.e. the fine-label top-1 error within each domain (paper Fig. 4(c)); NaN for a group with no
    sample. `n_coarse` defaults to max(fine_to_coarse) + 1."""
    _, tc, n_coarse = _coarse(pred_fine, true_fine, fine_to_coarse, n_coarse)
    wrong = np.asarray(pred_fine).reshape(-1) != np.asarray(true_fine).reshape(-1)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 -> NaN for an empty group
        return np.bincount(tc, weights=wrong.astype(np.float64), minlength=n_coarse) / \
            np.bincount(tc, minlength=n_coarse)
