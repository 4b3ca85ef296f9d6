"""Drawing helpers shared by the displays (analysis.displays): colours of runs and classes, a
fresh figure when no axes are given, and writing a figure as PNG + PDF. No metric is computed
and no figure is composed here."""

from __future__ import annotations

import colorsys
import os
import re

from matplotlib.colors import to_hex
from matplotlib.figure import Figure

GT_COLOR = "#d62728"  # ground-truth highlight and reliability gap shading
# matplotlib's default cycle C0..C9 (tab10): run j is drawn in RUN_COLORS[j % 10] everywhere, in
# the PNG/PDF figures and (through the displays' frames) in the dashboard's charts.
RUN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
              "#bcbd22", "#17becf")
# tab20: pairs of a dark and a light shade of ten hues.
_TAB20 = ("#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd",
          "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d",
          "#17becf", "#9edae5")
_GOLDEN = 0.6180339887498949


def run_color(order: int) -> str:
    """Hex colour of the run at position `order` (0-based) among the runs shown."""
    return RUN_COLORS[int(order) % len(RUN_COLORS)]


def safe_stem(name) -> str:
    """`name` as a file-name stem: runs of characters other than A-Z a-z 0-9 . _ - become "_"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)) or "run"


def run_colors(runs, colors: dict | None = None) -> list[str]:
    """The colour of each of `runs` (names, in drawing order): `colors[name]` where given (a
    dashboard keeps one colour per run on every page and in every download), else run_color(j)."""
    colors = colors or {}
    return [colors.get(name) or run_color(j) for j, name in enumerate(runs)]


def class_colors(n: int) -> list[str]:
    """n hex colours for n categories: tab10 up to 10, tab20 up to 20; beyond, hues stepped by the
    golden ratio (so categories with neighbouring ids get far-apart hues) at three lightness and
    three saturation levels, which keeps 100+ categories far more distinguishable than n evenly
    spaced hues of one lightness."""
    if n <= 10:
        return list(RUN_COLORS[:n])
    if n <= 20:
        return list(_TAB20[:n])
    lightness = (0.45, 0.30, 0.65)
    saturation = (0.90, 0.65, 0.45)
    return [to_hex(colorsys.hls_to_rgb((j * _GOLDEN) % 1.0, lightness[j % 3], saturation[(j // 3) % 3]))
            for j in range(n)]


def axes_or_new(ax, figsize):
    """`ax` when given, else the single axes of a new matplotlib Figure of `figsize` inches
    (a Figure, not pyplot: nothing global is touched)."""
    return ax if ax is not None else Figure(figsize=figsize).subplots()


def save_figure(fig, path_without_suffix, *, dpi: int = 150) -> tuple[str, str]:
    """Write `fig` to <path>.png and <path>.pdf (plain writes; the folder is created when missing).
    Returns the two paths. Atomicity is the caller's business: cskd writes a report into a fresh
    folder and swaps it in whole."""
    base = os.fspath(path_without_suffix)
    os.makedirs(os.path.dirname(base) or ".", exist_ok=True)
    paths = (f"{base}.png", f"{base}.pdf")
    for path, ext in zip(paths, ("png", "pdf")):
        fig.savefig(path, format=ext, dpi=dpi, bbox_inches="tight")
    return paths
