"""Cached reading of run files and cached analysis results.

Every function takes file keys (resolved path, mtime_ns, size) from `app.paths`, never arrays, so
a cache lookup hashes a few strings instead of megabytes, and a rewritten file gets a new entry.

Two caches, on purpose:
- `st.cache_resource` holds the raw prediction arrays (tens of MB per 10k-sample run), read-only
  and shared, because `st.cache_data` would pickle and copy them on every hit;
- `st.cache_data` holds everything shown: metrics, bins, index lists, figure bytes. These are
  small, so the copy is cheap and no session can mutate another's results.
All metrics come from the `analysis` package; this module only wires files to it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from matplotlib.figure import Figure

from analysis import calibration as cal
from analysis import figures
from analysis.hierarchy import hierarchical_accuracy, hierarchical_confusion
from analysis.metrics import softmax
from analysis.misclassified import (
    log_probs_on,
    misclassified_by_all,
    misclassified_by_first_not_second,
    predictive_distribution,
)
from analysis.report import run_metrics
from cskd import runs
from cskd.errors import UserError
from cskd.runs import load_predictions, read_config, read_metrics, read_tsne_cache

DPI = 150  # of the downloaded PNG figures


@st.cache_data(show_spinner=False, max_entries=1024)
def config(run: str, key) -> dict:
    """The TrainConfig of the run folder `run` as a dict (UserError naming config.json when it is
    damaged). `key` is config.json's file key: it only makes a rewritten file a new entry."""
    if key is None:
        raise UserError(f"{run}/config.json is missing; this folder is not a cskd run")
    return read_config(Path(run)).to_dict()


@st.cache_data(show_spinner=False, max_entries=1024)
def summary(key) -> dict:
    """summary.json as a dict; {} when the run has none."""
    if key is None:
        return {}
    try:
        data = json.loads(Path(key[0]).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{key[0]} is not valid JSON ({type(e).__name__}); the run folder is damaged") from None
    if not isinstance(data, dict):
        raise UserError(f"{key[0]} does not hold a JSON object; the run folder is damaged")
    return data


@st.cache_data(show_spinner=False, max_entries=1024)
def curves(run: str, key) -> list[dict]:
    """The per-epoch records of the run's metrics.jsonl ([] when absent); `key` as in config()."""
    return [] if key is None else read_metrics(Path(run))


@st.cache_data(show_spinner=False, max_entries=1024)
def made_by_run(run: str, key, config_key) -> bool:
    """cskd.runs.made_by_run: whether the predictions file of file key `key` was made from best.pt
    of the run in `run`. `config_key` (config.json's file key) only makes a rewritten config a new entry."""
    return runs.made_by_run(Path(key[0]), Path(run))


@st.cache_resource(show_spinner=False, max_entries=12)
def predictions(key) -> dict:
    """A predictions-<split>.npz as returned by cskd.runs.load_predictions, arrays made read-only
    because every session shares them."""
    data = load_predictions(Path(key[0]))
    for v in data.values():
        if isinstance(v, np.ndarray):
            v.flags.writeable = False
    return data


@st.cache_data(show_spinner=False, max_entries=256)
def test_metrics(test, val) -> dict:
    """analysis.report.run_metrics of the test predictions (20 bins, as the paper), temperature
    fitted on the validation predictions when they exist."""
    p = predictions(test)
    run = {k: p[k] for k in ("logits", "labels", "features")}
    if val is not None:
        v = predictions(val)
        run.update(val_logits=v["logits"], val_labels=v["labels"])
    if "fine_to_coarse" in p:
        run["fine_to_coarse"] = p["fine_to_coarse"]
    return run_metrics(run, n_bins=20)


@st.cache_data(show_spinner=False, max_entries=256)
def temperature(val) -> float | None:
    """Temperature fitted on the validation logits (None without validation predictions)."""
    if val is None:
        return None
    v = predictions(val)
    return cal.fit_temperature(v["logits"], v["labels"])


@st.cache_data(show_spinner=False, max_entries=512)
def reliability(test, val, n_bins: int, scaled: bool):
    """(ReliabilityBins, ECE, MCE) of the test predictions, temperature-scaled when `scaled`."""
    p = predictions(test)
    z = p["logits"]
    if scaled:
        z = cal.apply_temperature(z, temperature(val))
    probs = softmax(z)
    bins = cal.reliability_bins(probs, p["labels"], n_bins=n_bins)
    return bins, cal.ece_from_bins(bins), cal.mce(probs, p["labels"], n_bins=n_bins)


def _fig_bytes(fig: Figure, fmt: str) -> bytes:
    """The figure as PNG or PDF bytes, cropped to its content."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


@st.cache_data(show_spinner=False, max_entries=128)
def reliability_figure(runs: tuple, n_bins: int, scaled: bool, fmt: str = "png") -> bytes:
    """Reliability diagrams of `runs` ((name, test key, val key), ...) side by side, sharing
    both axes, per-bin counts underneath."""
    fig = Figure(figsize=(3.6 * len(runs) + 0.6, 4.6))
    axes = fig.subplots(2, len(runs), sharex=True, sharey="row", squeeze=False,
                        gridspec_kw={"height_ratios": [3, 1]})
    for j, (name, test, val) in enumerate(runs):
        bins, _, _ = reliability(test, val, n_bins, scaled)
        figures.plot_reliability(axes[0, j], bins, label=None, color=f"C{j}", count_ax=axes[1, j])
        title = f"{name}\n(T = {temperature(val):.2f})" if scaled else name
        axes[0, j].set_title(title, fontsize="small")
    return _fig_bytes(fig, fmt)


def _same_samples(keys: tuple) -> None:
    """Raise UserError unless all runs' predictions cover the same samples in the same order."""
    first = predictions(keys[0])
    for key in keys[1:]:
        p = predictions(key)
        if p["dataset"] != first["dataset"] or not np.array_equal(p["indices"], first["indices"]) \
                or not np.array_equal(p["labels"], first["labels"]):
            raise UserError(f"{key[0]} and {keys[0][0]} hold predictions on different samples; "
                            "pick runs of one data set and split")


@st.cache_data(show_spinner=False, max_entries=256)
def misclassified(keys: tuple, first_not_second: bool = False) -> np.ndarray:
    """Rows misclassified by all runs of `keys`, or (first_not_second) by keys[0] but not keys[1]."""
    _same_samples(keys)
    labels = predictions(keys[0])["labels"]
    if first_not_second:
        return misclassified_by_first_not_second(predictions(keys[0])["logits"],
                                                 predictions(keys[1])["logits"], labels)
    return misclassified_by_all({k[0]: predictions(k)["logits"] for k in keys}, labels)


@st.cache_data(show_spinner=False, max_entries=128)
def _logprobs(named_keys: tuple, first_not_second: bool) -> dict:
    """{run: analysis.misclassified.log_probs_on(...)} on the rows misclassified() picks."""
    keys = tuple(k for _, k in named_keys)
    idx = misclassified(keys, first_not_second)
    labels = predictions(keys[0])["labels"]
    return {name: log_probs_on(predictions(k)["logits"], labels, idx) for name, k in named_keys}


@st.cache_data(show_spinner=False, max_entries=128)
def logprob_figure(named_keys: tuple, first_not_second: bool = False, fmt: str = "png") -> bytes:
    """Paper Fig. 2: histograms of the log-probability of the predicted and of the true class on
    the misclassified samples, one colour per run."""
    lp = _logprobs(named_keys, first_not_second)
    fig = Figure(figsize=(10, 3.6))
    ax_pred, ax_true = fig.subplots(1, 2)
    figures.plot_logprob_hist(ax_pred, {n: v["predicted"] for n, v in lp.items()},
                              xlabel="log-probability of the predicted class")
    figures.plot_logprob_hist(ax_true, {n: v["true"] for n, v in lp.items()},
                              xlabel="log-probability of the ground-truth class")
    return _fig_bytes(fig, fmt)


@st.cache_data(show_spinner=False, max_entries=128)
def logprob_hist(named_keys: tuple, first_not_second: bool = False, bins: int = 30) -> pd.DataFrame:
    """Histogram rows (run, order, of, lower, upper, zero, count) of the log-probabilities of
    Fig. 2, binned by analysis.figures.logprob_hist_counts (as the downloaded figure)."""
    lp = _logprobs(named_keys, first_not_second)
    frames = []
    for kind, of in (("predicted", "predicted class"), ("true", "ground-truth class")):
        edges, counts = figures.logprob_hist_counts({n: v[kind] for n, v in lp.items()}, bins=bins)
        for j, (name, count) in enumerate(counts.items()):
            frames.append(pd.DataFrame({"run": name, "order": j, "of": of, "lower": edges[:-1],
                                        "upper": edges[1:], "zero": 0, "count": count}))
    return pd.concat(frames, ignore_index=True)


@st.cache_data(show_spinner=False, max_entries=256)
def top_predictions(key, rows: tuple) -> list[int]:
    """Top-1 predicted class of each of `rows`."""
    return [int(c) for c in np.argmax(predictions(key)["logits"][list(rows)], axis=1)]


@st.cache_data(show_spinner=False, max_entries=1024)
def distribution(key, row: int, k: int = 5) -> dict:
    """analysis.misclassified.predictive_distribution of one row (k capped at the class count)."""
    p = predictions(key)
    return predictive_distribution(p["logits"], p["labels"], row, k=min(k, p["logits"].shape[1]))


def display_image(image: np.ndarray, min_side: int = 64) -> np.ndarray:
    """An HxWxC uint8 image ready for st.image: grey if one channel, enlarged by an integer
    factor (nearest neighbour, so 8x8 digits stay sharp) to at least `min_side` pixels."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    factor = max(1, -(-min_side // max(img.shape[:2])))
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)


@st.cache_data(show_spinner=False, max_entries=64)
def gallery(key, rows: tuple, min_side: int = 64) -> list | None:
    """Display-ready images of `rows`, or None when the predictions carry no images."""
    p = predictions(key)
    if "images" not in p:
        return None
    return [display_image(p["images"][r], min_side) for r in rows]


@st.cache_data(show_spinner=False, max_entries=64)
def tsne_points(tsne, test):
    """(coords, rows) of the cached t-SNE when it is at least as new as the predictions, else
    None (the cache must be recomputed). A damaged cache is a UserError naming the file."""
    if tsne is None or test is None or tsne[1] < test[1]:
        return None
    return read_tsne_cache(Path(tsne[0]), Path(test[0]), len(predictions(test)["labels"]))


@st.cache_data(show_spinner=False, max_entries=64)
def tsne_frame(tsne, test):
    """The t-SNE points as a table (x, y, class, index) for a scatter chart, or None."""
    points = tsne_points(tsne, test)
    if points is None:
        return None
    coords, rows = points
    p = predictions(test)
    names = pd.Categorical.from_codes(p["labels"][rows], categories=p["class_names"])
    return pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "class": names, "index": p["indices"][rows]})


@st.cache_data(show_spinner=False, max_entries=64)
def hierarchy(test):
    """(hierarchical accuracy, coarse confusion matrix, coarse names) of a run whose predictions
    carry fine_to_coarse."""
    p = predictions(test)
    mapping = p["fine_to_coarse"]
    names = p.get("coarse_names") or [str(g) for g in range(int(mapping.max()) + 1)]
    pred = np.argmax(p["logits"], axis=1)
    h = hierarchical_confusion(pred, p["labels"], mapping, n_coarse=len(names))
    return hierarchical_accuracy(pred, p["labels"], mapping), h, list(names)


@st.cache_data(show_spinner=False, max_entries=64)
def hierarchy_figure(test, fmt: str = "png") -> bytes:
    """Paper Fig. 4 as PNG or PDF bytes (analysis.figures.plot_hierarchical_confusion)."""
    _, h, names = hierarchy(test)
    side = max(4.0, 0.4 * len(names) + 2)
    fig = Figure(figsize=(side + 1, side))
    figures.plot_hierarchical_confusion(fig.subplots(), h, names)
    return _fig_bytes(fig, fmt)
