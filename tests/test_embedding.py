import numpy as np
import pytest

from cskd.analysis.embedding import stratified_subsample, tsne_2d


def _clusters(n_per=100, n_classes=4, dim=20, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per)
    centers = 12.0 * np.eye(n_classes, dim)  # centres ~17 apart, unit noise: clearly separated
    return (centers[y] + rng.normal(size=(y.size, dim))).astype(np.float32), y


def _knn_accuracy(coords, y, k=5):
    d = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nbr = np.argsort(d, axis=1)[:, :k]
    votes = np.array([np.bincount(y[row], minlength=y.max() + 1).argmax() for row in nbr])
    return float(np.mean(votes == y))


def test_tsne_separates_clear_clusters_deterministically():
    # (timings belong to benchmarks/analysis.py, not to tests)
    x, y = _clusters(n_per=50)
    coords, idx = tsne_2d(x, y, seed=0)
    assert coords.dtype == np.float32 and coords.shape == (200, 2)
    assert idx.dtype == np.int64 and np.array_equal(idx, np.arange(200))
    assert _knn_accuracy(coords, y[idx]) >= 0.95
    again, _ = tsne_2d(x, y, seed=0)
    np.testing.assert_array_equal(coords, again)


def test_tsne_subsamples_to_max_points():
    x, y = _clusters(n_per=60)
    coords, idx = tsne_2d(x, y, max_points=100, seed=3)
    assert coords.shape == (100, 2) and idx.shape == (100,)
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(np.bincount(y[idx]), [25, 25, 25, 25])


def test_stratified_subsample_proportional_quotas():
    # counts 60/30/10 of N=100, max 10 -> exact quotas 6/3/1
    y = np.repeat([0, 1, 2], [60, 30, 10])
    idx = stratified_subsample(y, 10, seed=0)
    np.testing.assert_array_equal(np.bincount(y[idx]), [6, 3, 1])
    # counts 5/5/5, max 4 -> 4/3 each -> floor 1 each, the one left over to class 0 (tie)
    y = np.repeat([0, 1, 2], 5)
    np.testing.assert_array_equal(np.bincount(y[stratified_subsample(y, 4)]), [2, 1, 1])


def test_stratified_subsample_is_seeded():
    y = np.repeat(np.arange(5), 40)
    a = stratified_subsample(y, 50, seed=1)
    assert np.array_equal(a, stratified_subsample(y, 50, seed=1))
    assert not np.array_equal(a, stratified_subsample(y, 50, seed=2))
    assert len(np.unique(a)) == 50
    np.testing.assert_array_equal(stratified_subsample(y, 1000), np.arange(200))


def test_input_checks():
    x, y = _clusters(n_per=5)
    with pytest.raises(ValueError, match=r"^perplexity must be a number > 0; got 0$"):
        tsne_2d(x, y, perplexity=0)
    with pytest.raises(ValueError, match=r"^max_points must be a positive integer; got 0$"):
        tsne_2d(x, y, max_points=0)
    with pytest.raises(ValueError, match=r"^labels has 3 entries but features has 20 rows$"):
        tsne_2d(x, y[:3])
