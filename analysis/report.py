"""One call that turns saved predictions of one or more runs into a report folder: metrics,
seed-grouped tables and the paper's figures (Fig. 1b, 2, 3, 4 a/b/c, 5 and Table 7's grid), every
figure drawn through analysis.displays. Files are written plainly: the caller makes the report
appear atomically (cskd writes it into a fresh folder and swaps that in whole)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings

import numpy as np
from tqdm.auto import tqdm

from . import calibration as cal
from . import tables
from .confusion import accuracy_of_confusion, confusion_matrix, most_confused_pairs
from .displays import (
    DomainErrorDisplay,
    HierarchyDisplay,
    LogProbDisplay,
    PredictiveDistributionDisplay,
    ReliabilityDisplay,
    TSNEDisplay,
    TxLDisplay,
    side_by_side,
)
from .displays import overlay as overlay_reliability
from .embedding import TSNE_MAX_POINTS
from .figures import safe_stem, save_figure
from .hierarchy import group_error_key, group_names, hierarchical_accuracy, top1_error_by_group
from .metrics import nll, softmax, top_k_error
from .misclassified import misclassified_by_all
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
        if r["features"] is not None and np.shape(r["features"])[:1] != (n,):
            raise ValueError(f"run {name!r}: features have shape {np.shape(r['features'])}; "
                             f"expected ({n}, D)")
        if (r.get("val_logits") is None) != (r.get("val_labels") is None):
            raise ValueError(f"run {name!r}: give both val_logits and val_labels, or neither")


def run_metrics(run: dict, *, n_bins: int = 20, n_boot: int = 1000, ci_level: float = 0.95,
                seed: int = 0) -> dict:
    """All scalar metrics of one run, {name: float}.

    Always: top1_error, top5_error (k = min(5, C)), nll (nats), ece, mce (equal-width bins),
    adaptive_ece (equal-mass bins), classwise_ece, brier (in [0, 2]), overconfidence (mean
    confidence − accuracy, in [-1, 1]), recall_at_1 (when the run has features); with n_boot >= 1 also ece_ci_low and
    ece_ci_high (percentile bootstrap interval at ci_level, seeded; n_boot = 0 skips it). With
    val_logits / val_labels: temperature (fitted there), ece_after_ts, mce_after_ts, nll_after_ts. With
    fine_to_coarse: hierarchical_accuracy and one group_error_key(<group>) per coarse group (the
    fine-label top-1 error of the group's samples; NaN for a group without samples). Errors, ECE
    and recall are fractions in [0, 1]. Inputs are only read (read-only memmaps are fine).
    """
    z, y = run["logits"], np.asarray(run["labels"])
    p = softmax(z)
    conf, correct = cal.confidence_and_correctness(p, y)
    bins = cal.reliability_bins_from_confidence(conf, correct, n_bins=n_bins)
    m = {
        "top1_error": top_k_error(z, y, k=1),
        "top5_error": top_k_error(z, y, k=min(5, p.shape[1])),
        "nll": nll(z, y),
        "ece": cal.ece_from_bins(bins),
        "mce": cal.mce_from_bins(bins),
        "adaptive_ece": cal.adaptive_ece(p, y, n_bins=n_bins),
        "classwise_ece": cal.classwise_ece(p, y, n_bins=n_bins),
        "brier": cal.brier_score(p, y),
        "overconfidence": cal.overconfidence_from_confidence(conf, correct),
        # imported predictions may come without features: no Recall@1 then
        **({"recall_at_1": recall_at_k(run["features"], y, k=1)} if run.get("features") is not None else {}),
    }
    if n_boot:
        m["ece_ci_low"], m["ece_ci_high"] = cal.ece_bootstrap_ci(p, y, n_bins=n_bins, n_boot=n_boot,
                                                                 level=ci_level, seed=seed)
    if run.get("val_logits") is not None:
        t = cal.fit_temperature(run["val_logits"], run["val_labels"])
        zt = cal.apply_temperature(z, t)
        pt = softmax(zt)
        m.update(temperature=t, ece_after_ts=cal.ece(pt, y, n_bins=n_bins), mce_after_ts=cal.mce(pt, y, n_bins=n_bins),
                 nll_after_ts=nll(zt, y))
    if run.get("fine_to_coarse") is not None:
        pred = p.argmax(axis=1)
        names = group_names(run["fine_to_coarse"], run.get("coarse_names"))
        m["hierarchical_accuracy"] = hierarchical_accuracy(pred, y, run["fine_to_coarse"])
        errors = top1_error_by_group(pred, y, run["fine_to_coarse"], n_coarse=len(names))
        m.update({group_error_key(g): float(e) for g, e in zip(names, errors)})
    return m


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _jsonable(metrics: dict) -> dict:
    return {r: {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in m.items()} for r, m in metrics.items()}


def _class_tables(runs: dict, k: int = 10) -> tuple[str, str]:
    """CSV texts of the per-class accuracy (one column per run, fractions) and of each run's k most
    confused (true, predicted) class pairs."""
    first = next(iter(runs.values()))
    names, y = [str(c) for c in first["class_names"]], np.asarray(first["labels"])
    acc, pairs = {}, []
    for run, r in runs.items():
        m = confusion_matrix(np.argmax(np.asarray(r["logits"]), axis=1), y, n_classes=len(names))
        acc[run] = accuracy_of_confusion(m)
        for rank, (t, p, n) in enumerate(most_confused_pairs(m, k=k)):
            pairs.append([run, rank + 1, t, names[t], p, names[p], n])
    out = []
    for header, lines in ((["class", "class_name", *runs], [[c, names[c], *(repr(float(a[c])) for a in acc.values())]
                                                           for c in range(len(names))]),
                          (["run", "rank", "true", "true_name", "predicted", "predicted_name", "count"], pairs)):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(lines)
        out.append(buf.getvalue())
    return out[0], out[1]


def _seed_paired_log_probs(groups, logits: dict, labels):
    """Paper Fig. 2 with seeds: when the runs form exactly two seed groups (e.g. CE and CS-KD) that
    share their seeds, the samples misclassified by BOTH runs of each seed, pooled over the seeds
    (a sample counts once per seed it qualifies for): ({group label: {"predicted", "true"}}, rows,
    description), or None. Pooling keeps the histogram readable where the samples that every run
    of every seed gets wrong are few."""
    from .misclassified import log_probs_on

    if len(groups) != 2 or min(len(g.runs) for g in groups) < 2:
        return None
    seeds = [dict(zip(g.seeds, g.runs)) for g in groups]
    shared = [s for s in seeds[0] if s in seeds[1]]
    if len(shared) < 2:
        return None
    names = tables.row_labels(groups)
    rows, pooled = [], {n: {"predicted": [], "true": []} for n in names}
    for seed in shared:
        both = misclassified_by_all({g: logits[seeds[k][seed]] for k, g in enumerate(names)}, labels)
        rows.append(both)
        for k, name in enumerate(names):
            lp = log_probs_on(logits[seeds[k][seed]], labels, both)
            for kind in ("predicted", "true"):
                pooled[name][kind].append(lp[kind])
    merged = {n: {kind: np.concatenate(v[kind]) for kind in v} for n, v in pooled.items()}
    return merged, np.concatenate(rows), f"misclassified by both runs of a seed, pooled over {len(shared)} seeds"


def analyze_runs(runs: dict, out_dir, *, n_bins: int = 20, tsne_max_points: int = TSNE_MAX_POINTS,
                 progress: bool = True, overlay: bool = True, group_ignore=("seed",), n_boot: int = 1000,
                 ci_level: float = 0.95, log_counts: bool = False) -> dict:
    """Compute every metric of every run and write the report folder `out_dir` (plain writes, only
    inside out_dir; make it appear atomically by writing into a fresh folder and renaming it).

    runs: {name: {logits, features, labels, indices, class_names, dataset, split, config, optionally
    metrics + metrics_settings (run_metrics' result computed earlier, and the {n_bins, n_boot,
    ci_level} it was computed with: used as it is when they are this call's), and
    optionally images (dataset index -> HxWxC image), fine_to_coarse, coarse_names, val_logits,
    val_labels, tsne = (coords, rows)}}; arrays are only read. group_ignore: the config keys that
    do not change results (passed to tables.group_by_seed); the default ("seed",) only treats
    seeds as repeats, so a caller whose configs also hold bookkeeping keys (output folder,
    device, ...) must pass them. n_boot, ci_level: the ECE bootstrap (run_metrics); log_counts:
    reliability counts on a log scale; overlay: also write the overlaid reliability figure.

    Writes: metrics.json ({run: {metric: value}}, NaN as null); table.md/.csv/.tex (runs grouped
    over seeds, mean ± sample std, errors in %); per_class_accuracy.csv and most_confused.csv;
    with a coarse grouping table_domain_error.md/.csv/.tex (fine-label top-1 error per group);
    figures/<name>.png + .pdf: reliability (side by side), reliability_overlay (>= 2 runs and
    overlay), logprob_misclassified_by_all (>= 2 runs), logprob_misclassified_by_both_per_seed
    (two seed groups, e.g. CE and CS-KD: samples both runs of a seed misclassify),
    predictive_distribution (images given and a sample every run misclassifies),
    hierarchical_confusion_<run> and
    domain_top1_error (coarse grouping), tsne_<run>, txl_top1_error[_<method>] (a T × λ grid).
    Returns {run: {metric: float}} (see run_metrics).
    """
    check_runs(runs)
    out_dir = os.fspath(out_dir)
    fig_dir = os.path.join(out_dir, "figures")  # made by the first figure saved
    os.makedirs(out_dir, exist_ok=True)
    first = next(iter(runs.values()))
    labels = np.asarray(first["labels"])
    images = next((r["images"] for r in runs.values() if r.get("images") is not None), None)
    mapped = next((r for r in runs.values() if r.get("fine_to_coarse") is not None), None)
    mapping = None if mapped is None else mapped["fine_to_coarse"]
    coarse = None if mapped is None else group_names(mapped["fine_to_coarse"], mapped.get("coarse_names"))
    logits = {n: r["logits"] for n, r in runs.items()}
    metrics: dict = {}
    state: dict = {}

    def save(fig, name):
        save_figure(fig, os.path.join(fig_dir, name))

    def step_tables():
        _write(os.path.join(out_dir, "metrics.json"), json.dumps(_jsonable(metrics), indent=2, allow_nan=False) + "\n")
        records = [{"run": n, "config": r["config"], "metrics": metrics[n]} for n, r in runs.items()]
        state["groups"] = tables.group_by_seed(records, ignore=group_ignore)
        files = [("table", tables.DEFAULT_METRICS)]
        if coarse is not None:
            files.append(("table_domain_error", tuple(group_error_key(g) for g in coarse)))
        for stem, names in files:
            for ext, fn in (("md", tables.format_table), ("csv", tables.to_csv), ("tex", tables.to_latex)):
                _write(os.path.join(out_dir, f"{stem}.{ext}"), fn(state["groups"], metrics=names))
        per_class, confused = _class_tables(runs)
        _write(os.path.join(out_dir, "per_class_accuracy.csv"), per_class)
        _write(os.path.join(out_dir, "most_confused.csv"), confused)

    def step_reliability():
        displays = [ReliabilityDisplay.from_logits(z, labels, n_bins=n_bins, name=n) for n, z in logits.items()]
        save(side_by_side(displays, log_counts=log_counts), "reliability")
        if overlay and len(displays) >= 2:
            ax, _ = overlay_reliability(displays, log_counts=log_counts)
            save(ax.figure, "reliability_overlay")

    def step_misclassified():
        common = misclassified_by_all(logits, labels)
        if len(runs) >= 2:
            lp = LogProbDisplay.from_logits(logits, labels, rows=common, description="misclassified by every run")
            save(lp.plot()[0].figure, "logprob_misclassified_by_all")
        paired = _seed_paired_log_probs(state["groups"], logits, labels)
        if paired is not None:
            lp = LogProbDisplay.from_log_probs(*paired[:2], description=paired[2])
            save(lp.plot()[0].figure, "logprob_misclassified_by_both_per_seed")
        if images is not None and common.size:
            row = int(common[0])
            d = PredictiveDistributionDisplay.from_logits(logits, labels, row, k=5, class_names=first["class_names"],
                                                          shared_axis=len(runs) >= 2,
                                                          index=int(np.asarray(first["indices"])[row]))
            save(d.plot(image=images(d.index)).figure, "predictive_distribution")

    def step_hierarchy(name):
        d = HierarchyDisplay.from_logits(runs[name]["logits"], labels, mapping, coarse_names=coarse, name=name)
        save(d.plot().figure, f"hierarchical_confusion_{safe_stem(name)}")

    def step_domain():
        d = DomainErrorDisplay.from_logits(logits, labels, mapping, coarse_names=coarse)
        save(d.plot().figure, "domain_top1_error")

    def step_tsne(name):
        r = runs[name]
        options = dict(class_names=r["class_names"], fine_to_coarse=mapping, coarse_names=coarse,
                       indices=r["indices"], name=name)
        if r.get("tsne") is not None:
            coords, rows = r["tsne"]
            d = TSNEDisplay.from_embedding(coords, rows, labels, **options)
        else:
            d = TSNEDisplay.from_features(r["features"], labels, max_points=tsne_max_points, seed=0, **options)
        save(d.plot().figure, f"tsne_{safe_stem(name)}")

    def step_txl():
        grids = tables.txl_groups(state["groups"], by=("method",))
        for (method,), grid in grids.items():
            try:
                d = TxLDisplay.from_groups(grid, metric="top1_error", name=str(method))
            except ValueError as err:  # e.g. two models on one cell: the grid is ambiguous
                warnings.warn(f"T x lambda heatmap of {method} skipped: {err}", stacklevel=2)
                continue
            save(d.plot().figure, "txl_top1_error" if len(grids) == 1 else f"txl_top1_error_{safe_stem(str(method))}")

    options = dict(n_bins=n_bins, n_boot=n_boot, ci_level=ci_level)

    def step_metrics(name):
        r = runs[name]
        if r.get("metrics") is not None and r.get("metrics_settings") == options:
            metrics[name] = dict(r["metrics"])  # computed once already, with these settings (a caller's cache)
        else:
            metrics[name] = run_metrics({**r, "fine_to_coarse": mapping, "coarse_names": coarse}, **options)

    steps = [(f"metrics {n}", lambda n=n: step_metrics(n)) for n in runs]
    steps += [("tables", step_tables), ("reliability", step_reliability), ("misclassified", step_misclassified)]
    if mapping is not None:
        steps += [(f"hierarchy {n}", lambda n=n: step_hierarchy(n)) for n in runs]
        steps.append(("domain error", step_domain))
    steps += [(f"t-SNE {n}", lambda n=n: step_tsne(n)) for n in runs if runs[n]["features"] is not None]
    steps.append(("T x lambda", step_txl))
    with tqdm(total=len(steps), desc="analysis", unit="step", disable=not progress) as bar:
        for desc, fn in steps:
            bar.set_postfix_str(desc)
            fn()
            bar.update()
    return metrics
