"""Class-level views of top-1 predictions: the confusion matrix, per-class accuracy and the most
confused class pairs. Inputs are predicted class ids, e.g. argmax of the logits (analyze_runs
passes numpy's argmax, ties to the lowest class id)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _checks


def _pred_and_labels(pred, labels, n_classes):
    y = _checks.labels(labels, np.size(labels), None, rows_of="labels")
    if y.size == 0:
        raise ValueError("labels is empty; need at least one sample")
    p = _checks.labels(pred, y.size, None, name="pred", rows_of="labels")
    if n_classes is None:
        n_classes = int(max(p.max(), y.max())) + 1
    n_classes = _checks.positive_int(n_classes, "n_classes")
    for name, a in (("labels", y), ("pred", p)):
        if a.max() >= n_classes:
            raise ValueError(f"{name} must lie in [0, {n_classes}) for {n_classes} classes; got {int(a.max())}")
    return p, y, n_classes


def confusion_matrix(pred: ArrayLike, labels: ArrayLike, *, n_classes: int | None = None) -> np.ndarray:
    """int64 (C, C) matrix M with M[t, p] = number of samples of true class t predicted as class p.

    Rows sum to the class sizes, the diagonal holds the correct predictions. `n_classes` (C)
    defaults to max(pred, labels) + 1.

    >>> confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2]).tolist()  # rows: true class, columns: predicted
    [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    """
    p, y, c = _pred_and_labels(pred, labels, n_classes)
    return np.bincount(y * c + p, minlength=c * c).reshape(c, c).astype(np.int64)


def per_class_accuracy(pred: ArrayLike, labels: ArrayLike, *, n_classes: int | None = None) -> np.ndarray:
    """float64 (C,) array: accuracy[c] = fraction in [0, 1] of the samples of true class c that
    are predicted as c (the class's recall); NaN for a class with no sample.

    >>> per_class_accuracy([0, 1, 1, 2], [0, 1, 2, 2]).tolist()
    [1.0, 1.0, 0.5]
    """
    return accuracy_of_confusion(confusion_matrix(pred, labels, n_classes=n_classes))


def accuracy_of_confusion(confusion: ArrayLike) -> np.ndarray:
    """per_class_accuracy from a (C, C) confusion matrix (rows: true class): diagonal / row sums,
    NaN for a class with no sample."""
    m = np.asarray(confusion)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 -> NaN for an absent class
        return np.diag(m) / m.sum(axis=1)


def most_confused_pairs(confusion: ArrayLike, *, k: int = 10, symmetric: bool = False) -> list[tuple[int, int, int]]:
    """The k largest off-diagonal counts of a (C, C) confusion matrix (rows: true class).

    Directed (default): tuples (true class, predicted class, count) from M[t, p], t != p, so
    "a taken for b" and "b taken for a" are separate entries. Symmetric: tuples (a, b, count)
    with a < b and count = M[a, b] + M[b, a]. Sorted by decreasing count, ties by increasing
    (first, second) class id; pairs with count 0 are left out, so fewer than k may come back.

    >>> most_confused_pairs(confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2]), k=2)  # (true, predicted, count)
    [(2, 1, 1)]
    """
    m = np.asarray(confusion)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"confusion must be a square (C, C) matrix; got shape {m.shape}")
    if not np.issubdtype(m.dtype, np.integer) or (m.size and m.min() < 0):
        raise ValueError("confusion must hold non-negative integer counts")
    k = _checks.positive_int(k, "k")
    c = m.shape[0]
    first, second = np.nonzero(np.triu(np.ones((c, c), dtype=bool), 1) if symmetric else ~np.eye(c, dtype=bool))
    counts = (m[first, second] + m[second, first]) if symmetric else m[first, second]
    keep = counts > 0
    first, second, counts = first[keep], second[keep], counts[keep]
    order = np.lexsort((second, first, -counts))[:k]  # last key sorts first: count, then ids
    return [(int(first[i]), int(second[i]), int(counts[i])) for i in order]
