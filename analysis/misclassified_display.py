"""What models predict on the samples they get wrong: log-probability histograms (paper Fig. 2)
and one sample's predictive distributions (paper Fig. 1b), computed once and drawn by matplotlib
(`plot`) or handed to another renderer as a tidy table (`frame`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from . import _checks
from .figures import GT_COLOR, run_colors
from .metrics import softmax
from .misclassified import log_probs_on, logprob_hist_counts, misclassified_by_all, predictive_distribution

# What each histogram panel shows, in panel order.
LOGPROB_KINDS = {"predicted": "predicted class", "true": "ground-truth class"}
LOGPROB_COLUMNS = ("run", "order", "color", "kind", "of", "lower", "upper", "count")
DISTRIBUTION_COLUMNS = ("run", "order", "color", "position", "class", "class_name", "probability", "is_true",
                        "in_top_k")


def _check_runs(logits_by_run) -> dict:
    if not isinstance(logits_by_run, dict) or not logits_by_run:
        raise ValueError("logits_by_run must be a non-empty dict of run name -> (N, C) logits")
    shapes = {name: np.shape(z) for name, z in logits_by_run.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"all runs must have logits of one shape; got {shapes}")
    return logits_by_run


@dataclass(frozen=True, eq=False)
class LogProbDisplay:
    """Histograms of the natural-log softmax probability of the predicted class and of the
    ground-truth class on a set of samples (by default those every run misclassifies).

    runs: run names in drawing order; rows: int64 row indices of the samples; description: what
    the rows are ("misclassified by every run"); edges[kind]: shared bin edges of each kind
    ("predicted", "true"), from analysis.misclassified.logprob_hist_counts; counts[kind][run]:
    int64 counts per bin. When fewer than `min_samples` rows qualify (`too_few`) nothing is
    drawn and `title` says so.
    """

    runs: tuple
    rows: np.ndarray
    description: str
    edges: dict
    counts: dict
    min_samples: int = 10
    colors: dict | None = None  # {run: hex colour}; the others: run_color(position) (figures.run_colors)

    @classmethod
    def from_logits(cls, logits_by_run: dict, labels: ArrayLike, *, rows: ArrayLike | None = None,
                    description: str | None = None,
                    bins: int = 30, min_samples: int = 10) -> LogProbDisplay:
        """From {run: (N, C) logits} and (N,) labels. rows: the samples to use (default: those
        misclassified by every run); description: how the title names them."""
        _check_runs(logits_by_run)
        min_samples = _checks.nonnegative_int(min_samples, "min_samples")
        if rows is None:
            rows = misclassified_by_all(logits_by_run, labels)
            if description is None:
                description = "misclassified by every run" if len(logits_by_run) > 1 else "misclassified"
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        lp = {name: log_probs_on(z, labels, rows) for name, z in logits_by_run.items()}
        return cls.from_log_probs(lp, rows, description=description or "selected", bins=bins,
                                  min_samples=min_samples)

    @classmethod
    def from_predictions(cls, labels: ArrayLike, predictions_by_run: dict, *, kind: str = "logits",
                         rows: ArrayLike | None = None,
                         description: str | None = None, bins: int = 30, min_samples: int = 10) -> LogProbDisplay:
        """From any models' outputs: (N,) labels and {run: (N, C) predictions}, logits
        (`kind="logits"`) or probabilities (`kind="probs"`); the rest as from_logits.

        >>> import numpy as np
        >>> z = np.array([[3.0, 0.0]] * 12)  # always class 0, confidently
        >>> d = LogProbDisplay.from_predictions(np.ones(12, dtype=int), {"model": z})
        >>> d.n_samples, d.too_few
        (12, False)
        """
        _check_runs(predictions_by_run)
        scores = {name: _checks.scores_as_logits(p, kind, f"predictions of {name!r}")
                  for name, p in predictions_by_run.items()}
        return cls.from_logits(scores, labels, rows=rows, description=description, bins=bins,
                               min_samples=min_samples)

    @classmethod
    def from_log_probs(cls, log_probs_by_run: dict, rows: ArrayLike, *, description: str = "selected", bins: int = 30,
                       min_samples: int = 10) -> LogProbDisplay:
        """From log-probabilities already computed on `rows`: {run: {"predicted": (M,), "true": (M,)}}
        as analysis.misclassified.log_probs_on returns them (e.g. read from a cache), so no softmax
        is taken again; the same display as from_logits on those rows."""
        if not isinstance(log_probs_by_run, dict) or not log_probs_by_run:
            raise ValueError("log_probs_by_run must be a non-empty dict of run name -> log-probabilities")
        min_samples = _checks.nonnegative_int(min_samples, "min_samples")
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        for name, v in log_probs_by_run.items():
            if any(np.shape(v[kind]) != rows.shape for kind in LOGPROB_KINDS):
                raise ValueError(f"run {name!r}: need {rows.size} 'predicted' and 'true' log-probabilities")
        edges, counts = {}, {}
        for kind in LOGPROB_KINDS:
            edges[kind], counts[kind] = logprob_hist_counts({n: v[kind] for n, v in log_probs_by_run.items()},
                                                            bins=bins)
        return cls(tuple(log_probs_by_run), rows, description, edges, counts, min_samples)

    @property
    def n_samples(self) -> int:
        return int(self.rows.size)

    @property
    def too_few(self) -> bool:
        """True when fewer than min_samples samples qualify: the histograms are not drawn."""
        return self.n_samples < self.min_samples

    @property
    def title(self) -> str:
        if self.too_few:
            return (f"only {self.n_samples} samples {self.description} (fewer than {self.min_samples}): "
                    "histograms not drawn")
        return f"{self.n_samples} samples {self.description}"

    def frame(self) -> pd.DataFrame:
        """One row per (kind, run, bin) drawn: run, order, color, kind ("predicted" / "true"), of
        (the panel's subject), lower, upper, count. Empty (same columns) when `too_few`."""
        if self.too_few:
            return pd.DataFrame(columns=list(LOGPROB_COLUMNS))
        parts = []
        for kind, of in LOGPROB_KINDS.items():
            e = self.edges[kind]
            for j, (name, color) in enumerate(zip(self.runs, run_colors(self.runs, self.colors))):
                parts.append(pd.DataFrame({"run": name, "order": j, "color": color, "kind": kind, "of": of,
                                           "lower": e[:-1], "upper": e[1:], "count": self.counts[kind][name]},
                                          columns=list(LOGPROB_COLUMNS)))
        return pd.concat(parts, ignore_index=True)

    def plot(self, axes=None):
        """Two panels (predicted class, ground-truth class), one translucent histogram per run in
        its colour (figures.run_colors) with its sample count in the legend; `title` as the figure's title.
        axes: a pair of Axes, or None for a new figure. Returns (ax_pred, ax_true)."""
        if axes is None:
            axes = Figure(figsize=(10, 4)).subplots(1, 2)
        axes = tuple(axes)
        for ax, (kind, of) in zip(axes, LOGPROB_KINDS.items()):
            ax.set_xlabel(f"log-probability of the {of}")
            ax.set_ylabel("samples")
            if self.too_few:
                ax.text(0.5, 0.5, f"fewer than {self.min_samples} samples", ha="center", va="center",
                        transform=ax.transAxes, color="grey")
                continue
            e = self.edges[kind]
            for name, c in zip(self.runs, run_colors(self.runs, self.colors)):
                count = self.counts[kind][name]
                ax.hist(e[:-1], bins=e, weights=count, color=c, alpha=0.45, label=f"{name} (n={count.sum()})")
                ax.hist(e[:-1], bins=e, weights=count, color=c, histtype="step", linewidth=1.2)
            ax.legend(fontsize="small")
        axes[0].figure.suptitle(self.title)
        return axes


@dataclass(frozen=True, eq=False)
class PredictiveDistributionDisplay:
    """One sample's softmax probabilities per run (paper Fig. 1b).

    Per run: classes[run] (int64 class ids in axis order), probs[run] (their probabilities) and
    in_top_k[run] (whether each class is among that run's k most probable). Without a shared axis
    a run shows its top k by decreasing probability (ties: lower id first), then the true class
    when it is not among them. With `shared_axis`, every run shows the same classes: the union of
    the runs' top k ordered by decreasing mean probability over the runs (ties: lower id first),
    then the true class when no run has it in its top k.
    """

    row: int
    true_class: int
    class_names: tuple
    runs: tuple
    classes: dict
    probs: dict
    in_top_k: dict
    k: int
    shared_axis: bool = False
    index: int | None = None  # the sample's index in its data set, for titles
    colors: dict | None = None  # {run: hex colour}; the others: run_color(position) (figures.run_colors)

    @classmethod
    def from_logits(cls, logits_by_run: dict, labels: ArrayLike, row: int, *, k: int = 5,
                    class_names: Sequence[str] | None = None,
                    shared_axis: bool = False, index: int | None = None) -> PredictiveDistributionDisplay:
        """From {run: (N, C) logits}, (N,) labels and the row to show; k is capped at C;
        class_names default to the class ids as text."""
        _check_runs(logits_by_run)
        k = min(_checks.positive_int(k, "k"), np.shape(next(iter(logits_by_run.values())))[1])
        tops, probs = {}, {}
        for name, z in logits_by_run.items():
            d = predictive_distribution(z, labels, row, k=k)
            tops[name], true_class = d["classes"], d["true_class"]
            probs[name] = softmax(np.asarray(z)[int(row):int(row) + 1])[0]  # the row's (C,) softmax
        n_classes = probs[next(iter(probs))].size
        names = tuple(str(c) for c in range(n_classes)) if class_names is None else tuple(map(str, class_names))
        if len(names) != n_classes:
            raise ValueError(f"class_names has {len(names)} entries for {n_classes} classes")
        if shared_axis:
            union = np.unique(np.concatenate(list(tops.values())))
            mean_p = np.mean([probs[n][union] for n in tops], axis=0)
            axis = union[np.lexsort((union, -mean_p))]
            if true_class not in axis:
                axis = np.append(axis, true_class)
            classes = {n: axis.astype(np.int64) for n in tops}
        else:
            classes = {n: (t if true_class in t else np.append(t, true_class)).astype(np.int64)
                       for n, t in tops.items()}
        return cls(int(row), int(true_class), names, tuple(tops), classes,
                   {n: probs[n][classes[n]] for n in tops}, {n: np.isin(classes[n], tops[n]) for n in tops},
                   k, bool(shared_axis), None if index is None else int(index))

    @classmethod
    def from_predictions(cls, labels: ArrayLike, predictions_by_run: dict, row: int, *, kind: str = "logits",
                         k: int = 5,
                         class_names: Sequence[str] | None = None, shared_axis: bool = False,
                         index: int | None = None) -> PredictiveDistributionDisplay:
        """From any models' outputs: (N,) labels, {run: (N, C) predictions}, logits (`kind="logits"`)
        or probabilities (`kind="probs"`), and the row to show; the rest as from_logits.

        >>> import numpy as np
        >>> d = PredictiveDistributionDisplay.from_predictions([1], {"m": np.array([[0.7, 0.2, 0.1]])}, 0,
        ...                                                    kind="probs", k=2)
        >>> d.classes["m"].tolist(), [round(float(p), 2) for p in d.probs["m"]]
        ([0, 1], [0.7, 0.2])
        """
        _check_runs(predictions_by_run)
        scores = {name: _checks.scores_as_logits(p, kind, f"predictions of {name!r}")
                  for name, p in predictions_by_run.items()}
        return cls.from_logits(scores, labels, row, k=k, class_names=class_names, shared_axis=shared_axis,
                               index=index)

    @property
    def true_name(self) -> str:
        return self.class_names[self.true_class]

    @property
    def title(self) -> str:
        where = f"sample {self.index}" if self.index is not None else f"row {self.row}"
        return f"{where}: ground truth {self.true_name}"

    def frame(self) -> pd.DataFrame:
        """One row per bar: run, order, color, position (0-based place on the class axis, from the
        top), class, class_name, probability, is_true (the ground-truth class), in_top_k."""
        parts = [pd.DataFrame({"run": name, "order": j, "color": color,
                               "position": np.arange(self.classes[name].size), "class": self.classes[name],
                               "class_name": [self.class_names[c] for c in self.classes[name]],
                               "probability": self.probs[name], "is_true": self.classes[name] == self.true_class,
                               "in_top_k": self.in_top_k[name]}, columns=list(DISTRIBUTION_COLUMNS))
                 for j, (name, color) in enumerate(zip(self.runs, run_colors(self.runs, self.colors)))]
        return pd.concat(parts, ignore_index=True)

    def plot(self, ax=None, *, image=None, image_ax=None):
        """Horizontal probability bars, each run in its colour (figures.run_colors), the true class's
        bars hatched and its label bold in GT_COLOR. Without a shared axis the runs are stacked
        sections of their own classes; with it, each class holds one bar per run. `image` is shown on `image_ax` (made
        left of the bars when `ax` is None) under the title. Returns the bar axes."""
        if ax is None:
            if image is not None:
                image_ax, ax = Figure(figsize=(9, 1.6 + 0.35 * self._height())).subplots(
                    1, 2, gridspec_kw={"width_ratios": [1, 2.5]})
            else:
                ax = Figure(figsize=(6.5, 1.6 + 0.35 * self._height())).subplots()
        ticks, labels, true_ticks = [], [], []
        y0 = 0.0
        height = 0.8 / len(self.runs) if self.shared_axis else 0.8
        for j, (name, color) in enumerate(zip(self.runs, run_colors(self.runs, self.colors))):
            for pos, (cls, p) in enumerate(zip(self.classes[name], self.probs[name])):
                y = -pos - j * height + 0.4 - height / 2 if self.shared_axis else y0 - pos
                is_true = int(cls) == self.true_class
                ax.barh(y, p, height=height, color=color, edgecolor="black" if is_true else color,
                        hatch="//" if is_true else None, label=name if pos == 0 else None)
                if not self.shared_axis or j == 0:
                    ticks.append(-pos if self.shared_axis else y)
                    labels.append(self.class_names[int(cls)])
                    if is_true:
                        true_ticks.append(len(ticks) - 1)
            y0 -= self.classes[name].size + 0.6  # gap between runs' sections
        ax.set_yticks(ticks)
        texts = ax.set_yticklabels(labels, fontsize="small")
        for t in true_ticks:
            texts[t].set_fontweight("bold")
            texts[t].set_color(GT_COLOR)
        ax.set_xlim(0, 1)
        ax.set_xlabel("softmax probability")
        ax.legend(fontsize="small", loc="lower right")
        if image_ax is not None:
            if image is not None:
                image_ax.imshow(np.asarray(image))
            image_ax.set_axis_off()
            image_ax.set_title(self.title, color=GT_COLOR, fontsize="small")
        else:
            ax.set_title(self.title, fontsize="small")
        return ax

    def _height(self) -> float:
        rows = [c.size for c in self.classes.values()]
        return max(rows) if self.shared_axis else sum(rows) + 0.6 * (len(rows) - 1)
