"""Reliability, log-probability and predictive-distribution displays: the values they hold equal an
independent computation, plot() draws them on given axes (Agg), and frame() holds what is drawn."""

import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch
from scipy.special import log_softmax as scipy_log_softmax
from scipy.special import softmax as scipy_softmax

from cskd.analysis.displays import (
    LogProbDisplay,
    PredictiveDistributionDisplay,
    ReliabilityDisplay,
    overlay,
    side_by_side,
)
from cskd.analysis.figures import GT_COLOR, run_color

RNG = np.random.default_rng(0)
N, C = 200, 5
Y = RNG.integers(0, C, N)
Z_CE = RNG.normal(size=(N, C)) * 3.0
Z_KD = Z_CE * 0.4 + RNG.normal(size=(N, C))
for _a in (Y, Z_CE, Z_KD):
    _a.flags.writeable = False  # shared by every test: a display writing into its inputs would fail here
NAMES = ["w", "x", "y", "z", "v"]


def loop_bins(z, y, m):
    """Reference reliability bins by explicit loops: bin of confidence c is ceil(c * m) - 1, 0 for c = 0."""
    p = scipy_softmax(z, axis=1)
    count, right, conf = np.zeros(m), np.zeros(m), np.zeros(m)
    for row, label in zip(p, y):
        c = row.max()
        b = max(0, math.ceil(c * m) - 1)
        count[b] += 1
        right[b] += int(np.argmax(row) == label)
        conf[b] += c
    with np.errstate(invalid="ignore"):
        return count, right / count, conf / count


# --- ReliabilityDisplay ------------------------------------------------------------------------


def test_reliability_display_holds_the_loop_computed_bins_ece_and_mce():
    d = ReliabilityDisplay.from_logits(Z_CE, Y, n_bins=10, name="ce")
    count, acc, conf = loop_bins(Z_CE, Y, 10)
    np.testing.assert_array_equal(d.bins.count, count)
    np.testing.assert_allclose(d.bins.accuracy, acc)
    np.testing.assert_allclose(d.bins.confidence, conf)
    full = count > 0
    assert d.ece == pytest.approx(sum(count[full] / N * np.abs(acc[full] - conf[full])))
    assert d.mce == pytest.approx(np.max(np.abs(acc[full] - conf[full])))
    p = scipy_softmax(Z_CE, axis=1)
    assert d.overconfidence == pytest.approx(p.max(1).mean() - np.mean(p.argmax(1) == Y))
    assert d.n_samples == N and d.name == "ce"
    assert d.summary == f"ECE {100 * d.ece:.2f}%, MCE {100 * d.mce:.2f}%"


def test_reliability_display_constructors_agree():
    p = scipy_softmax(Z_CE, axis=1)
    a = ReliabilityDisplay.from_probs(p, Y, n_bins=7, strategy="quantile")
    b = ReliabilityDisplay.from_confidence(p.max(1), p.argmax(1) == Y, n_bins=7, strategy="quantile")
    c = ReliabilityDisplay.from_logits(Z_CE, Y, n_bins=7, strategy="quantile")
    for d in (b, c):
        np.testing.assert_allclose(d.bins.confidence, a.bins.confidence)
        np.testing.assert_array_equal(d.bins.count, a.bins.count)
        assert d.ece == pytest.approx(a.ece)
    assert a.bins.strategy == "quantile" and a.bins.count.tolist() == [29] * 4 + [28] * 3  # equal mass


def test_reliability_frame_matches_the_bins():
    d = ReliabilityDisplay.from_logits(Z_CE, Y, n_bins=10, name="ce")
    f = d.frame(order=2)
    assert list(f.columns) == ["run", "label", "order", "color", "strategy", "bin", "lower", "upper", "count",
                               "accuracy", "confidence", "gap", "ece", "mce"]
    assert len(f) == 10 and set(f["run"]) == {"ce"} and set(f["label"]) == {f"ce: {d.summary}"}
    assert set(f["order"]) == {2} and set(f["color"]) == {run_color(2)}
    for col in ("lower", "upper", "count", "accuracy", "confidence"):
        np.testing.assert_array_equal(f[col].to_numpy(), getattr(d.bins, col))
    np.testing.assert_allclose(f["gap"], d.bins.confidence - d.bins.accuracy)
    assert set(f["ece"]) == {d.ece} and set(f["mce"]) == {d.mce}
    both = ReliabilityDisplay.frames([d, ReliabilityDisplay.from_logits(Z_KD, Y, n_bins=10, name="kd")])
    assert both["run"].tolist() == ["ce"] * 10 + ["kd"] * 10
    assert both["order"].tolist() == [0] * 10 + [1] * 10


def test_reliability_plot_draws_bars_gap_diagonal_and_counts_on_given_axes():
    d = ReliabilityDisplay.from_logits(Z_CE, Y, n_bins=10, name="ce")
    ax, count_ax = Figure().subplots(2, 1)
    assert d.plot(ax, count_ax=count_ax, color="C1") == (ax, count_ax)
    full = int(np.count_nonzero(d.bins.count))
    assert len(ax.patches) == 2 * full  # an accuracy bar and a gap bar per non-empty bin
    np.testing.assert_allclose([p.get_height() for p in ax.patches[:full]], d.bins.accuracy[d.bins.count > 0])
    assert sum(p.get_height() for p in count_ax.patches) == N
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"accuracy", "gap: mean confidence − accuracy",
                                                                   "perfect calibration"}
    assert ax.get_title() == f"ce: {d.summary}"


def test_reliability_plot_makes_its_own_axes_log_counts_and_lines():
    d = ReliabilityDisplay.from_logits(Z_CE, Y, n_bins=10)
    ax, count_ax = d.plot(log_counts=True)
    assert count_ax.get_yscale() == "log" and ax.figure is count_ax.figure
    fig = Figure()
    ax, count_ax = d.plot(fig.subplots())  # a counts axis is appended under the given axes
    assert len(fig.axes) == 2 and count_ax in fig.axes
    q = ReliabilityDisplay.from_logits(Z_CE, Y, n_bins=6, strategy="quantile")
    ax, _ = q.plot()  # equal-mass bins default to markers on (mean confidence, accuracy)
    line = ax.lines[0]
    np.testing.assert_allclose(line.get_xdata(), q.bins.confidence)
    np.testing.assert_allclose(line.get_ydata(), q.bins.accuracy)
    with pytest.raises(ValueError, match="^kind must be 'bars' or 'lines'; got 'dots'$"):
        q.plot(kind="dots")


@pytest.mark.parametrize("kind", ["bars", "lines"])
def test_overlay_draws_every_run_in_its_colour(kind):
    ds = [ReliabilityDisplay.from_logits(z, Y, n_bins=10, name=n) for n, z in (("ce", Z_CE), ("cskd", Z_KD))]
    ax, count_ax = overlay(ds, kind=kind, log_counts=True)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[:2] == [f"ce: {ds[0].summary}", f"cskd: {ds[1].summary}"]
    assert any(t.startswith("dotted: gap = mean confidence − accuracy") for t in texts)
    for j, d in enumerate(ds):
        full = d.bins.count > 0
        drawn = [line for line in ax.lines if line.get_color() == run_color(j)]
        assert any(np.allclose(line.get_xdata(), d.bins.confidence[full]) for line in drawn)
        gaps = [c for c in ax.collections if np.allclose(c.get_color()[0][:3], _rgb(run_color(j)))]
        assert len(gaps) == 1 and len(gaps[0].get_segments()) == full.sum()  # one gap segment per bin
    steps = [p for p in count_ax.patches if isinstance(p, StepPatch)]
    assert len(steps) == 2 and count_ax.get_yscale() == "log"
    if kind == "bars":
        assert len([p for p in ax.patches if isinstance(p, StepPatch)]) == 2


def _rgb(hex_color):
    from matplotlib.colors import to_rgb

    return to_rgb(hex_color)


def test_side_by_side_one_panel_per_run():
    ds = [ReliabilityDisplay.from_logits(z, Y, n_bins=5, name=n) for n, z in (("ce", Z_CE), ("cskd", Z_KD))]
    fig = side_by_side(ds)
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes[:2]] == [f"ce\n{ds[0].summary}", f"cskd\n{ds[1].summary}"]
    assert len(fig.legends) == 1  # one legend for all panels
    with pytest.raises(ValueError, match="^displays is empty"):
        side_by_side([])


# --- LogProbDisplay ----------------------------------------------------------------------------


def test_logprob_display_counts_equal_an_independent_histogram():
    runs = {"ce": Z_CE, "cskd": Z_KD}
    d = LogProbDisplay.from_logits(runs, Y, bins=8)
    wrong = (Z_CE.argmax(1) != Y) & (Z_KD.argmax(1) != Y)
    np.testing.assert_array_equal(d.rows, np.flatnonzero(wrong))
    assert d.n_samples == wrong.sum() >= 10 and not d.too_few
    assert d.title == f"{wrong.sum()} samples misclassified by every run"
    lp = {n: scipy_log_softmax(z[wrong], axis=1) for n, z in runs.items()}
    values = {"predicted": {n: v.max(1) for n, v in lp.items()},
              "true": {n: v[np.arange(v.shape[0]), Y[wrong]] for n, v in lp.items()}}
    for kind, by_run in values.items():
        low = min(v.min() for v in by_run.values())
        edges = np.linspace(low, 0.0, 9)
        np.testing.assert_allclose(d.edges[kind], edges)
        for name, v in by_run.items():
            np.testing.assert_array_equal(d.counts[kind][name], np.histogram(v, bins=edges)[0])


def test_logprob_frame_and_plot():
    d = LogProbDisplay.from_logits({"ce": Z_CE, "cskd": Z_KD}, Y, bins=8)
    f = d.frame()
    assert len(f) == 2 * 2 * 8  # kinds x runs x bins
    part = f[(f["kind"] == "true") & (f["run"] == "cskd")]
    np.testing.assert_array_equal(part["count"], d.counts["true"]["cskd"])
    np.testing.assert_allclose(part["lower"], d.edges["true"][:-1])
    assert set(part["order"]) == {1} and set(part["color"]) == {run_color(1)}
    assert set(f["of"]) == {"predicted class", "ground-truth class"}
    axes = Figure().subplots(1, 2)
    ax_pred, ax_true = d.plot(axes)
    n = d.n_samples
    assert [t.get_text() for t in ax_true.get_legend().get_texts()] == [f"ce (n={n})", f"cskd (n={n})"]
    assert ax_pred.figure.get_suptitle() == d.title


def test_logprob_with_too_few_samples_says_so_and_draws_no_bars():
    d = LogProbDisplay.from_logits({"ce": Z_CE}, Y, rows=[0, 1, 2], description="picked")
    assert d.too_few and d.n_samples == 3
    assert d.title == "only 3 samples picked (fewer than 10): histograms not drawn"
    assert d.frame().empty and list(d.frame().columns)[:3] == ["run", "order", "color"]
    ax_pred, ax_true = d.plot()
    assert not ax_pred.patches and not ax_true.patches
    assert ax_pred.figure.get_suptitle() == d.title
    assert not LogProbDisplay.from_logits({"ce": Z_CE}, Y, rows=[0, 1, 2], min_samples=3).too_few


# --- PredictiveDistributionDisplay -------------------------------------------------------------


def _row_outside_top2():
    """A row whose true class is outside the top 2 of the CE run."""
    p = scipy_softmax(Z_CE, axis=1)
    rank = (p > p[np.arange(N), Y][:, None]).sum(1)
    return int(np.flatnonzero(rank >= 2)[0])


def test_predictive_distribution_appends_the_true_class_after_the_top_k():
    row = _row_outside_top2()
    d = PredictiveDistributionDisplay.from_logits({"ce": Z_CE, "cskd": Z_KD}, Y, row, k=2, class_names=NAMES)
    for name, z in (("ce", Z_CE), ("cskd", Z_KD)):
        p = scipy_softmax(z[row])
        top = list(np.argsort(-p, kind="stable")[:2])
        expected = top if Y[row] in top else top + [Y[row]]
        assert d.classes[name].tolist() == expected
        np.testing.assert_allclose(d.probs[name], p[expected])
        assert d.in_top_k[name].tolist() == [c in top for c in expected]
    assert d.classes["ce"][-1] == Y[row] and not d.in_top_k["ce"][-1]
    assert d.true_class == Y[row] and d.true_name == NAMES[Y[row]]


def test_predictive_distribution_on_a_shared_class_axis():
    row = _row_outside_top2()
    d = PredictiveDistributionDisplay.from_logits({"ce": Z_CE, "cskd": Z_KD}, Y, row, k=2, class_names=NAMES,
                                                  shared_axis=True, index=1234)
    p = {n: scipy_softmax(z[row]) for n, z in (("ce", Z_CE), ("cskd", Z_KD))}
    tops = {n: set(np.argsort(-q, kind="stable")[:2]) for n, q in p.items()}
    union = sorted(set().union(*tops.values()), key=lambda c: (-(p["ce"][c] + p["cskd"][c]) / 2, c))
    axis = union if Y[row] in union else union + [Y[row]]
    for name in p:
        assert d.classes[name].tolist() == axis
        np.testing.assert_allclose(d.probs[name], p[name][axis])
        assert d.in_top_k[name].tolist() == [c in tops[name] for c in axis]
    assert d.title == f"sample 1234: ground truth {NAMES[Y[row]]}"


def test_predictive_distribution_frame_and_plot():
    row = _row_outside_top2()
    d = PredictiveDistributionDisplay.from_logits({"ce": Z_CE, "cskd": Z_KD}, Y, row, k=2, class_names=NAMES)
    f = d.frame()
    assert len(f) == sum(c.size for c in d.classes.values())
    ce = f[f["run"] == "ce"]
    assert ce["class"].tolist() == d.classes["ce"].tolist() and ce["position"].tolist() == list(range(len(ce)))
    np.testing.assert_allclose(ce["probability"], d.probs["ce"])
    assert ce["is_true"].tolist() == [c == Y[row] for c in d.classes["ce"]]
    assert ce["class_name"].tolist() == [NAMES[c] for c in d.classes["ce"]]
    for shared in (False, True):
        disp = PredictiveDistributionDisplay.from_logits({"ce": Z_CE, "cskd": Z_KD}, Y, row, k=2,
                                                         class_names=NAMES, shared_axis=shared)
        image_ax, ax = Figure().subplots(1, 2)
        assert disp.plot(ax, image=np.zeros((8, 8, 3), np.uint8), image_ax=image_ax) is ax
        assert len(ax.patches) == sum(c.size for c in disp.classes.values())  # one bar per (run, class)
        bold = [t for t in ax.get_yticklabels() if t.get_fontweight() == "bold"]
        assert [t.get_text() for t in bold] == [NAMES[Y[row]]] * len(bold) and bold
        assert all(t.get_color() == GT_COLOR for t in bold)
        assert image_ax.get_title() == disp.title
    assert disp.plot() is not None  # its own figure, no image


def test_k_is_capped_at_the_class_count_and_inputs_are_checked():
    d = PredictiveDistributionDisplay.from_logits({"ce": Z_CE}, Y, 0, k=50)
    assert d.k == C and d.classes["ce"].size == C and d.class_names == tuple("01234")
    with pytest.raises(ValueError, match="^logits_by_run must be a non-empty dict"):
        PredictiveDistributionDisplay.from_logits({}, Y, 0)
    with pytest.raises(ValueError, match=r"^class_names has 2 entries for 5 classes$"):
        PredictiveDistributionDisplay.from_logits({"ce": Z_CE}, Y, 0, class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"^all runs must have logits of one shape"):
        LogProbDisplay.from_logits({"a": Z_CE, "b": Z_KD[:5]}, Y)


def test_given_colours_hold_in_every_frame_and_figure():
    """A dashboard skipping a picked run still draws each run in its own colour: `colors` overrides
    the colour by position in frames, plots, the overlay and side by side (and the others keep it)."""
    from dataclasses import replace

    from matplotlib.colors import to_hex

    from cskd.analysis.displays import DomainErrorDisplay

    colors = {"cskd": "#123456"}  # "ce" keeps run_color(0)
    logits = {"ce": Z_CE, "cskd": Z_KD}
    mapping = np.array([0, 0, 1, 1, 1])
    displays = [replace(LogProbDisplay.from_logits(logits, Y, rows=np.arange(N)), colors=colors),
                replace(PredictiveDistributionDisplay.from_logits(logits, Y, 3), colors=colors),
                replace(DomainErrorDisplay.from_logits(logits, Y, mapping), colors=colors)]
    for d in displays:
        f = d.frame()
        assert set(f.loc[f["run"] == "cskd", "color"]) == {"#123456"}
        assert set(f.loc[f["run"] == "ce", "color"]) == {run_color(0)}
        axes = d.plot()
        drawn = {to_hex(p.get_facecolor()) for ax in np.atleast_1d(axes) for p in ax.patches}
        assert {"#123456", run_color(0)} <= drawn
    ds = [ReliabilityDisplay.from_logits(z, Y, n_bins=10, name=n) for n, z in logits.items()]
    ax, _ = overlay(ds, colors=colors, kind="lines")
    assert {line.get_color() for line in ax.lines} >= {"#123456", run_color(0)}
    fig = side_by_side(ds, colors=colors)
    assert "#123456" in {to_hex(p.get_facecolor()) for p in fig.axes[1].patches}
