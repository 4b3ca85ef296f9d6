"""One call that turns saved predictions of one or more runs into a report folder: metrics,
seed-grouped tables and the paper's figures (Fig. 2, 1b, 3, 4, 5 and Table 7's grid)."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings

import numpy as np
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from . import calibration as cal
from . import figures, tables
from .embedding import tsne_2d
from .hierarchy import hierarchical_accuracy, hierarchical_confusion
from .metrics import nll, softmax, top_k_error
from .misclassified import log_probs_on, misclassified_by_all, predictive_distribution
from .retrieval import recall_at_k

REQUIRED_KEYS = ("logits", "features", "labels", "indices", "class_names", "dataset", "split",
                 "config")


def check_runs(runs: dict) -> None:
    """Raise ValueError unless all runs are complete and were evaluated on the same samples:
    same dataset, split, labels, indices and number of classes."""
    if not isinstance(runs, dict) or not runs:
        raise ValueError("runs must be a non-empty dict of run name -> run data")
    for name, r in runs.items():
        missing = [k for k in REQUIRED_KEYS if k not in r]
        if missing:
            raise ValueError(f"run {name!r} lacks the keys {missing}")
    for key in ("dataset", "split"):
        values = {name: r[key] for name, r in runs.items()}
        if len(set(values.values())) > 1:
            shown = ", ".join(f"{n!r}: {v!r}" for n, v in values.items())
            raise ValueError(f"runs differ in {key} ({shown}); analyse one data set and split "
                             "at a time")
    first_name, first = next(iter(runs.items()))
    for name, r in runs.items():
        for key in ("labels", "indices"):
            if not np.array_equal(np.asarray(r[key]), np.asarray(first[key])):
                raise ValueError(f"runs {first_name!r} and {name!r} differ in {key}; evaluate "
                                 "every run on the same samples in the same order")
        n, c = np.shape(r["logits"]) if np.ndim(r["logits"]) == 2 else (None, None)
        if n != len(first["labels"]) or c != np.shape(first["logits"])[1]:
            raise ValueError(f"run {name!r}: logits have shape {np.shape(r['logits'])}; expected "
                             f"({len(first['labels'])}, C) with the same C in every run")
        if len(r["class_names"]) != c:
            raise ValueError(f"run {name!r}: {len(r['class_names'])} class_names for {c} classes")
        if np.shape(r["features"])[:1] != (n,):
            raise ValueError(f"run {name!r}: features have shape {np.shape(r['features'])}; "
                             f"expected ({n}, D)")
        if (r.get("val_logits") is None) != (r.get("val_labels") is None):
            raise ValueError(f"run {name!r}: give both val_logits and val_labels, or neither")


def run_metrics(run: dict, *, n_bins: int = 20) -> dict:
    """All scalar metrics of one run (fractions in [0, 1] except nll and temperature)."""
    z, y = run["logits"], np.asarray(run["labels"])
    p = softmax(z)
    m = {
        "top1_error": top_k_error(z, y, k=1),
        "top5_error": top_k_error(z, y, k=min(5, p.shape[1])),
        "nll": nll(z, y),
        "ece": cal.ece(p, y, n_bins=n_bins),
        "mce": cal.mce(p, y, n_bins=n_bins),
        "adaptive_ece": cal.adaptive_ece(p, y, n_bins=n_bins),
        "classwise_ece": cal.classwise_ece(p, y, n_bins=n_bins),
        "recall_at_1": recall_at_k(run["features"], y, k=1),
    }
    if run.get("val_logits") is not None:
        t = cal.fit_temperature(run["val_logits"], run["val_labels"])
        zt = cal.apply_temperature(z, t)
        m.update(temperature=t, ece_after_ts=cal.ece(softmax(zt), y, n_bins=n_bins),
                 nll_after_ts=nll(zt, y))
    if run.get("fine_to_coarse") is not None:
        m["hierarchical_accuracy"] = hierarchical_accuracy(p.argmax(axis=1), y, run["fine_to_coarse"])
    return m


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)) or "run"


def _write_text(path: str, text: str) -> None:
    """Write via a temp file in the same folder and os.replace (never a half-written file)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(metrics: dict) -> dict:
    return {r: {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in m.items()} for r, m in metrics.items()}


def _fig_reliability(runs, n_bins):
    fig = Figure(figsize=(4 * len(runs), 5.5))
    axes = fig.subplots(2, len(runs), sharex=True, sharey="row", squeeze=False,
                        gridspec_kw={"height_ratios": [3, 1]})
    for j, (name, r) in enumerate(runs.items()):
        bins = cal.reliability_bins(softmax(r["logits"]), r["labels"], n_bins=n_bins)
        figures.plot_reliability(axes[0, j], bins, label=name, color=f"C{j}", count_ax=axes[1, j])
        axes[0, j].set_title(name)
    return fig


def _fig_logprobs(runs, idx):
    fig = Figure(figsize=(10, 4))
    ax_pred, ax_true = fig.subplots(1, 2)
    lp = {name: log_probs_on(r["logits"], r["labels"], idx) for name, r in runs.items()}
    figures.plot_logprob_hist(ax_pred, {n: v["predicted"] for n, v in lp.items()},
                              xlabel="log-probability of the predicted class")
    figures.plot_logprob_hist(ax_true, {n: v["true"] for n, v in lp.items()},
                              xlabel="log-probability of the ground-truth class")
    fig.suptitle(f"{len(idx)} samples misclassified by all runs")
    return fig


def _fig_predictive(runs, i, images):
    first = next(iter(runs.values()))
    k = min(5, np.shape(first["logits"])[1])
    dists = {n: predictive_distribution(r["logits"], r["labels"], i, k=k) for n, r in runs.items()}
    fig = Figure(figsize=(9, 1.2 + 0.35 * (k + 1.6) * len(runs)))
    ax_img, ax_bar = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2.5]})
    figures.plot_predictive_distribution(ax_img, ax_bar, images(int(first["indices"][i])), dists,
                                         first["class_names"])
    return fig


def _fig_hierarchy(run, coarse_names):
    mapping = np.asarray(run["fine_to_coarse"])
    n = len(coarse_names) if coarse_names is not None else int(mapping.max()) + 1
    names = list(coarse_names) if coarse_names is not None else [str(g) for g in range(n)]
    h = hierarchical_confusion(np.argmax(run["logits"], axis=1), run["labels"], mapping, n_coarse=n)
    side = max(4.0, 0.45 * n + 2)
    fig = Figure(figsize=(side + 1, side))
    figures.plot_hierarchical_confusion(fig.subplots(), h, names)
    return fig


def _fig_tsne(name, run, max_points):
    if run.get("tsne") is not None:
        coords, idx = run["tsne"]
    else:
        coords, idx = tsne_2d(run["features"], run["labels"], max_points=max_points, seed=0)
    fig = Figure(figsize=(6, 6))
    figures.plot_tsne(fig.subplots(), coords, np.asarray(run["labels"])[np.asarray(idx)],
                      title=f"{name}: t-SNE of {len(idx)} samples")
    return fig


def _txl_grids(groups) -> dict:
    """{method: groups} for every method whose groups span >= 2 temperatures or lambdas (one
    T x λ grid per method, so a sweep of several methods does not collide on one cell)."""
    by_method: dict = {}
    for g in groups:
        if (g.config.get("method") != "ce" and isinstance(g.config.get("temperature"), (int, float))
                and isinstance(g.config.get("lambda_cls"), (int, float))):
            by_method.setdefault(g.config.get("method"), []).append(g)
    return {m: gs for m, gs in by_method.items()
            if len({g.config["temperature"] for g in gs}) >= 2 or len({g.config["lambda_cls"] for g in gs}) >= 2}


def analyze_runs(runs: dict, out_dir, *, n_bins: int = 20, tsne_max_points: int = 10000,
                 progress: bool = True) -> dict:
    """Compute every metric of every run and write the report folder `out_dir`.

    Writes metrics.json ({run: {metric: value}}, NaN as null), table.md/.csv/.tex (runs
    grouped over seeds, mean ± std in %) and figures/*.png + *.pdf. See the module docstring of
    each analysis module for the metric definitions. `images`, when given, is called with the
    dataset index `indices[i]` of a row. Returns {run: {metric: float}}.
    """
    check_runs(runs)
    out_dir = os.fspath(out_dir)
    fig_dir = os.path.join(out_dir, "figures")  # made by the first figure saved
    os.makedirs(out_dir, exist_ok=True)
    first = next(iter(runs.values()))
    images = next((r["images"] for r in runs.values() if r.get("images") is not None), None)
    mapped = next((r for r in runs.values() if r.get("fine_to_coarse") is not None), None)
    metrics: dict = {}
    state: dict = {}

    def save(fig, name):
        figures.save_figure(fig, os.path.join(fig_dir, name))

    def step_tables():
        _write_text(os.path.join(out_dir, "metrics.json"),
                    json.dumps(_jsonable(metrics), indent=2, allow_nan=False) + "\n")
        records = [{"run": n, "config": r["config"], "metrics": metrics[n]} for n, r in runs.items()]
        state["groups"] = tables.group_by_seed(records)
        for ext, fn in (("md", tables.format_table), ("csv", tables.to_csv), ("tex", tables.to_latex)):
            _write_text(os.path.join(out_dir, f"table.{ext}"), fn(state["groups"]))

    def step_misclassified():
        state["common"] = misclassified_by_all({n: r["logits"] for n, r in runs.items()},
                                               first["labels"])
        if len(runs) >= 2 and state["common"].size:
            save(_fig_logprobs(runs, state["common"]), "logprob_misclassified_by_all")
        if images is not None and state["common"].size:
            save(_fig_predictive(runs, int(state["common"][0]), images), "predictive_distribution")

    def step_txl():
        grids = _txl_grids(state["groups"])
        for method, grid in grids.items():
            try:
                temps, lambdas, mean, _ = tables.txl_grid(grid, metric="top1_error")
            except ValueError as err:  # e.g. two models on one cell: the grid is ambiguous
                warnings.warn(f"T x lambda heatmap of {method} skipped: {err}", stacklevel=2)
                continue
            fig = Figure(figsize=(1.2 * len(lambdas) + 3, 0.8 * len(temps) + 2))
            figures.plot_txl_heatmap(fig.subplots(), temps, lambdas, mean)
            save(fig, "txl_top1_error" if len(grids) == 1 else f"txl_top1_error_{_safe(str(method))}")

    mapping = None if mapped is None else mapped["fine_to_coarse"]
    steps = [(f"metrics {n}", lambda n=n: metrics.__setitem__(n, run_metrics(
        {**runs[n], "fine_to_coarse": mapping}, n_bins=n_bins))) for n in runs]
    steps += [("tables", step_tables),
              ("reliability", lambda: save(_fig_reliability(runs, n_bins), "reliability")),
              ("misclassified", step_misclassified)]
    if mapped is not None:
        steps += [(f"hierarchy {n}", lambda n=n: save(
            _fig_hierarchy({**runs[n], "fine_to_coarse": mapping},
                           mapped.get("coarse_names")), f"hierarchical_confusion_{_safe(n)}"))
            for n in runs]
    steps += [(f"t-SNE {n}", lambda n=n: save(_fig_tsne(n, runs[n], tsne_max_points),
                                             f"tsne_{_safe(n)}")) for n in runs]
    steps.append(("T x lambda", step_txl))
    with tqdm(total=len(steps), desc="analysis", unit="step", disable=not progress) as bar:
        for desc, fn in steps:
            bar.set_postfix_str(desc)
            fn()
            bar.update()
    return metrics
