"""Reliability diagrams (paper Fig. 5): the bins are computed once (`ReliabilityDisplay.from_*`),
then drawn by matplotlib (`plot`, `overlay`, `side_by_side`) or handed to another renderer as a
tidy table (`frame`, `frames`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import ArrayLike

from . import _checks
from . import calibration as cal
from .figures import GT_COLOR, run_color, run_colors
from .metrics import softmax

COUNT_LABEL = "count"
X_LABEL = "confidence (max softmax)"
FRAME_COLUMNS = ("run", "label", "order", "color", "strategy", "bin", "lower", "upper", "count", "accuracy",
                 "confidence", "gap", "ece", "mce")


@dataclass(frozen=True, eq=False)
class ReliabilityDisplay:
    """The reliability bins of one run and their ECE and MCE (fractions in [0, 1]).

    bins: analysis.calibration.ReliabilityBins (edges, accuracy, confidence, count per bin);
    name: the run's name (legend and title). Build with `from_probs`, `from_logits` or
    `from_confidence` (the cheap one when per-sample confidence and correctness are cached).
    """

    bins: cal.ReliabilityBins
    ece: float
    mce: float
    name: str = ""

    @classmethod
    def from_confidence(cls, confidence: ArrayLike, correct: ArrayLike, *, n_bins: int = cal.N_BINS,
                        strategy: str = "uniform",
                        name: str = "") -> ReliabilityDisplay:
        """From per-sample confidence (N,) in [0, 1] and correctness (N,) bool (see
        calibration.confidence_and_correctness); `strategy` "uniform" or "quantile"."""
        bins = cal.reliability_bins_from_confidence(confidence, correct, n_bins=n_bins, strategy=strategy)
        return cls(bins, cal.ece_from_bins(bins), cal.mce_from_bins(bins), str(name))

    @classmethod
    def from_probs(cls, probs: ArrayLike, labels: ArrayLike, *, n_bins: int = cal.N_BINS, strategy: str = "uniform",
                   name: str = "") -> ReliabilityDisplay:
        """From (N, C) softmax probabilities and (N,) labels."""
        conf, right = cal.confidence_and_correctness(probs, labels)
        return cls.from_confidence(conf, right, n_bins=n_bins, strategy=strategy, name=name)

    @classmethod
    def from_logits(cls, logits: ArrayLike, labels: ArrayLike, *, n_bins: int = cal.N_BINS, strategy: str = "uniform",
                    name: str = "") -> ReliabilityDisplay:
        """From (N, C) logits (softmax taken here; divide by a temperature first to show a
        temperature-scaled model) and (N,) labels."""
        return cls.from_probs(softmax(logits), labels, n_bins=n_bins, strategy=strategy, name=name)

    @classmethod
    def from_predictions(cls, labels: ArrayLike, predictions: ArrayLike, *, kind: str = "logits", n_bins: int = 20,
                         strategy: str = "uniform", name: str = "") -> ReliabilityDisplay:
        """From any model's outputs, as scikit-learn's CalibrationDisplay.from_predictions: (N,)
        integer labels and (N, C) `predictions`, logits (`kind="logits"`) or probabilities
        (`kind="probs"`); `strategy` "uniform" (equal-width, the paper's) or "quantile".

        >>> import numpy as np
        >>> d = ReliabilityDisplay.from_predictions([0, 1, 1], np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]]))
        >>> # confidences 0.881, 0.953 (right), 0.731 (wrong): (0.119 + 0.047 + 0.731) / 3
        >>> d.n_samples, round(d.ece, 4)
        (3, 0.2992)
        """
        scores = _checks.scores_as_logits(predictions, kind)
        return cls.from_logits(scores, labels, n_bins=n_bins, strategy=strategy, name=name)

    @property
    def n_samples(self) -> int:
        return self.bins.n_samples

    @property
    def overconfidence(self) -> float:
        """Mean confidence - accuracy over all samples, in [-1, 1] (count-weighted bin gaps)."""
        full = self.bins.count > 0
        return float(np.sum(self.bins.count[full] * self.bins.gap[full]) / self.bins.count.sum())

    @property
    def summary(self) -> str:
        """"ECE x.xx%, MCE y.yy%": the text the figures put in titles and legends."""
        return f"ECE {100 * self.ece:.2f}%, MCE {100 * self.mce:.2f}%"

    @property
    def label(self) -> str:
        """"<name>: ECE x.xx%, MCE y.yy%" (the summary alone for an unnamed run)."""
        return f"{self.name}: {self.summary}" if self.name else self.summary

    def frame(self, *, order: int = 0) -> pd.DataFrame:
        """One row per bin: run, label ("<run>: ECE x.xx%, MCE y.yy%", as in the overlay's legend),
        order (position among the runs shown), color (the run's hex colour in the figures),
        strategy, bin, lower, upper, count, accuracy, confidence,
        gap = confidence - accuracy (NaN for empty bins: filter count > 0 before drawing), and
        the run's ece and mce repeated on every row."""
        b = self.bins
        return pd.DataFrame({
            "run": self.name, "label": self.label, "order": int(order), "color": run_color(order),
            "strategy": b.strategy, "bin": np.arange(b.count.size), "lower": b.lower, "upper": b.upper,
            "count": b.count, "accuracy": b.accuracy, "confidence": b.confidence, "gap": b.gap,
            "ece": self.ece, "mce": self.mce},
            columns=list(FRAME_COLUMNS))

    @staticmethod
    def frames(displays) -> pd.DataFrame:
        """The frames of several runs stacked, `order` (and colour) by position in `displays`."""
        displays = list(displays)
        if not displays:
            return pd.DataFrame(columns=list(FRAME_COLUMNS))
        return pd.concat([d.frame(order=j) for j, d in enumerate(displays)], ignore_index=True)

    def plot(self, ax=None, *, count_ax=None, color=None, kind: str | None = None, log_counts: bool = False,
             title: str | bool | None = None, legend: bool = True):
        """Draw this run's reliability diagram; returns (ax, count_ax).

        kind "bars" (default for equal-width bins): accuracy bars spanning each non-empty bin,
        the gap to the bin's mean confidence shaded (hatched red); kind "lines" (default for
        equal-mass bins, whose widths vary): accuracy against mean confidence as markers, the gap
        as a red segment from each marker up (or down) to the diagonal. Always the identity
        diagonal, and per-bin counts on `count_ax` (a new axis appended under `ax` when None;
        `log_counts` draws counts on a log scale so sparse bins stay visible). A new figure is
        made when `ax` is None. title: None -> "<name>: ECE, MCE"; False -> none; a string.
        """
        kind = kind or ("bars" if self.bins.strategy == "uniform" else "lines")
        if kind not in ("bars", "lines"):
            raise ValueError(f"kind must be 'bars' or 'lines'; got {kind!r}")
        ax, count_ax = _axes_with_counts(ax, count_ax, (4.6, 5.4))
        color = color or run_color(0)
        b, full = self.bins, self.bins.count > 0
        if kind == "bars":
            ax.bar(b.lower[full], b.accuracy[full], b.upper[full] - b.lower[full], align="edge", color=color,
                   edgecolor="black", linewidth=0.5, label="accuracy")
            ax.bar(b.lower[full], b.gap[full], b.upper[full] - b.lower[full], bottom=b.accuracy[full],
                   align="edge", color=GT_COLOR, alpha=0.3, edgecolor=GT_COLOR, hatch="//", linewidth=0.5,
                   label="gap: mean confidence − accuracy")
        else:
            ax.plot(b.confidence[full], b.accuracy[full], marker="o", markersize=4, color=color, label="accuracy")
            ax.vlines(b.confidence[full], b.accuracy[full], b.confidence[full], color=GT_COLOR, linewidth=1.5,
                      label="gap: mean confidence − accuracy")
        _diagonal_and_limits(ax)
        if legend:
            ax.legend(loc="upper left", fontsize="small")
        if title is None:
            title = self.label
        if title:
            ax.set_title(title, fontsize="medium")
        _draw_counts(count_ax, b, color, log_counts, outline=False)
        return ax, count_ax


def _axes_with_counts(ax, count_ax, figsize):
    """(ax, count_ax): both new (a Figure of `figsize`, counts under the diagram) when ax is None,
    a counts axis appended under `ax` when only count_ax is None, else the two given."""
    if ax is None:
        fig = Figure(figsize=figsize)
        ax, count_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    elif count_ax is None:
        from mpl_toolkits.axes_grid1 import make_axes_locatable

        count_ax = make_axes_locatable(ax).append_axes("bottom", size="30%", pad=0.1, sharex=ax)
    ax.tick_params(labelbottom=False)
    return ax, count_ax


def _diagonal_and_limits(ax) -> None:
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")


def _draw_counts(count_ax, bins: cal.ReliabilityBins, color, log_counts: bool, *, outline: bool) -> None:
    """Per-bin counts as filled bars, or as a step line (`outline`, for overlays); zero counts are
    not drawn (so a log scale has nothing to hide)."""
    full = bins.count > 0
    if outline:
        count_ax.stairs(np.where(full, bins.count, np.nan), bins.edges, baseline=None, color=color, linewidth=1.5)
    else:
        count_ax.bar(bins.lower[full], bins.count[full], bins.upper[full] - bins.lower[full], align="edge",
                     color=color, edgecolor="black", linewidth=0.5)
    if log_counts:
        count_ax.set_yscale("log")
    else:
        count_ax.set_ylim(bottom=0)
    count_ax.set_xlim(0, 1)
    count_ax.set_xlabel(X_LABEL)
    count_ax.set_ylabel(f"{COUNT_LABEL} (log)" if log_counts else COUNT_LABEL)


def overlay(displays, ax=None, *, count_ax=None, kind: str = "bars", log_counts: bool = False,
            colors: dict | None = None):
    """Several runs' reliability diagrams on ONE axes (paper Fig. 5 overlays CE and CS-KD); returns
    (ax, count_ax).

    Run j is drawn in run_color(j) (or `colors[its name]`: figures.run_colors) with its ECE and
    MCE in the legend (above the axes): kind "bars" as the outline of its accuracy bars (a step
    line, broken at empty bins), kind "lines" as accuracy against mean confidence with markers. For
    both, a dotted segment in the run's colour joins each bin's marker (at its mean confidence)
    to the diagonal: its length is the bin's gap, mean confidence − accuracy (below the
    diagonal: over-confident), as the legend says. Counts go on `count_ax` (appended under `ax`
    when None) as step lines, log-scaled with `log_counts`. A new figure when `ax` is None.
    """
    displays = list(displays)
    if not displays:
        raise ValueError("displays is empty; pass at least one ReliabilityDisplay")
    if kind not in ("lines", "bars"):
        raise ValueError(f"kind must be 'bars' or 'lines'; got {kind!r}")
    ax, count_ax = _axes_with_counts(ax, count_ax, (5.4, 6.0))
    for j, (d, color) in enumerate(zip(displays, run_colors([d.name for d in displays], colors))):
        b = d.bins
        full = b.count > 0
        label = d.label if d.name else f"run {j}: {d.summary}"
        if kind == "lines":
            ax.plot(b.confidence[full], b.accuracy[full], marker="o", markersize=4, color=color, label=label)
        else:  # the bars' tops as one step line; empty bins (NaN) leave a gap
            ax.stairs(b.accuracy, b.edges, baseline=None, color=color, linewidth=1.8, label=label)
            ax.plot(b.confidence[full], b.accuracy[full], "o", markersize=3, color=color)
        ax.vlines(b.confidence[full], b.accuracy[full], b.confidence[full], colors=color, linestyles=":",
                  linewidth=1.5)
        _draw_counts(count_ax, b, color, log_counts, outline=True)
    _diagonal_and_limits(ax)
    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="grey", linestyle=":", linewidth=1.5,
                          label="dotted: gap = mean confidence − accuracy\n(below the diagonal: over-confident)"))
    # Above the axes: inside, the legend would hide the bins of low confidence.
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.01), fontsize="small", frameon=False)
    return ax, count_ax


def side_by_side(displays, *, log_counts: bool = False, kind: str | None = None, panel_width: float = 3.8,
                 colors: dict | None = None):
    """A new Figure with one reliability diagram per run side by side (shared axes, counts
    underneath on one scale), run j in run_color(j) (or `colors[its name]`), each titled with its
    name, ECE and MCE."""
    displays = list(displays)
    if not displays:
        raise ValueError("displays is empty; pass at least one ReliabilityDisplay")
    fig = Figure(figsize=(panel_width * len(displays) + 0.6, 5.4))
    axes = fig.subplots(2, len(displays), sharex=True, sharey="row", squeeze=False,
                        gridspec_kw={"height_ratios": [3, 1]})
    for j, (d, color) in enumerate(zip(displays, run_colors([d.name for d in displays], colors))):
        d.plot(axes[0, j], count_ax=axes[1, j], color=color, kind=kind, log_counts=log_counts,
               title=f"{d.name}\n{d.summary}" if d.name else d.summary, legend=False)
        if j:  # shared axes: one set of y labels is enough
            axes[0, j].set_ylabel("")
            axes[1, j].set_ylabel("")
    # One legend for all panels, under them, so it never hides a bar.
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize="small", frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.subplots_adjust(bottom=0.16)
    return fig


__all__ = ["FRAME_COLUMNS", "ReliabilityDisplay", "overlay", "side_by_side"]
