"""One call that turns saved predictions of one or more runs into a report folder: metrics,
seed-grouped tables and the paper's figures (Fig. 1b, 2, 3, 4 a/b/c, 5 and Table 7's grid), every
figure drawn through analysis.displays. Files are written plainly: the caller makes the report
appear atomically (cskd writes it into a fresh folder and swaps that in whole).

analyze_runs calls one step per table or figure in turn (compute_metrics, write_tables,
draw_reliability, draw_log_probs, draw_predictive_distribution, draw_hierarchy, draw_domain_error,
draw_tsne, draw_txl), each a function of the shared `Report`: the runs (analysis.report_input.RunData),
the report folder, the settings, and what earlier steps left (the metrics, the seed groups). The
metrics are analysis.summary.run_metrics', the code path cskd's stats cache computes through too."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
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
from .hierarchy import group_error_key, group_names
from .misclassified import log_probs_on, misclassified_by_all
from .report_input import REQUIRED_KEYS, RunData, as_runs, check_runs
from .summary import run_metrics

__all__ = ["REQUIRED_KEYS", "RunData", "analyze_runs", "check_runs", "run_metrics"]


@dataclass
class Report:
    """What the steps share. runs: {name: RunData}, checked; out_dir: the report folder;
    settings: {n_bins, n_boot, ci_level} of the metrics; mapping / coarse: the first coarse grouping
    among the runs (fine_to_coarse and its group names) or None; metrics and groups: filled by the
    metrics and tables steps."""

    runs: dict[str, RunData]
    out_dir: str
    settings: dict
    group_ignore: tuple
    tsne_max_points: int
    overlay: bool
    log_counts: bool
    mapping: object = None
    coarse: list | None = None
    metrics: dict = field(default_factory=dict)
    groups: list | None = None

    @property
    def first(self) -> RunData:
        return next(iter(self.runs.values()))

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.first.labels)

    @property
    def logits(self) -> dict:
        return {n: r.logits for n, r in self.runs.items()}

    def save(self, fig, stem: str) -> None:
        save_figure(fig, os.path.join(self.out_dir, "figures", stem))  # the folder is made by the first figure

    def write(self, name: str, text: str) -> None:
        with open(os.path.join(self.out_dir, name), "w", encoding="utf-8") as f:
            f.write(text)


def _jsonable(metrics: dict) -> dict:
    return {r: {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in m.items()} for r, m in metrics.items()}


def write_tables(rep: Report) -> None:
    """metrics.json, table.md/.csv/.tex (runs grouped over seeds), table_domain_error.* (with a
    coarse grouping), per_class_accuracy.csv and most_confused.csv; sets rep.groups."""
    rep.write("metrics.json", json.dumps(_jsonable(rep.metrics), indent=2, allow_nan=False) + "\n")
    records = [{"run": n, "config": r.config, "metrics": rep.metrics[n]} for n, r in rep.runs.items()]
    rep.groups = tables.group_by_seed(records, ignore=rep.group_ignore)
    files = [("table", tables.DEFAULT_METRICS)]
    if rep.coarse is not None:
        files.append(("table_domain_error", tuple(group_error_key(g) for g in rep.coarse)))
    for stem, names in files:
        for ext, fn in (("md", tables.format_table), ("csv", tables.to_csv), ("tex", tables.to_latex)):
            rep.write(f"{stem}.{ext}", fn(rep.groups, metrics=names))
    per_class, confused = class_tables(rep.runs)
    rep.write("per_class_accuracy.csv", per_class)
    rep.write("most_confused.csv", confused)


def class_tables(runs: dict[str, RunData], k: int = 10) -> tuple[str, str]:
    """CSV texts of the per-class accuracy (one column per run, fractions) and of each run's k most
    confused (true, predicted) class pairs."""
    first = next(iter(runs.values()))
    names, y = [str(c) for c in first.class_names], np.asarray(first.labels)
    acc, pairs = {}, []
    for run, r in runs.items():
        m = confusion_matrix(np.argmax(np.asarray(r.logits), axis=1), y, n_classes=len(names))
        acc[run] = accuracy_of_confusion(m)
        for rank, (t, p, n) in enumerate(most_confused_pairs(m, k=k)):
            pairs.append([run, rank + 1, t, names[t], p, names[p], n])
    per_class = [[c, names[c], *(repr(float(a[c])) for a in acc.values())] for c in range(len(names))]
    out = []
    for header, lines in ((["class", "class_name", *runs], per_class),
                          (["run", "rank", "true", "true_name", "predicted", "predicted_name", "count"], pairs)):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(lines)
        out.append(buf.getvalue())
    return out[0], out[1]


def draw_reliability(rep: Report) -> None:
    """Fig. 5: figures/reliability (side by side) and reliability_overlay (>= 2 runs and overlay)."""
    displays = [ReliabilityDisplay.from_logits(z, rep.labels, n_bins=rep.settings["n_bins"], name=n)
                for n, z in rep.logits.items()]
    rep.save(side_by_side(displays, log_counts=rep.log_counts), "reliability")
    if rep.overlay and len(displays) >= 2:
        ax, _ = overlay_reliability(displays, log_counts=rep.log_counts)
        rep.save(ax.figure, "reliability_overlay")


def draw_log_probs(rep: Report) -> None:
    """Fig. 2: logprob_misclassified_by_all (>= 2 runs) and logprob_misclassified_by_both_per_seed
    (two seed groups sharing seeds; needs rep.groups)."""
    logits, labels = rep.logits, rep.labels
    if len(rep.runs) >= 2:
        common = misclassified_by_all(logits, labels)
        lp = LogProbDisplay.from_logits(logits, labels, rows=common, description="misclassified by every run")
        rep.save(lp.plot()[0].figure, "logprob_misclassified_by_all")
    paired = seed_paired_log_probs(rep.groups, logits, labels)
    if paired is not None:
        lp = LogProbDisplay.from_log_probs(*paired[:2], description=paired[2])
        rep.save(lp.plot()[0].figure, "logprob_misclassified_by_both_per_seed")


def seed_paired_log_probs(groups, logits: dict, labels: ArrayLike):
    """Paper Fig. 2 with seeds: when the runs form exactly two seed groups (e.g. CE and CS-KD) that
    share their seeds, the samples misclassified by BOTH runs of each seed, pooled over the seeds
    (a sample counts once per seed it qualifies for): ({group label: {"predicted", "true"}}, rows,
    description), or None. Pooling keeps the histogram readable where the samples that every run
    of every seed gets wrong are few."""
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


def draw_predictive_distribution(rep: Report, images) -> None:
    """Fig. 1b: figures/predictive_distribution, the top-5 predictions of every run on the first
    sample every run misclassifies, with its image (`images`: data-set index -> image)."""
    logits, labels, first = rep.logits, rep.labels, rep.first
    common = misclassified_by_all(logits, labels)
    if not common.size:
        return
    row = int(common[0])
    d = PredictiveDistributionDisplay.from_logits(logits, labels, row, k=5, class_names=first.class_names,
                                                  shared_axis=len(rep.runs) >= 2,
                                                  index=int(np.asarray(first.indices)[row]))
    rep.save(d.plot(image=images(d.index)).figure, "predictive_distribution")


def draw_hierarchy(rep: Report, name: str) -> None:
    """Fig. 4 a/b: figures/hierarchical_confusion_<run> (needs a coarse grouping)."""
    d = HierarchyDisplay.from_logits(rep.runs[name].logits, rep.labels, rep.mapping, coarse_names=rep.coarse, name=name)
    rep.save(d.plot().figure, f"hierarchical_confusion_{safe_stem(name)}")


def draw_domain_error(rep: Report) -> None:
    """Fig. 4(c): figures/domain_top1_error (needs a coarse grouping)."""
    d = DomainErrorDisplay.from_logits(rep.logits, rep.labels, rep.mapping, coarse_names=rep.coarse)
    rep.save(d.plot().figure, "domain_top1_error")


def draw_tsne(rep: Report, name: str) -> None:
    """Fig. 3: figures/tsne_<run>, from the run's precomputed embedding or from its features."""
    r = rep.runs[name]
    options = dict(class_names=r.class_names, fine_to_coarse=rep.mapping, coarse_names=rep.coarse,
                   indices=r.indices, name=name)
    if r.tsne is not None:
        coords, rows = r.tsne
        d = TSNEDisplay.from_embedding(coords, rows, rep.labels, **options)
    else:
        d = TSNEDisplay.from_features(r.features, rep.labels, max_points=rep.tsne_max_points, seed=0, **options)
    rep.save(d.plot().figure, f"tsne_{safe_stem(name)}")


def draw_txl(rep: Report) -> None:
    """Supplementary Table 7: figures/txl_top1_error[_<method>], a T x lambda heatmap per method
    whose runs form a grid (needs rep.groups); an ambiguous grid is skipped with a warning."""
    grids = tables.txl_groups(rep.groups, by=("method",))
    for (method,), grid in grids.items():
        try:
            d = TxLDisplay.from_groups(grid, metric="top1_error", name=str(method))
        except ValueError as err:  # e.g. two models on one cell: the grid is ambiguous
            warnings.warn(f"T x lambda heatmap of {method} skipped: {err}", stacklevel=3)
            continue
        rep.save(d.plot().figure, "txl_top1_error" if len(grids) == 1 else f"txl_top1_error_{safe_stem(str(method))}")


def compute_metrics(rep: Report, name: str) -> None:
    """The metrics of run `name` into rep.metrics: the run's own (a caller's cache) when they were
    computed with the report's settings, else run_metrics (with the report's coarse grouping)."""
    r = rep.runs[name]
    if r.metrics is not None and r.metrics_settings == rep.settings:
        rep.metrics[name] = dict(r.metrics)  # computed once already, with these settings
    else:
        rep.metrics[name] = run_metrics({"logits": r.logits, "labels": r.labels, "features": r.features,
                                         "val_logits": r.val_logits, "val_labels": r.val_labels,
                                         "fine_to_coarse": rep.mapping, "coarse_names": rep.coarse}, **rep.settings)


def analyze_runs(runs, out_dir, *, n_bins: int = cal.N_BINS, tsne_max_points: int = TSNE_MAX_POINTS,
                 progress: bool = True,
                 overlay: bool = True, group_ignore=("seed",), n_boot: int = cal.N_BOOT,
                 ci_level: float = cal.CI_LEVEL, log_counts: bool = False) -> dict:
    """Compute every metric of every run and write the report folder `out_dir` (plain writes, only
    inside out_dir; make it appear atomically by writing into a fresh folder and renaming it).

    runs: {name: RunData (or a mapping of its fields)} or a list of RunData (see
    analysis.report_input.RunData; a run's `metrics` are used as they are when its
    `metrics_settings` equal this call's {n_bins, n_boot, ci_level}); arrays are only read.
    group_ignore: the config keys that do not change results (passed to tables.group_by_seed); the
    default ("seed",) only treats seeds as repeats, so a caller whose configs also hold bookkeeping
    keys (output folder, device, ...) must pass them. n_boot, ci_level: the ECE bootstrap
    (run_metrics); log_counts: reliability counts on a log scale; overlay: also write the overlaid
    reliability figure.

    The steps (module docstring), in turn: the metrics of each run; metrics.json ({run:
    {metric: value}}, NaN as null), table.md/.csv/.tex (runs grouped over seeds, mean ± sample std,
    errors in %), per_class_accuracy.csv and most_confused.csv, with a coarse grouping
    table_domain_error.md/.csv/.tex (fine-label top-1 error per group); then figures/<name>.png +
    .pdf: reliability (side by side), reliability_overlay (>= 2 runs and overlay),
    logprob_misclassified_by_all (>= 2 runs), logprob_misclassified_by_both_per_seed (two seed
    groups, e.g. CE and CS-KD: samples both runs of a seed misclassify), predictive_distribution
    (images given and a sample every run misclassifies), hierarchical_confusion_<run> and
    domain_top1_error (coarse grouping), tsne_<run> (runs with features), txl_top1_error[_<method>]
    (a T × λ grid). Returns {run: {metric: float}} (see run_metrics).
    """
    runs = as_runs(runs)
    check_runs(runs)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    mapped = next((r for r in runs.values() if r.fine_to_coarse is not None), None)
    rep = Report(runs, out_dir, dict(n_bins=n_bins, n_boot=n_boot, ci_level=ci_level), tuple(group_ignore),
                       tsne_max_points, overlay, log_counts)
    if mapped is not None:
        rep.mapping, rep.coarse = mapped.fine_to_coarse, group_names(mapped.fine_to_coarse, mapped.coarse_names)
    images = next((r.images for r in runs.values() if r.images is not None), None)
    todo = [(f"metrics {n}", compute_metrics, n) for n in runs]
    todo += [("tables", write_tables), ("reliability", draw_reliability),
             ("log-probabilities", draw_log_probs)]
    if images is not None:
        todo.append(("predictive distribution", draw_predictive_distribution, images))
    if rep.mapping is not None:
        todo += [(f"hierarchy {n}", draw_hierarchy, n) for n in runs]
        todo.append(("domain error", draw_domain_error))
    todo += [(f"t-SNE {n}", draw_tsne, n) for n in runs if runs[n].features is not None]
    todo.append(("T x lambda", draw_txl))
    with tqdm(total=len(todo), desc="analysis", unit="step", disable=not progress) as bar:
        for desc, fn, *args in todo:
            bar.set_postfix_str(desc)
            fn(rep, *args)
            bar.update()
    return rep.metrics
