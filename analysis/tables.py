"""Result tables: runs grouped over seeds, mean ± std, as Markdown, CSV or LaTeX (paper Tables
1, 6) and the T × λ grid of the supplementary Table 7."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass

import numpy as np

# Config keys that do not change the experiment (where and how fast a run ran, its name, its seed):
# runs differing only in these are repeats of one experiment. Close to cskd.train.RESUME_MAY_CHANGE,
# kept apart because analysis/ does not import cskd.
IGNORED_KEYS = ("seed", "out", "preset", "device", "threads", "workers", "log_interval", "loader", "data_root",
                "download", "decode_cache", "decode_cache_dir", "compile", "channels_last")
# Metrics that are not fractions: printed as they are, never multiplied by 100.
NOT_FRACTIONS = frozenset({"nll", "nll_after_ts", "temperature"})
DEFAULT_METRICS = ("top1_error", "top5_error", "ece", "nll", "recall_at_1")
# Preferred order of config keys in row labels.
LABEL_KEYS = ("dataset", "model", "method", "temperature", "lambda_cls")


@dataclass(frozen=True)
class RunGroup:
    """Runs of one experiment. mean/std/n map metric -> value over the runs having it (std is
    the sample std, ddof=1, for n >= 2 and 0 for n == 1; NaN and n = 0 when no run has it)."""

    config: dict  # the shared config, without the IGNORED_KEYS
    runs: tuple
    seeds: tuple
    mean: dict
    std: dict
    n: dict


def _check_record(r, i: int) -> None:
    if not isinstance(r, dict) or not {"run", "config", "metrics"} <= set(r):
        raise ValueError(f"record {i} must be a dict with keys 'run', 'config' and 'metrics'")
    if not isinstance(r["config"], dict) or not isinstance(r["metrics"], dict):
        raise ValueError(f"record {i} ({r['run']!r}): 'config' and 'metrics' must be dicts")


def group_by_seed(records, *, ignore=IGNORED_KEYS) -> list[RunGroup]:
    """Group records {"run", "config", "metrics"} whose configs are equal apart from the keys in
    `ignore`; groups keep the order in which they first appear, runs their input order."""
    records = list(records)
    if not records:
        raise ValueError("records is empty; pass at least one run")
    buckets: dict[str, list] = {}
    for i, r in enumerate(records):
        _check_record(r, i)
        shared = {k: v for k, v in r["config"].items() if k not in ignore}
        buckets.setdefault(json.dumps(shared, sort_keys=True, default=str), []).append(r)
    groups = []
    for members in buckets.values():
        names = sorted({m for r in members for m in r["metrics"]})
        mean, std, n = {}, {}, {}
        for m in names:
            vals = np.array([float(r["metrics"][m]) for r in members if m in r["metrics"]
                             and r["metrics"][m] is not None], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            n[m] = int(vals.size)
            mean[m] = float(vals.mean()) if vals.size else math.nan
            std[m] = float(vals.std(ddof=1)) if vals.size >= 2 else (0.0 if vals.size else math.nan)
        first = members[0]["config"]
        groups.append(RunGroup(
            config={k: v for k, v in first.items() if k not in ignore},
            runs=tuple(r["run"] for r in members),
            seeds=tuple(r["config"].get("seed") for r in members),
            mean=mean, std=std, n=n))
    return groups


def row_labels(groups) -> list[str]:
    """One label per group from the config keys whose values differ between groups (preferred
    keys first). When nothing differs (one group): its method, e.g. "method=cskd", for several
    runs — a run's name would carry one seed — and the run's name for a single run."""
    keys = sorted({k for g in groups for k in g.config}, key=lambda k: (
        LABEL_KEYS.index(k) if k in LABEL_KEYS else len(LABEL_KEYS), k))
    varying = [k for k in keys
               if len({json.dumps(g.config.get(k), default=str) for g in groups}) > 1]
    if not varying:
        return [f"method={g.config['method']}" if len(g.runs) > 1 and "method" in g.config else g.runs[0]
                for g in groups]
    return [", ".join(f"{k}={g.config.get(k)}" for k in varying) for g in groups]


def _scale(metric: str, percent: bool) -> float:
    return 100.0 if percent and metric not in NOT_FRACTIONS else 1.0


def _header(metric: str, percent: bool) -> str:
    return f"{metric} (%)" if _scale(metric, percent) == 100.0 else metric


def _cell(g: RunGroup, metric: str, percent: bool, decimals: int, pm: str) -> str:
    if g.n.get(metric, 0) == 0:
        return "n/a"
    s = _scale(metric, percent)
    return f"{g.mean[metric] * s:.{decimals}f}{pm}{g.std[metric] * s:.{decimals}f}"


def format_table(groups, *, metrics=DEFAULT_METRICS, percent: bool = True,
                 decimals: int = 2) -> str:
    """Markdown table, one row per group: label, number of runs, then "mean ± std" per metric.

    With `percent`, fraction metrics (errors, ECE, recall) are shown ×100; NLL and temperature
    never are. Metrics no run of a group has are shown as "n/a".
    """
    groups = list(groups)
    head = ["run", "n"] + [_header(m, percent) for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for label, g in zip(row_labels(groups), groups):
        cells = [label, str(len(g.runs))] + [_cell(g, m, percent, decimals, " ± ") for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(groups, *, metrics=DEFAULT_METRICS, percent: bool = True) -> str:
    """CSV text: label, n, runs (";"-joined), then <metric>_mean and <metric>_std columns
    (full precision, ×100 for fraction metrics when `percent`; empty when missing)."""
    groups = list(groups)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["label", "n", "runs"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")])
    for label, g in zip(row_labels(groups), groups):
        row = [label, len(g.runs), ";".join(g.runs)]
        for m in metrics:
            if g.n.get(m, 0):
                row += [repr(g.mean[m] * _scale(m, percent)), repr(g.std[m] * _scale(m, percent))]
            else:
                row += ["", ""]
        w.writerow(row)
    return buf.getvalue()


_TEX = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(groups, *, metrics=DEFAULT_METRICS, percent: bool = True, decimals: int = 2) -> str:
    """A booktabs `tabular` with "mean $\\pm$ std" cells (needs \\usepackage{booktabs})."""
    groups = list(groups)
    head = ["run", "n"] + [_tex_escape(_header(m, percent)) for m in metrics]
    lines = [r"\begin{tabular}{l" + "r" * (len(head) - 1) + "}", r"\toprule",
             " & ".join(head) + r" \\", r"\midrule"]
    for label, g in zip(row_labels(groups), groups):
        cells = [_tex_escape(label), str(len(g.runs))]
        cells += [_cell(g, m, percent, decimals, r" $\pm$ ") for m in metrics]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def txl_grid(groups, *, metric: str = "top1_error"):
    """The T × λ grid of `metric` (supplementary Table 7).

    Uses the groups whose config has numeric `temperature` and `lambda_cls`. Returns (temps,
    lambdas, mean, std): sorted unique values and (len(temps), len(lambdas)) float64 matrices,
    NaN where no group has that cell. Two groups on one cell (e.g. different data sets) are an
    error: filter the groups first.
    """
    cells = {}
    for g in groups:
        t, lam = g.config.get("temperature"), g.config.get("lambda_cls")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (t, lam)):
            continue
        if (t, lam) in cells:
            raise ValueError(f"two groups have temperature={t}, lambda_cls={lam} ({cells[(t, lam)].runs[0]!r} "
                             f"and {g.runs[0]!r}); pass groups of one data set, model and method")
        cells[(t, lam)] = g
    if not cells:
        raise ValueError("no group has numeric 'temperature' and 'lambda_cls' in its config")
    temps = sorted({t for t, _ in cells})
    lambdas = sorted({lam for _, lam in cells})
    mean = np.full((len(temps), len(lambdas)), np.nan)
    std = np.full_like(mean, np.nan)
    for (t, lam), g in cells.items():
        if g.n.get(metric, 0):
            mean[temps.index(t), lambdas.index(lam)] = g.mean[metric]
            std[temps.index(t), lambdas.index(lam)] = g.std[metric]
    return np.array(temps, dtype=np.float64), np.array(lambdas, dtype=np.float64), mean, std
