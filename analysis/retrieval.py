"""Recall@k on penultimate-layer features (paper §3.1, Table 6), exact L2 search with FAISS."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _checks


def recall_at_k(features: ArrayLike, labels: ArrayLike, *, k: int = 1, batch_size: int = 2048) -> float:
    """Fraction in [0, 1] of samples having at least one same-class sample among their k nearest
    neighbours (squared-L2 distance, exact search) in the same set, the sample itself excluded.

    Every sample is both a query and a database entry, so each query searches k + 1 neighbours
    and drops its own index; if its own index is not among them (possible when exact duplicates
    of it rank first), the (k+1)-th neighbour is dropped instead. Ties between equidistant
    neighbours are broken by FAISS. Queries go in batches of `batch_size` rows so that only a
    (batch_size, k + 1) result is held at a time. Requires 1 <= k <= N - 1.

    >>> import numpy as np
    >>> features = np.array([[0.0, 0], [0.1, 0], [5, 5], [5.1, 5]])
    >>> recall_at_k(features, [0, 0, 1, 1]), recall_at_k(features, [0, 1, 0, 1])
    (1.0, 0.0)
    """
    import faiss  # imported here: it is heavy and only this function needs it

    x = _checks.matrix(features, "features", what="(N, D)")
    y = _checks.labels(labels, x.shape[0], None, rows_of="features")
    k = _checks.positive_int(k, "k")
    batch_size = _checks.positive_int(batch_size, "batch_size")
    n = x.shape[0]
    if k > n - 1:
        raise ValueError(f"k must be at most N - 1 = {n - 1} (each sample's own match is "
                         f"excluded); got {k}")
    x = np.ascontiguousarray(x, dtype=np.float32)  # FAISS takes C-contiguous float32 only
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    hits = 0
    for start in range(0, n, batch_size):
        q = np.arange(start, min(start + batch_size, n))
        _, nbr = index.search(x[q], k + 1)
        keep = nbr != q[:, None]  # drop the query's own index wherever it appears
        no_self = keep.all(axis=1)
        keep[no_self, k] = False  # otherwise drop the farthest of the k + 1
        same = y[np.clip(nbr, 0, None)] == y[q][:, None]
        hits += int(np.count_nonzero((same & keep & (nbr >= 0)).any(axis=1)))
    return hits / n
