"""The T × λ grid of a metric (supplementary Table 7) as a heat map: grid computed once from
seed-grouped runs, drawn by matplotlib (`plot`) or handed to another renderer (`frame`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import seaborn as sns

from .figures import axes_or_new
from .tables import NOT_FRACTIONS, txl_grid

TXL_COLUMNS = ("temperature", "lambda_cls", "value", "std", "text")


@dataclass(frozen=True, eq=False)
class TxLDisplay:
    """mean[i, j] and std[i, j] of `metric` over the seeds at temperature temperatures[i] and
    λ_cls lambdas[j] (metric units: fractions for errors; NaN where no run has the cell; std the
    sample std, NaN for a single run). `percent`: fractions are shown × 100."""

    temperatures: np.ndarray
    lambdas: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    metric: str
    percent: bool
    name: str = ""

    @classmethod
    def from_groups(cls, groups: Sequence, *, metric: str = "top1_error", name: str = "") -> TxLDisplay:
        """From analysis.tables.RunGroup's of one data set, model and method (tables.txl_grid);
        fraction metrics are shown in percent, the others (NLL, temperature) as they are."""
        temps, lambdas, mean, std = txl_grid(groups, metric=metric)
        return cls(temps, lambdas, mean, std, metric, metric not in NOT_FRACTIONS, str(name))

    @property
    def scale(self) -> float:
        return 100.0 if self.percent else 1.0

    @property
    def value_label(self) -> str:
        """The colour bar's label: "<metric> (%)" or "<metric>"."""
        return f"{self.metric} (%)" if self.percent else self.metric

    def frame(self) -> pd.DataFrame:
        """One row per cell: temperature, lambda_cls, value and std in the units drawn (× 100 when
        `percent`; NaN for an empty cell), text (the annotation, "" for an empty cell)."""
        t, lam = np.meshgrid(self.temperatures, self.lambdas, indexing="ij")
        value = (self.mean * self.scale).ravel()
        return pd.DataFrame({"temperature": t.ravel(), "lambda_cls": lam.ravel(), "value": value,
                             "std": (self.std * self.scale).ravel(),
                             "text": ["" if np.isnan(v) else f"{v:.2f}" for v in value]}, columns=list(TXL_COLUMNS))

    def plot(self, ax=None):
        """Heat map, T down the rows and λ across, annotated with two decimals, empty cells blank.
        Returns the axes."""
        ax = axes_or_new(ax, (1.2 * len(self.lambdas) + 3, 0.8 * len(self.temperatures) + 2))
        sns.heatmap(self.mean * self.scale, ax=ax, annot=True, fmt=".2f", cmap="viridis_r",
                    xticklabels=[f"{v:g}" for v in self.lambdas], yticklabels=[f"{v:g}" for v in self.temperatures],
                    cbar_kws={"label": self.value_label})
        ax.set_xlabel("λ_cls")
        ax.set_ylabel("T")
        if self.name:
            ax.set_title(f"{self.name}: {self.value_label}", fontsize="medium")
        return ax
