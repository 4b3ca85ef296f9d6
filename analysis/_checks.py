"""Shared input checks: each returns a clean numpy array or raises a one-line ValueError.

Arrays may be numpy arrays, sequences, or torch tensors (on any device, with or without grad:
they are detached and copied to host memory here; torch itself is never imported).
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike


def positive_int(value, name: str) -> int:
    """Return `value` as an int, or fail if it is not an integer >= 1 (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def as_array(x: ArrayLike) -> np.ndarray:
    """`x` as a numpy array; a torch tensor is detached and moved to host memory first."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def matrix(x: ArrayLike, name: str, *, what: str = "(N, C)") -> np.ndarray:
    """Return `x` as a finite 2-D float64 array with at least one row and one column."""
    a = as_array(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array {what}; got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one column; got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers; got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values; remove or fix those rows")
    return a


def logits(x: ArrayLike, name: str = "logits") -> np.ndarray:
    """Return logits as a finite float64 (N, C) array. Probabilities given as logits are refused
    where that can be detected: C >= 2 and every row in [0, 1] summing to 1 (within 1e-6), which
    logits of a real model practically never do; softmax of such "logits" would flatten them."""
    z = matrix(x, name)
    if z.shape[1] >= 2 and z.min() >= 0.0 and z.max() <= 1.0 and np.abs(z.sum(axis=1) - 1.0).max() <= 1e-6:
        raise ValueError(f"{name} look like probabilities (every row is in [0, 1] and sums to 1), not logits; "
                         f"pass the model's logits, or log(probabilities) when it only gives probabilities")
    return z


def probs(x: ArrayLike, name: str = "probs", *, atol: float = 1e-3) -> np.ndarray:
    """Return probabilities as float64 (N, C); values in [0, 1], each row summing to 1 (± atol)."""
    p = matrix(x, name)
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(f"{name} must lie in [0, 1]; got values in [{p.min():g}, {p.max():g}] "
                         "(pass softmax(logits), not logits)")
    worst = float(np.abs(p.sum(axis=1) - 1.0).max())
    if worst > atol:
        raise ValueError(f"each row of {name} must sum to 1; worst row is off by {worst:.3g} "
                         "(pass softmax(logits), not logits)")
    return p


def labels(y: ArrayLike, n_rows: int, n_classes: int | None, *, name: str = "labels",
           rows_of: str = "logits") -> np.ndarray:
    """Return integer labels as int64 (N,), checked against the row count and [0, n_classes)."""
    a = as_array(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array (N,); got shape {a.shape}")
    if a.shape[0] != n_rows:
        raise ValueError(f"{name} has {a.shape[0]} entries but {rows_of} has {n_rows} rows")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.floating) and np.all(np.mod(a, 1) == 0):
            a = a.astype(np.int64)  # integral floats (e.g. from a CSV) are accepted
        else:
            raise ValueError(f"{name} must hold integer class ids; got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if a.size and a.min() < 0:
        raise ValueError(f"{name} must be >= 0; got {int(a.min())}")
    if n_classes is not None and a.size and a.max() >= n_classes:
        raise ValueError(f"{name} must lie in [0, {n_classes}) for {n_classes} classes; "
                         f"got {int(a.max())}")
    return a


def logits_and_labels(x: ArrayLike, y: ArrayLike, *, name: str = "logits") -> tuple[np.ndarray, np.ndarray]:
    """Check a (N, C) score matrix and its (N,) labels together."""
    z = logits(x, name)
    return z, labels(y, z.shape[0], z.shape[1], rows_of=name)


def probs_and_labels(p: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Check a (N, C) probability matrix and its (N,) labels together."""
    q = probs(p)
    return q, labels(y, q.shape[0], q.shape[1], rows_of="probs")


def index(i, n: int, name: str = "i") -> int:
    """Return `i` as a row index in [0, n), or fail."""
    if isinstance(i, bool) or not isinstance(i, numbers.Integral):
        raise ValueError(f"{name} must be an integer row index; got {i!r}")
    if not 0 <= i < n:
        raise ValueError(f"{name} must lie in [0, {n}); got {i}")
    return int(i)


def nonnegative_int(value, name: str) -> int:
    """Return `value` as an int, or fail if it is not an integer >= 0 (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
    return int(value)


def open_fraction(value, name: str) -> float:
    """Return `value` as a float, or fail if it is not a real number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a number strictly between 0 and 1; got {value!r}")
    return float(value)


def confidence_and_correct(confidence: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Check per-sample confidences and correctness together: confidence a finite float64 (N,)
    array in [0, 1], correct a boolean (N,) array (bools, or integers / floats that are 0 or 1)."""
    c = as_array(confidence)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"confidence must be a non-empty 1-D array (N,); got shape {c.shape}")
    if not np.issubdtype(c.dtype, np.number) or np.issubdtype(c.dtype, np.complexfloating):
        raise ValueError(f"confidence must hold real numbers; got dtype {c.dtype}")
    c = c.astype(np.float64, copy=False)
    if not np.isfinite(c).all() or c.min() < 0.0 or c.max() > 1.0:
        raise ValueError("confidence must hold finite values in [0, 1] (max softmax probabilities)")
    k = as_array(correct)
    if k.shape != c.shape:
        raise ValueError(f"correct has shape {k.shape} but confidence has shape {c.shape}")
    if k.dtype != bool:
        if not np.issubdtype(k.dtype, np.number) or not np.isin(k, (0, 1)).all():
            raise ValueError("correct must hold booleans (or 0 / 1): whether each prediction is right")
        k = k != 0
    return c, k


KINDS = ("logits", "probs")


def scores_as_logits(x: ArrayLike, kind: str, name: str = "predictions") -> np.ndarray:
    """Model outputs (N, C) as logits: `kind` "logits" (checked as `logits`) or "probs" (checked
    as `probs`, then log-probabilities, which softmax maps back to the same probabilities; a
    probability of exactly 0 becomes log(1e-300) ≈ -690.8 so the array stays finite)."""
    if kind == "logits":
        return logits(x, name)
    if kind == "probs":
        return np.log(np.clip(probs(x, name), 1e-300, 1.0))
    raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
