"""Coarse-group views of fine-label predictions (paper Fig. 4): the coarse × coarse confusion with
the hierarchical accuracy (Fig. 4 a/b) and the fine-label top-1 error per coarse group, or domain,
per run (Fig. 4(c)). Computed once, drawn by matplotlib (`plot`) or handed to another renderer as
a tidy table (`frame`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import seaborn as sns
from numpy.typing import ArrayLike

from .figures import axes_or_new, run_colors
from .hierarchy import (
    group_error_key,
    group_names,
    hierarchical_accuracy,
    hierarchical_confusion,
    top1_error_by_group,
)

HIERARCHY_COLUMNS = ("g", "h", "true_group", "predicted_group", "fraction", "percent", "n_true_group")
DOMAIN_COLUMNS = ("run", "order", "color", "group", "group_name", "top1_error", "top1_error_pct", "n")


def _groups(fine_to_coarse, true_fine, coarse_names):
    """(mapping int64, coarse names, samples per true coarse group) with n_coarse = len(names)
    when names are given, else max(mapping) + 1."""
    mapping = np.asarray(fine_to_coarse, dtype=np.int64).reshape(-1)
    names = tuple(group_names(mapping, coarse_names))
    n = len(names)
    sizes = np.bincount(mapping[np.asarray(true_fine, dtype=np.int64)], minlength=n).astype(np.int64)
    return mapping, names, sizes


@dataclass(frozen=True, eq=False)
class HierarchyDisplay:
    """Coarse × coarse confusion of one run: confusion[g, h] = fraction in [0, 1] of the samples of
    true coarse group g whose predicted fine label lies in group h (rows sum to 1, NaN rows for
    empty groups); accuracy = hierarchical accuracy in [0, 1] (the diagonal's share of all
    samples); group_sizes[g] = samples of true group g."""

    confusion: np.ndarray
    accuracy: float
    coarse_names: tuple
    group_sizes: np.ndarray
    name: str = ""

    @classmethod
    def from_predictions(cls, pred_fine: ArrayLike, true_fine: ArrayLike, fine_to_coarse: ArrayLike, *,
                         coarse_names: Sequence[str] | None = None,
                         name: str = "") -> HierarchyDisplay:
        """From (N,) predicted and true fine labels and the (C,) fine -> coarse mapping; the number
        of groups is len(coarse_names) when given, else max(fine_to_coarse) + 1.

        >>> d = HierarchyDisplay.from_predictions([0, 1, 2, 3], [1, 0, 3, 1], [0, 0, 1, 1],
        ...                                       coarse_names=["animals", "places"])
        >>> d.accuracy, d.confusion.round(3).tolist()
        (0.75, [[0.667, 0.333], [0.0, 1.0]])
        """
        n = None if coarse_names is None else len(coarse_names)
        confusion = hierarchical_confusion(pred_fine, true_fine, fine_to_coarse, n_coarse=n)
        accuracy = hierarchical_accuracy(pred_fine, true_fine, fine_to_coarse)
        _, names, sizes = _groups(fine_to_coarse, true_fine, coarse_names)
        return cls(confusion, accuracy, names, sizes, str(name))

    @classmethod
    def from_logits(cls, logits: ArrayLike, labels: ArrayLike, fine_to_coarse: ArrayLike, *,
                    coarse_names: Sequence[str] | None = None,
                    name: str = "") -> HierarchyDisplay:
        """From (N, C) logits (prediction: argmax, ties to the lowest id) and (N,) fine labels."""
        return cls.from_predictions(np.argmax(np.asarray(logits), axis=1), labels, fine_to_coarse,
                                    coarse_names=coarse_names, name=name)

    @property
    def title(self) -> str:
        acc = f"hierarchical accuracy {100 * self.accuracy:.2f}%"
        return f"{self.name}: {acc}" if self.name else acc

    def frame(self) -> pd.DataFrame:
        """One row per cell: g, h (group ids), true_group, predicted_group (names), fraction,
        percent (100 × fraction, as annotated; NaN for an empty true group), n_true_group."""
        n = len(self.coarse_names)
        g, h = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        names = np.asarray(self.coarse_names, dtype=object)
        return pd.DataFrame({"g": g.ravel(), "h": h.ravel(), "true_group": names[g.ravel()],
                             "predicted_group": names[h.ravel()], "fraction": self.confusion.ravel(),
                             "percent": 100 * self.confusion.ravel(), "n_true_group": self.group_sizes[g.ravel()]},
                            columns=list(HIERARCHY_COLUMNS))

    def plot(self, ax=None, *, annotate: bool = True):
        """Heat map of the confusion in percent of the true group (0..100, Blues), annotated with
        one decimal, titled with the hierarchical accuracy. Returns the axes."""
        n = len(self.coarse_names)
        side = max(4.0, 0.45 * n + 2)
        ax = axes_or_new(ax, (side + 1, side))
        sns.heatmap(100 * self.confusion, ax=ax, annot=annotate, fmt=".1f", vmin=0, vmax=100, cmap="Blues",
                    square=True, xticklabels=list(self.coarse_names), yticklabels=list(self.coarse_names),
                    annot_kws={"fontsize": 5 if n > 8 else 10}, cbar_kws={"label": "% of true group"})
        ax.set_xlabel("coarse group of the predicted fine label")
        ax.set_ylabel("true coarse group")
        ax.set_title(self.title, fontsize="medium")
        return ax


@dataclass(frozen=True, eq=False)
class DomainErrorDisplay:
    """Fine-label top-1 error per coarse group (domain) per run, paper Fig. 4(c):
    error[r, g] = fraction in [0, 1] of the samples of true group g that run r misclassifies
    (fine labels; NaN for an empty group); group_sizes[g] = samples of group g."""

    runs: tuple
    coarse_names: tuple
    error: np.ndarray
    group_sizes: np.ndarray
    colors: dict | None = None  # {run: hex colour}; the others: run_color(position) (figures.run_colors)

    @classmethod
    def from_predictions(cls, pred_by_run: dict, true_fine: ArrayLike, fine_to_coarse: ArrayLike, *,
                         coarse_names: Sequence[str] | None = None) -> DomainErrorDisplay:
        """From {run: (N,) predicted fine labels}, (N,) true fine labels and the fine -> coarse
        mapping (groups: len(coarse_names) when given, else max(fine_to_coarse) + 1).

        >>> import numpy as np
        >>> d = DomainErrorDisplay.from_predictions({"m": np.array([0, 1, 2, 3])}, [1, 1, 2, 3], [0, 0, 1, 1],
        ...                                        coarse_names=["animals", "places"])
        >>> d.metrics("m")
        {'top1_error[animals]': 0.5, 'top1_error[places]': 0.0}
        """
        if not isinstance(pred_by_run, dict) or not pred_by_run:
            raise ValueError("pred_by_run must be a non-empty dict of run name -> (N,) predicted labels")
        n = None if coarse_names is None else len(coarse_names)
        error = np.stack([top1_error_by_group(p, true_fine, fine_to_coarse, n_coarse=n)
                          for p in pred_by_run.values()])  # checks the inputs before _groups uses them
        _, names, sizes = _groups(fine_to_coarse, true_fine, coarse_names)
        return cls(tuple(pred_by_run), names, error, sizes)

    @classmethod
    def from_logits(cls, logits_by_run: dict, labels: ArrayLike, fine_to_coarse: ArrayLike, *,
                    coarse_names: Sequence[str] | None = None) -> DomainErrorDisplay:
        """From {run: (N, C) logits} (prediction: argmax, ties to the lowest id) and (N,) labels."""
        if not isinstance(logits_by_run, dict) or not logits_by_run:
            raise ValueError("logits_by_run must be a non-empty dict of run name -> (N, C) logits")
        preds = {n: np.argmax(np.asarray(z), axis=1) for n, z in logits_by_run.items()}
        return cls.from_predictions(preds, labels, fine_to_coarse, coarse_names=coarse_names)

    @staticmethod
    def metric_key(group_name: str) -> str:
        """The per-run metric name of one group's error: hierarchy.group_error_key."""
        return group_error_key(group_name)

    def metrics(self, run: str) -> dict:
        """{metric_key(group): error as a float in [0, 1] (NaN for an empty group)} of one run."""
        r = self.runs.index(run)
        return {self.metric_key(g): float(e) for g, e in zip(self.coarse_names, self.error[r])}

    def frame(self) -> pd.DataFrame:
        """One row per (run, group): run, order, color, group (id), group_name, top1_error
        (fraction), top1_error_pct (100 × fraction, as drawn), n (samples of the group)."""
        n = len(self.coarse_names)
        parts = [pd.DataFrame({"run": name, "order": j, "color": color, "group": np.arange(n),
                               "group_name": list(self.coarse_names), "top1_error": self.error[j],
                               "top1_error_pct": 100 * self.error[j], "n": self.group_sizes},
                              columns=list(DOMAIN_COLUMNS))
                 for j, (name, color) in enumerate(zip(self.runs, run_colors(self.runs, self.colors)))]
        return pd.concat(parts, ignore_index=True)

    def plot(self, ax=None):
        """Grouped bars: one group of bars per coarse group, each run in its colour, the fine-label
        top-1 error in percent (no bar for a group without samples). Returns the axes."""
        n, r = len(self.coarse_names), len(self.runs)
        ax = axes_or_new(ax, (max(6.0, 0.3 * n * r + 2), 4.2))
        width = 0.8 / r
        x = np.arange(n)
        for j, (name, color) in enumerate(zip(self.runs, run_colors(self.runs, self.colors))):
            has = np.isfinite(self.error[j])  # a group without samples gets no bar (not a bar at 0)
            ax.bar((x - 0.4 + width * (j + 0.5))[has], 100 * self.error[j][has], width, color=color,
                   label=name)
        ax.set_xticks(x)
        ax.set_xticklabels(self.coarse_names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center",
                           fontsize="small")
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_xlabel("coarse group (domain) of the true label")
        ax.set_ylabel("top-1 error of the fine label (%)")
        ax.legend(fontsize="small")
        return ax
