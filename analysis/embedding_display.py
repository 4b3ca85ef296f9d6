"""t-SNE scatter of penultimate features (paper Fig. 3): points and their colours computed once,
drawn by matplotlib (`plot`) or handed to another renderer as a tidy table (`frame`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from . import _checks
from .embedding import TSNE_MAX_POINTS, tsne_2d
from .figures import axes_or_new, class_colors
from .hierarchy import group_names as names_of_groups

LEGEND_MAX = 20  # categories; above this a legend would hide the plot
TSNE_COLUMNS = ("x", "y", "row", "index", "class", "class_name", "group", "group_name", "category", "color")


@dataclass(frozen=True, eq=False)
class TSNEDisplay:
    """2-D embedding of one run's samples.

    coords: float32 (M, 2); rows: int64 (M,) rows of the predictions the points are; classes:
    int64 (M,) class of each point; groups: int64 (M,) coarse group of each point or None;
    indices: int64 (M,) data-set index of each point or None. color_by "class" or "group":
    what the colours stand for. Colours come from analysis.figures.class_colors over all
    classes (or groups), so a class keeps its colour whichever points were subsampled.
    """

    coords: np.ndarray
    rows: np.ndarray
    classes: np.ndarray
    class_names: tuple
    color_by: str
    groups: np.ndarray | None = None
    group_names: tuple | None = None
    indices: np.ndarray | None = None
    name: str = ""

    @classmethod
    def from_embedding(cls, coords: ArrayLike, rows: ArrayLike, labels: ArrayLike, *,
                       class_names: Sequence[str] | None = None,
                       fine_to_coarse: ArrayLike | None = None, coarse_names: Sequence[str] | None = None,
                       indices: ArrayLike | None = None, color_by: str = "auto", name: str = "") -> TSNEDisplay:
        """From t-SNE coords (M, 2) of the rows `rows` (M,) of a set with (N,) labels (and (N,)
        data-set indices). color_by: "class", "group" (needs fine_to_coarse) or "auto": by group
        when a mapping is given and there are more than 20 classes, else by class."""
        xy = _checks.matrix(coords, "coords", what="(M, 2)").astype(np.float32)
        if xy.shape[1] != 2:
            raise ValueError(f"coords must have 2 columns; got shape {xy.shape}")
        y = _checks.labels(labels, np.size(labels), None, rows_of="labels")
        rows = _checks.labels(rows, xy.shape[0], y.size, name="rows", rows_of="coords")
        mapping = None
        if fine_to_coarse is not None:
            mapping = _checks.labels(fine_to_coarse, np.size(fine_to_coarse), None, name="fine_to_coarse",
                                     rows_of="fine_to_coarse")
        n_classes = len(class_names) if class_names is not None else \
            max(int(y.max()) + 1, 0 if mapping is None else mapping.size)
        if y.max() >= n_classes or (mapping is not None and mapping.size != n_classes):
            raise ValueError(f"labels, class_names and fine_to_coarse disagree on the number of classes "
                             f"({n_classes} names, largest label {int(y.max())}, "
                             f"{None if mapping is None else mapping.size} mapping entries)")
        names = tuple(map(str, class_names)) if class_names is not None else tuple(map(str, range(n_classes)))
        groups = group_names = None
        if mapping is not None:
            group_names = tuple(names_of_groups(mapping, coarse_names))
            if mapping.max() >= len(group_names):
                raise ValueError(f"fine_to_coarse must lie in [0, {len(group_names)}); got {int(mapping.max())}")
            groups = mapping[y[rows]]
        if color_by == "auto":
            color_by = "group" if groups is not None and n_classes > LEGEND_MAX else "class"
        if color_by not in ("class", "group") or (color_by == "group" and groups is None):
            raise ValueError(f"color_by must be 'auto', 'class' or 'group' (with fine_to_coarse); got {color_by!r}")
        idx = None if indices is None else np.asarray(indices, dtype=np.int64)[rows]
        return cls(xy, rows, y[rows], names, color_by, groups, group_names, idx, str(name))

    @classmethod
    def from_features(cls, features: ArrayLike, labels: ArrayLike, *, max_points: int = TSNE_MAX_POINTS, seed: int = 0,
                      **kwargs) -> TSNEDisplay:
        """Run analysis.embedding.tsne_2d on (N, D) features (stratified subsample of at most
        max_points rows, seeded), then as from_embedding (same keyword options)."""
        coords, rows = tsne_2d(features, labels, max_points=max_points, seed=seed)
        return cls.from_embedding(coords, rows, labels, **kwargs)

    @property
    def categories(self) -> np.ndarray:
        """int64 (M,): the class or group id each point is coloured by."""
        return self.classes if self.color_by == "class" else self.groups

    @property
    def category_names(self) -> tuple:
        return self.class_names if self.color_by == "class" else self.group_names

    @property
    def palette(self) -> dict:
        """{category name: hex colour} for every class (or group), in id order."""
        return dict(zip(self.category_names, class_colors(len(self.category_names))))

    @property
    def show_legend(self) -> bool:
        return len(self.category_names) <= LEGEND_MAX

    @property
    def title(self) -> str:
        what = f"t-SNE of {len(self.rows)} samples, coloured by {self.color_by}"
        return f"{self.name}: {what}" if self.name else what

    def frame(self) -> pd.DataFrame:
        """One row per point: x, y, row, index (data-set index, or -1 when unknown), class,
        class_name, group and group_name (-1 / "" without a mapping), category (the name the
        colour stands for) and color (its hex colour, as drawn)."""
        m = len(self.rows)
        names = np.asarray(self.class_names, dtype=object)
        groups = self.groups if self.groups is not None else np.full(m, -1)
        group_names = np.asarray(self.group_names, dtype=object)[groups] if self.groups is not None else [""] * m
        colors = np.asarray(class_colors(len(self.category_names)), dtype=object)[self.categories]
        return pd.DataFrame({"x": self.coords[:, 0], "y": self.coords[:, 1], "row": self.rows,
                             "index": self.indices if self.indices is not None else np.full(m, -1),
                             "class": self.classes, "class_name": names[self.classes], "group": groups,
                             "group_name": group_names,
                             "category": np.asarray(self.category_names, dtype=object)[self.categories],
                             "color": colors}, columns=list(TSNE_COLUMNS))

    def plot(self, ax=None, *, point_size: float = 2.0, title: str | bool | None = None):
        """Scatter coloured by class or group, a legend of the categories present when there are at
        most 20 categories in all, no ticks (t-SNE axes carry no units). Returns the axes."""
        ax = axes_or_new(ax, (6, 6))
        palette = np.asarray(class_colors(len(self.category_names)))
        cats = self.categories
        ax.scatter(self.coords[:, 0], self.coords[:, 1], c=palette[cats], s=point_size, linewidths=0,
                   rasterized=True)
        if self.show_legend:
            for c in np.unique(cats):
                ax.scatter([], [], color=palette[c], s=10, label=self.category_names[c])
            ax.legend(fontsize="x-small", markerscale=1.5, loc="best", ncol=2)
        ax.set_xticks([])
        ax.set_yticks([])
        if title is None:
            title = self.title
        if title:
            ax.set_title(title, fontsize="medium")
        return ax
