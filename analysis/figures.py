"""Plotting: each function draws precomputed results onto the axes it is given and returns
nothing of substance; `save_figure` writes PNG + PDF atomically. No metric is computed here
beyond summing bin statistics for a legend."""

from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np
import seaborn as sns

from .calibration import ReliabilityBins, ece_from_bins

GT_COLOR = "#d62728"  # ground-truth highlight in the predictive-distribution figure


def _colors(n: int):
    """n distinguishable colours: tab10 / tab20 when they suffice, else evenly spaced hues."""
    if n <= 10:
        return sns.color_palette("tab10", n)
    if n <= 20:
        return sns.color_palette("tab20", n)
    return sns.color_palette("husl", n)


def plot_reliability(ax, bins: ReliabilityBins, *, label=None, color=None, count_ax=None):
    """Reliability diagram: per-bin accuracy bars, the gap to mean confidence shaded, the
    identity diagonal, the ECE in the legend; per-bin sample counts are drawn on `count_ax`
    (a new axis appended under `ax` when None). Returns the count axis."""
    centers = (bins.lower + bins.upper) / 2
    width = bins.upper - bins.lower
    full = bins.count > 0
    color = color or "C0"
    name = f"{label}: " if label else ""
    ax.bar(centers[full], bins.accuracy[full], width[full], color=color, edgecolor="black",
           linewidth=0.5, label=f"{name}accuracy (ECE {100 * ece_from_bins(bins):.2f}%)")
    gap = bins.confidence[full] - bins.accuracy[full]
    ax.bar(centers[full], gap, width[full], bottom=bins.accuracy[full], color=GT_COLOR,
           alpha=0.3, edgecolor=GT_COLOR, hatch="//", linewidth=0.5, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize="small")
    if count_ax is None:
        from mpl_toolkits.axes_grid1 import make_axes_locatable

        count_ax = make_axes_locatable(ax).append_axes("bottom", size="30%", pad=0.1, sharex=ax)
        ax.tick_params(labelbottom=False)
    count_ax.bar(centers, bins.count, width, color=color, edgecolor="black", linewidth=0.5)
    count_ax.set_xlim(0, 1)
    count_ax.set_xlabel("confidence (max softmax)")
    count_ax.set_ylabel("count")
    return count_ax


def logprob_hist_counts(logprobs_by_run: dict, *, bins: int = 30) -> tuple[np.ndarray, dict]:
    """(edges (bins + 1,), {run: counts (bins,)}) of natural-log probabilities: edges shared by the
    runs, from the lowest finite value (at most -1e-3) to 0; log(0) = -inf is counted in the lowest
    bin and NaN is left out."""
    if not logprobs_by_run:
        raise ValueError("logprobs_by_run is empty; pass at least one run")
    values = {k: np.asarray(v, dtype=np.float64) for k, v in logprobs_by_run.items()}
    finite = np.concatenate([v[np.isfinite(v)] for v in values.values()])
    low = float(finite.min()) if finite.size else -1.0
    edges = np.linspace(min(low, -1e-3), 0.0, bins + 1)
    counts = {k: np.histogram(np.clip(v[~np.isnan(v)], edges[0], 0.0), bins=edges)[0] for k, v in values.items()}
    return edges, counts


def plot_logprob_hist(ax, logprobs_by_run: dict, *, bins: int = 30, xlabel="log-probability"):
    """Overlaid histograms (logprob_hist_counts' shared bin edges) of natural-log probabilities, one per run."""
    edges, counts = logprob_hist_counts(logprobs_by_run, bins=bins)
    for (name, count), c in zip(counts.items(), _colors(len(counts))):
        ax.hist(edges[:-1], bins=edges, weights=count, color=c, alpha=0.45, label=f"{name} (n={count.sum()})")
        ax.hist(edges[:-1], bins=edges, weights=count, color=c, histtype="step", linewidth=1.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    ax.legend(fontsize="small")


def plot_predictive_distribution(ax_img, ax_bar, image, dist_by_run: dict, class_names):
    """The image on `ax_img`; on `ax_bar`, one horizontal bar group per run with its top-k
    classes (and the true class when outside the top k), the true class hatched and in bold.
    `dist_by_run` maps run name -> analysis.misclassified.predictive_distribution(...)."""
    if not dist_by_run:
        raise ValueError("dist_by_run is empty; pass at least one run")
    if image is not None:
        ax_img.imshow(np.asarray(image))
    ax_img.set_axis_off()
    y, ticks, tick_labels, true_ticks = 0.0, [], [], []
    for (name, d), c in zip(dist_by_run.items(), _colors(len(dist_by_run))):
        classes, probs = list(d["classes"]), list(d["probs"])
        if not d["true_in_topk"]:
            classes.append(d["true_class"])
            probs.append(d["true_prob"])
        for j, (cls, p) in enumerate(zip(classes, probs)):
            is_true = int(cls) == int(d["true_class"])
            ax_bar.barh(y, p, color=c, edgecolor="black" if is_true else c,
                        hatch="//" if is_true else None, label=name if j == 0 else None)
            ticks.append(y)
            tick_labels.append(str(class_names[int(cls)]))
            if is_true:
                true_ticks.append(len(ticks) - 1)
            y -= 1.0
        y -= 0.6  # gap between runs
    ax_bar.set_yticks(ticks)
    texts = ax_bar.set_yticklabels(tick_labels, fontsize="small")
    for j in true_ticks:
        texts[j].set_fontweight("bold")
        texts[j].set_color(GT_COLOR)
    ax_bar.set_xlim(0, 1)
    ax_bar.set_xlabel("softmax probability")
    ax_bar.legend(fontsize="small", loc="lower right")
    true_name = class_names[int(next(iter(dist_by_run.values()))["true_class"])]
    ax_img.set_title(f"ground truth: {true_name}", color=GT_COLOR, fontsize="small")


def plot_tsne(ax, coords, labels, *, title=None):
    """Scatter of 2-D embedding coordinates, coloured by class (no legend above 20 classes)."""
    coords = np.asarray(coords)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    palette = _colors(classes.size)
    colors = np.asarray(palette)[np.searchsorted(classes, labels)]
    ax.scatter(coords[:, 0], coords[:, 1], c=colors, s=2, linewidths=0, rasterized=True)
    if classes.size <= 20:
        for cls, c in zip(classes, palette):
            ax.scatter([], [], color=c, s=10, label=str(cls))
        ax.legend(fontsize="x-small", markerscale=1.5, loc="best", ncol=2)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def plot_hierarchical_confusion(ax, matrix, coarse_names):
    """Heatmap of a coarse × coarse confusion matrix (fractions), annotated in percent."""
    m = 100 * np.asarray(matrix, dtype=np.float64)
    small = m.shape[0] > 8  # shrink annotations for e.g. CIFAR-100's 20 superclasses
    sns.heatmap(m, ax=ax, annot=True, fmt=".1f", vmin=0, vmax=100, cmap="Blues", square=True,
                xticklabels=list(coarse_names), yticklabels=list(coarse_names),
                annot_kws={"fontsize": 5 if small else 10}, cbar_kws={"label": "% of true group"})
    ax.set_xlabel("coarse group of the predicted fine label")
    ax.set_ylabel("true coarse group")


def plot_txl_heatmap(ax, temps, lambdas, mean, *, metric="top1_error", percent=True):
    """Heatmap of a metric over the T (rows) × λ (columns) grid; NaN cells left blank."""
    m = np.asarray(mean, dtype=np.float64) * (100 if percent else 1)
    sns.heatmap(m, ax=ax, annot=True, fmt=".2f", cmap="viridis_r",
                xticklabels=[f"{v:g}" for v in lambdas], yticklabels=[f"{v:g}" for v in temps],
                cbar_kws={"label": f"{metric} (%)" if percent else metric})
    ax.set_xlabel("λ_cls")
    ax.set_ylabel("T")


def save_figure(fig, path_without_suffix, *, dpi: int = 150) -> tuple[str, str]:
    """Write `fig` to <path>.png and <path>.pdf, each via a temp file in the same folder and
    os.replace, so a reader never sees a half-written file. Returns the two paths."""
    base = os.fspath(path_without_suffix)
    folder = os.path.dirname(base) or "."
    os.makedirs(folder, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(base)}.", suffix=".tmp")
        os.close(fd)
        try:
            fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches="tight")
            os.replace(tmp, f"{base}.{ext}")
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        paths.append(f"{base}.{ext}")
    return tuple(paths)
