"""Classification metrics on raw logits: softmax, top-k error, negative log-likelihood; and the row
chunks a large (memory-mapped) logit matrix is read in."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _checks

# Logits converted to float64 at a time by the chunked passes (8 MB; a pass holds a handful of
# arrays this size): an ImageNet run's 50,000 x 1,000 logits are never held as float64 whole.
CHUNK_ELEMENTS = 1 << 20


def row_chunks(n: int, c: int, chunk_elements: int | None = None) -> list[tuple[int, int]]:
    """(start, stop) row ranges covering range(n), each of at most max(1, chunk_elements // c) rows
    (CHUNK_ELEMENTS when None), in order."""
    elements = CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
    step = max(1, elements // max(c, 1))
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def logit_rows(x: ArrayLike, name: str = "logits") -> tuple[int, int]:
    """(N, C) of a 2-D real array with at least one row and one column, checked without reading it
    whole (its values are checked chunk by chunk with `finite_chunk`)."""
    shape, dtype = np.shape(x), getattr(x, "dtype", None)
    if dtype is None:
        x = np.asarray(x)
        shape, dtype = x.shape, x.dtype
    if len(shape) != 2:
        raise ValueError(f"{name} must be a 2-D array (N, C); got shape {tuple(shape)}")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one column; got shape {tuple(shape)}")
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers; got dtype {dtype}")
    return int(shape[0]), int(shape[1])


def finite_chunk(x: ArrayLike, start: int, stop: int, name: str = "logits") -> np.ndarray:
    """Rows start:stop of `x` as float64, or a ValueError when any is NaN or infinite."""
    z = np.asarray(x[start:stop], dtype=np.float64)
    if not np.isfinite(z).all():
        raise ValueError(f"{name} contains NaN or infinite values; remove or fix those rows")
    return z


def softmax(logits: ArrayLike) -> np.ndarray:
    """Row-wise softmax of a (N, C) logit array, as float64.

    p[i, c] = exp(z[i, c] - m_i) / sum_j exp(z[i, j] - m_i) with m_i = max_j z[i, j]; subtracting
    the row maximum keeps exp() from overflowing and does not change the result.

    >>> import numpy as np
    >>> softmax(np.array([[2.0, 0.0]])).round(3).tolist()
    [[0.881, 0.119]]
    """
    z = _checks.logits(logits)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(logits: ArrayLike) -> np.ndarray:
    """Row-wise natural-log softmax of a (N, C) logit array, float64 (log-sum-exp, stable).

    >>> import numpy as np
    >>> log_softmax(np.array([[2.0, 0.0]])).round(3).tolist()
    [[-0.127, -2.127]]
    """
    z = _checks.logits(logits)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def top_k_error(logits: ArrayLike, labels: ArrayLike, *, k: int = 1) -> float:
    """Fraction in [0, 1] of samples whose label is not among the k highest scores.

    A sample counts as correct when fewer than k classes score *strictly* higher than its label,
    so ties are resolved in the label's favour (deterministic, independent of class order).
    Requires 1 <= k <= C.

    >>> import numpy as np
    >>> logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])  # 3 samples, 2 classes
    >>> labels = [0, 1, 1]
    >>> top_k_error(logits, labels), top_k_error(logits, labels, k=2)
    (0.333..., 0.0)
    """
    z, y = _checks.logits_and_labels(logits, labels)
    k = _checks.positive_int(k, "k")
    if k > z.shape[1]:
        raise ValueError(f"k must be at most the number of classes ({z.shape[1]}); got {k}")
    true_score = z[np.arange(z.shape[0]), y]
    n_higher = (z > true_score[:, None]).sum(axis=1)
    return float(np.mean(n_higher >= k))


def nll(logits: ArrayLike, labels: ArrayLike) -> float:
    """Mean negative log-likelihood, in nats: -(1/N) * sum_i log softmax(z_i)[y_i]. Range [0, inf).

    >>> import numpy as np
    >>> logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])  # 3 samples, 2 classes
    >>> labels = [0, 1, 1]
    >>> round(nll(logits, labels), 4)  # (0.127 + 0.049 + 1.313) / 3
    0.4963
    """
    z, y = _checks.logits_and_labels(logits, labels)
    return float(-np.mean(log_softmax(z)[np.arange(z.shape[0]), y]))
