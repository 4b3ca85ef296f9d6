"""The README's main job: cross-entropy vs CS-KD on the embedded digits data set in a low-data regime
(DEMO_PER_CLASS training images per class), 3 seeds each, then their analysis.

It prints, per method, the mean ± sample std over seeds of top-1 error, ECE, ECE after temperature
scaling (fitted on the validation split), NLL and Recall@1, and the difference CS-KD − CE paired by
seed, and the machine it ran on (the digits differ between machines; the signs of the paired
differences are what to compare). Finished runs are reused (a second `cskd demo` only
re-analyses); an interrupted one is continued; runs are named like every run
(cskd.runfolder.run_names), so other --epochs or --per-class give other folders.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from cskd.config import resolve
from cskd.data.catalog import DATASET_SPECS
from cskd.errors import UserError
from cskd.method.registry import METHOD_SPECS
from cskd.runfolder.predictions import read_predictions
from cskd.runfolder.run_names import DEFAULT_RUNS_ROOT
from cskd.training.machine import machine_line

# Chosen by measurement (README, "Quick start"): few enough images per class that one mistake is
# not the whole story (the full set saturates at 99.7 %), enough epochs to converge.
DEMO_PER_CLASS = 20
DEMO_EPOCHS = 60
DEMO_SEEDS = 3
METHODS = ("ce", "cskd")
LABELS = {m: METHOD_SPECS[m].short for m in METHODS}
# (metric key, header, scale): fractions shown as percents
COLUMNS = (("top1_error", "top-1 err %", 100), ("ece", "ECE %", 100), ("ece_after_ts", "ECE after TS %", 100),
           ("nll", "NLL", 1), ("recall_at_1", "R@1 %", 100))


def demo_configs(runs_root: str, *, seeds: int, epochs: int, per_class: int):
    from cskd.runfolder.run_names import run_name

    configs = []
    for seed in range(seeds):
        for method in METHODS:
            cfg = resolve({"method": method, "seed": seed, "epochs": epochs, "train_per_class": per_class},
                          "digits-small")
            cfg.out = str(Path(runs_root) / "demo" / run_name(cfg))
            configs.append(cfg)
    return configs


def _mean_std(values: list[float], sign: str = "") -> str:
    if len(values) == 1:
        return f"{values[0]:{sign}.2f}"
    return f"{statistics.mean(values):{sign}.2f} ± {statistics.stdev(values):.2f}"


def summary_lines(metrics: dict, configs, *, per_class: int, seeds: int) -> list[str]:
    """The demo's printed table: per method mean ± std over seeds, then CS-KD − CE paired by seed."""
    by = {(c.method, c.seed): metrics[Path(c.out).name] for c in configs}
    digits = DATASET_SPECS["digits"]
    n_train, n_test = per_class * digits.classes, digits.test
    lines = [f"Digits, {per_class} training images per class ({n_train}), test set of {n_test} images, {seeds} "
             f"seed(s) per method; mean ± sample std (n - 1) over seeds" if seeds > 1 else
             f"Digits, {per_class} training images per class ({n_train}), test set of {n_test} images, one seed "
             f"(n = 1)",
             "", "  " + f"{'method':<7}" + "".join(f"{h:>17}" for _, h, _ in COLUMNS)]
    for method in METHODS:
        cells = []
        for key, _, scale in COLUMNS:
            values = [scale * by[(method, s)][key] for s in range(seeds) if by[(method, s)].get(key) is not None]
            cells.append(_mean_std(values) if values else "n/a")
        lines.append("  " + f"{LABELS[method]:<7}" + "".join(f"{c:>17}" for c in cells))
    lines += ["", "CS-KD − CE, paired by seed (each seed's CS-KD run minus its CE run):"]
    for key, header, scale in COLUMNS:
        diffs = [scale * (by[("cskd", s)][key] - by[("ce", s)][key]) for s in range(seeds)
                 if by[("cskd", s)].get(key) is not None and by[("ce", s)].get(key) is not None]
        if not diffs:
            continue
        # a fact of these runs only: another machine can give a seed of the other sign
        agree = len(diffs) > 1 and (all(d > 0 for d in diffs) or all(d < 0 for d in diffs))
        lines.append(f"  {header:<15} " + ", ".join(f"{d:+.2f}" for d in diffs) + f"  ->  {_mean_std(diffs, '+')}"
                     + (f"   (same sign in all {len(diffs)} seeds of this run)" if agree else ""))
    return lines


def fig2_lines(configs, seeds: int) -> list[str]:
    """Paper Fig. 2 in numbers: on the test samples both runs of a seed misclassify (pooled over the
    seeds), the mean log-probability of the predicted and of the true class per method."""
    import numpy as np

    from cskd.analysis.misclassified import log_probs_on, misclassified_by_all
    from cskd.runfolder.folder import RunFolder

    pooled = {m: {"predicted": [], "true": []} for m in METHODS}
    n = 0
    for seed in range(seeds):
        preds = {c.method: read_predictions(RunFolder(c.out), "test") for c in configs if c.seed == seed}
        labels = np.asarray(preds["ce"].labels)
        both = misclassified_by_all({m: np.asarray(p.logits) for m, p in preds.items()}, labels)
        n += len(both)
        for m, p in preds.items():
            lp = log_probs_on(np.asarray(p.logits), labels, both)
            for kind in pooled[m]:
                pooled[m][kind].append(lp[kind])
    if n == 0:
        return []
    mean = {m: {k: float(np.mean(np.concatenate(v))) for k, v in d.items()} for m, d in pooled.items()}
    return ["", f"On the {n} test samples both runs of a seed misclassify (pooled over seeds; paper Fig. 2), mean "
                f"log-probability", "  " + "   ".join(
                    f"{LABELS[m]}: predicted class {mean[m]['predicted']:.2f}, true class {mean[m]['true']:.2f}"
                    for m in METHODS)]


def run_demo(*, runs_root: str = DEFAULT_RUNS_ROOT, seeds: int = DEMO_SEEDS, epochs: int | None = None,
             per_class: int | None = None, dashboard: bool = False) -> int:
    from cskd.evaluation.analyze import analyze
    from cskd.experiments.launch import train_item

    for flag, value in (("--seeds", seeds), ("--epochs", epochs), ("--per-class", per_class)):
        if value is not None and value <= 0:
            raise UserError(f"{flag} must be a positive integer; got {value}")
    t0 = time.time()
    per_class = DEMO_PER_CLASS if per_class is None else per_class
    configs = demo_configs(runs_root, seeds=seeds, epochs=DEMO_EPOCHS if epochs is None else epochs,
                           per_class=per_class)
    for cfg in configs:
        train_item(cfg, progress=False)  # finished: reused; interrupted: continued
    report = Path(runs_root) / "demo" / "analysis"
    metrics = analyze([c.out for c in configs], str(report), progress=False)
    print()
    print("\n".join(summary_lines(metrics, configs, per_class=per_class, seeds=seeds) + fig2_lines(configs, seeds)))
    # the digits depend on the machine (CPU, thread count, torch build: docs/cli.md): say which one
    print(f"\n{machine_line(configs[0].threads)}")
    print(f"\ndemo finished in {time.time() - t0:.1f} s")
    print(f"  runs:    {Path(runs_root) / 'demo'}/digits-small-*")
    print(f"  report:  {report}/table.md, {report}/metrics.json")
    print(f"  figures: {report}/figures/ (reliability diagrams, log-probability histograms, t-SNE; PNG and PDF)")
    print(f"  browse:  cskd dashboard --runs {Path(runs_root) / 'demo'}")
    if dashboard:
        from cskd.cli.dashboard import launch

        return launch(str(Path(runs_root) / "demo"))
    return 0
