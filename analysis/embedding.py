"""2-D t-SNE of penultimate-layer features (paper Fig. 3), fast enough for 10k points on 2 cores."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _checks

TSNE_MAX_POINTS = 10_000  # points a t-SNE embeds at most (a stratified, seeded subsample of larger sets)

# Optimisation schedule. openTSNE's defaults are 250 exaggerated + 500 normal iterations; on
# 10k PCA-50 points with FFT gradients the shorter 125 + 250 schedule gives the same kNN
# structure at about half the time (≈12 s on 2 cores instead of ≈23 s).
EXAGGERATION_ITERS = 125
MAIN_ITERS = 250
PCA_DIMS = 50
# Below this many points Barnes-Hut gradients are faster than FFT (whose fixed grid cost
# dominates: 200 points take ≈0.2 s with BH and ≈4 s with FFT; at 10k FFT is ≈2x faster).
# BH then runs single-threaded: on small inputs thread start/sync costs more than it saves
# (120 points: 0.2 s with 1 thread, 1.8 s with 2 on a busy 2-core machine).
FFT_MIN_POINTS = 5000


def stratified_subsample(labels: ArrayLike, max_points: int, *, seed: int = 0) -> np.ndarray:
    """Sorted int64 indices of min(N, max_points) rows, each class keeping its share.

    Class c gets floor(max_points * n_c / N) rows, plus one for the classes with the largest
    remainders (ties: lower class id) until the total is max_points; rows within a class are
    drawn without replacement by numpy's default_rng(seed).
    """
    y = np.asarray(labels)
    max_points = _checks.positive_int(max_points, "max_points")
    n = y.shape[0]
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    exact = max_points * counts / n
    quota = np.floor(exact).astype(np.int64)
    order = np.lexsort((np.arange(classes.size), -(exact - quota)))  # largest remainder first
    quota[order[: max_points - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(inverse == j), size=q, replace=False)
              for j, q in enumerate(quota) if q]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def tsne_2d(features: ArrayLike, labels: ArrayLike, *, max_points: int = TSNE_MAX_POINTS, seed: int = 0,
            perplexity: float = 30, n_jobs: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """2-D t-SNE embedding of (N, D) features.

    Steps: stratified subsample to at most `max_points` rows (seeded); PCA to min(50, D, M)
    dims; openTSNE with exact kNN affinities (up to 20k points), PCA initialisation, 125
    exaggerated + 250 normal iterations, FFT-interpolated gradients on `n_jobs` threads from
    5000 points on and single-threaded Barnes-Hut below. scikit-learn's Barnes-Hut TSNE is the
    fallback when openTSNE is not installed.
    The perplexity is lowered to (M - 1) / 3 for tiny inputs, as t-SNE requires.

    Returns (coords float32 (M, 2), indices int64 (M,) of the chosen rows, sorted). The same
    inputs and seed give the same output.
    """
    x = _checks.matrix(features, "features", what="(N, D)")
    y = _checks.labels(labels, x.shape[0], None, rows_of="features")
    if not np.isscalar(perplexity) or not perplexity > 0:
        raise ValueError(f"perplexity must be a number > 0; got {perplexity!r}")
    n_jobs = _checks.positive_int(n_jobs, "n_jobs")
    idx = stratified_subsample(y, max_points, seed=seed)
    if idx.size < 4:
        raise ValueError(f"t-SNE needs at least 4 points; got {idx.size}")
    x = x[idx]
    perplexity = float(min(perplexity, (idx.size - 1) / 3))
    dims = min(PCA_DIMS, x.shape[1], x.shape[0])
    if dims < x.shape[1]:
        from sklearn.decomposition import PCA

        x = PCA(dims, svd_solver="randomized", random_state=seed).fit_transform(x)
    try:
        import openTSNE
    except ImportError:
        openTSNE = None
    if openTSNE is not None:
        fft = idx.size >= FFT_MIN_POINTS
        model = openTSNE.TSNE(
            perplexity=perplexity, n_iter=MAIN_ITERS, early_exaggeration_iter=EXAGGERATION_ITERS,
            negative_gradient_method="fft" if fft else "bh",
            neighbors="exact" if idx.size <= 20000 else "auto", initialization="pca",
            n_jobs=n_jobs if fft else 1, random_state=seed, verbose=False)
        coords = np.asarray(model.fit(x))
    else:
        from sklearn.manifold import TSNE

        # scikit-learn fixes 250 exaggerated iterations; 500 in all leaves 250 normal ones.
        coords = TSNE(2, perplexity=perplexity, init="pca", random_state=seed,
                      max_iter=500).fit_transform(x)
    return coords.astype(np.float32), idx
