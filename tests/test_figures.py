import os

import numpy as np
import pytest
from matplotlib.figure import Figure

from analysis import figures
from analysis.calibration import reliability_bins
from analysis.metrics import softmax
from analysis.misclassified import predictive_distribution

RNG = np.random.default_rng(0)
Z = RNG.normal(size=(60, 4)) * 3
Y = RNG.integers(0, 4, 60)


def _saved(fig, tmp_path, name):
    png, pdf = figures.save_figure(fig, tmp_path / name)
    assert png == str(tmp_path / f"{name}.png") and pdf == str(tmp_path / f"{name}.pdf")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(pdf, "rb") as f:
        assert f.read(4) == b"%PDF"
    assert os.path.getsize(png) > 1000
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temp files left


def test_plot_reliability_with_and_without_count_axis(tmp_path):
    bins = reliability_bins(softmax(Z), Y, n_bins=10)
    fig = Figure()
    ax, count_ax = fig.subplots(2, 1)
    assert figures.plot_reliability(ax, bins, label="ce", color="C1", count_ax=count_ax) is count_ax
    ece_pct = 100 * sum(c / 60 * abs(a - f) for c, a, f in
                        zip(bins.count, bins.accuracy, bins.confidence) if c)
    assert f"ce: accuracy (ECE {ece_pct:.2f}%)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum(p.get_height() for p in count_ax.patches) == 60  # one bar per bin, counts sum to N
    _saved(fig, tmp_path, "rel")
    fig2 = Figure()
    new_ax = figures.plot_reliability(fig2.subplots(), bins)
    assert new_ax in fig2.axes and len(fig2.axes) == 2
    _saved(fig2, tmp_path, "rel2")


def test_plot_logprob_hist(tmp_path):
    fig = Figure()
    ax = fig.subplots()
    figures.plot_logprob_hist(ax, {"a": -RNG.random(30) * 3, "b": np.array([-np.inf, -1.0, -0.1])},
                              bins=15)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a (n=30)", "b (n=3)"]
    _saved(fig, tmp_path, "hist")
    with pytest.raises(ValueError, match="^logprobs_by_run is empty; pass at least one run$"):
        figures.plot_logprob_hist(ax, {})


def test_logprob_hist_counts_share_edges_and_count_log_zero_in_the_lowest_bin():
    edges, counts = figures.logprob_hist_counts({"a": [-np.inf, -1.0, -0.5, np.nan], "b": [-0.25]}, bins=2)
    np.testing.assert_allclose(edges, [-1.0, -0.5, 0.0])
    assert counts["a"].tolist() == [2, 1] and counts["b"].tolist() == [0, 1]
    edges, counts = figures.logprob_hist_counts({"a": [0.0, -np.inf]}, bins=1)  # no value below 0
    np.testing.assert_allclose(edges, [-1e-3, 0.0])
    assert counts["a"].tolist() == [2]


def test_plot_predictive_distribution(tmp_path):
    fig = Figure()
    ax_img, ax_bar = fig.subplots(1, 2)
    dists = {run: predictive_distribution(Z * s, Y, 0, k=2) for run, s in (("ce", 1), ("cskd", 0.3))}
    image = RNG.integers(0, 255, (8, 8, 3)).astype(np.uint8)
    figures.plot_predictive_distribution(ax_img, ax_bar, image, dists, ["w", "x", "y", "z"])
    n_bars = sum(2 + (not d["true_in_topk"]) for d in dists.values())
    assert len(ax_bar.patches) == n_bars
    bold = [t.get_text() for t in ax_bar.get_yticklabels() if t.get_fontweight() == "bold"]
    assert bold == ["wxyz"[Y[0]]] * len(bold) and len(bold) >= 1
    _saved(fig, tmp_path, "pred")


def test_plot_tsne(tmp_path):
    fig = Figure()
    ax = fig.subplots()
    figures.plot_tsne(ax, RNG.normal(size=(60, 2)), Y, title="t")
    assert len(ax.collections) >= 1 and ax.collections[0].get_offsets().shape == (60, 2)
    _saved(fig, tmp_path, "tsne")


def test_plot_hierarchical_confusion(tmp_path):
    fig = Figure()
    ax = fig.subplots()
    figures.plot_hierarchical_confusion(ax, np.array([[0.75, 0.25], [0.0, 1.0]]), ["bird", "dog"])
    assert [t.get_text() for t in ax.texts] == ["75.0", "25.0", "0.0", "100.0"]
    _saved(fig, tmp_path, "hier")


def test_plot_txl_heatmap(tmp_path):
    fig = Figure()
    ax = fig.subplots()
    figures.plot_txl_heatmap(ax, [1.0, 4.0], [1.0, 2.0], np.array([[0.3, np.nan], [0.2, 0.25]]))
    assert [t.get_text() for t in ax.texts] == ["30.00", "20.00", "25.00"]  # NaN cell blank
    _saved(fig, tmp_path, "txl")
