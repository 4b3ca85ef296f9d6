"""Result tables: runs grouped over seeds as mean ± sample std in Markdown, CSV or LaTeX (paper
Tables 1, 6), the T × λ grid of the supplementary Table 7, and a comparison with the paper's
numbers (`comparison_table`)."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# Metrics that are not fractions: printed as they are, never multiplied by 100.
NOT_FRACTIONS = frozenset({"nll", "nll_after_ts", "temperature", "brier"})  # shown as they are, not ×100
DEFAULT_METRICS = ("top1_error", "top5_error", "ece", "smooth_ece", "nll", "recall_at_1")
# Preferred order of config keys in row labels.
LABEL_KEYS = ("dataset", "model", "method", "temperature", "lambda_cls")
# How the tables say what their cells are (Markdown: a caption line under the table; LaTeX: a
# comment above it; CSV: the column names <metric>_mean, <metric>_std_ddof1, <metric>_n).
CAPTION = ("mean ± sample standard deviation (ddof = 1) over the n runs (seeds) of each row; a row of one run "
           "shows its value alone; (n=k) marks a metric only k of the row's runs have")


@dataclass(frozen=True)
class RunGroup:
    """Runs of one experiment. mean/std/n map metric -> value over the runs having a finite value
    of it: std is the sample std (ddof = 1) for n >= 2 and NaN for n = 1 (undefined); mean and std
    are NaN and n is 0 when no run has it."""

    config: dict  # the shared config, without the ignored keys
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


def group_by_seed(records, *, ignore) -> list[RunGroup]:
    """Group records {"run", "config", "metrics"} whose configs are equal apart from the keys in
    `ignore` (required: which config keys do not change results, e.g. the seed, the output folder
    or the device, is the trainer's knowledge, not this module's); groups keep the order in which
    they first appear, runs their input order."""
    ignore = frozenset((ignore,) if isinstance(ignore, str) else ignore)  # one key may come as a string
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
            std[m] = float(vals.std(ddof=1)) if vals.size >= 2 else math.nan
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
    runs — a run's name would carry one seed — and the run's name for a single run. A group whose
    config says `protocol: authors` (selected on the test split: optimistic) is marked
    " [authors' protocol]" whether or not the protocol varies."""
    keys = sorted({k for g in groups for k in g.config}, key=lambda k: (
        LABEL_KEYS.index(k) if k in LABEL_KEYS else len(LABEL_KEYS), k))
    varying = [k for k in keys
               if len({json.dumps(g.config.get(k), default=str) for g in groups}) > 1 and k != "protocol"]
    if not varying:
        labels = [f"method={g.config['method']}" if len(g.runs) > 1 and "method" in g.config else g.runs[0]
                  for g in groups]
    else:
        labels = [", ".join(f"{k}={g.config.get(k)}" for k in varying) for g in groups]
    return [label + (" [authors' protocol]" if g.config.get("protocol") == "authors" else "")
            for label, g in zip(labels, groups)]


def scale(metric: str, percent: bool = True) -> float:
    """100 for a metric shown in percent (a fraction, with `percent`), else 1 (NOT_FRACTIONS)."""
    return 100.0 if percent and metric not in NOT_FRACTIONS else 1.0


def _header(metric: str, percent: bool) -> str:
    return f"{metric} (%)" if scale(metric, percent) == 100.0 else metric


def cell_text(g: RunGroup, metric: str, *, percent: bool = True, decimals: int = 2, pm: str = " ± ",
              missing: str = "n/a") -> str:
    """"mean ± std" (n >= 2), the value alone (n = 1) or `missing` (n = 0); " (n=k)" appended when
    only k of the group's runs have the metric."""
    n = g.n.get(metric, 0)
    if n == 0:
        return missing
    s = scale(metric, percent)
    text = f"{g.mean[metric] * s:.{decimals}f}"
    if n >= 2:
        text += f"{pm}{g.std[metric] * s:.{decimals}f}"
    return text if n == len(g.runs) else f"{text} (n={n})"


def precision_title(groups) -> str | None:
    """"precision: fp32" (the runs' arithmetic, the `precision` key of their configs; several values
    joined, each row then names its own), or None when no config has the key."""
    values = list(dict.fromkeys(str(g.config["precision"]) for g in groups if "precision" in g.config))
    return f"precision: {', '.join(values)}" if values else None


def format_table(groups, *, metrics=DEFAULT_METRICS, percent: bool = True,
                 decimals: int = 2) -> str:
    """Markdown table, one row per group: label, number of runs n, then per metric "mean ± std"
    (sample std, ddof = 1) for n >= 2 or the value alone for n = 1; CAPTION as a line under it and
    precision_title (when the configs name a precision) as a bold title above it.

    With `percent`, fraction metrics (errors, ECE, recall) are shown ×100; NLL and temperature
    never are. Metrics no run of a group has are shown as "n/a".
    """
    groups = list(groups)
    head = ["run", "n"] + [_header(m, percent) for m in metrics]
    title = precision_title(groups)  # a result-changing setting shared by every row: stated above the table
    lines = ([f"**{title}**", ""] if title else []) + [
        "| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for label, g in zip(row_labels(groups), groups):
        cells = [label, str(len(g.runs))] + [cell_text(g, m, percent=percent, decimals=decimals) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{CAPTION[0].upper()}{CAPTION[1:]}.\n"


def to_csv(groups, *, metrics=DEFAULT_METRICS, percent: bool = True) -> str:
    """CSV text: label, n (runs), runs (";"-joined), then per metric <metric>_mean,
    <metric>_std_ddof1 (sample std; empty for a single run) and <metric>_n (runs having it), in
    full precision, ×100 for fraction metrics when `percent`; mean and std empty when missing."""
    groups = list(groups)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["label", "n", "runs"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std_ddof1", "n")])
    for label, g in zip(row_labels(groups), groups):
        row = [label, len(g.runs), ";".join(g.runs)]
        for m in metrics:
            n, s = g.n.get(m, 0), scale(m, percent)
            row += [repr(g.mean[m] * s) if n else "", repr(g.std[m] * s) if n >= 2 else "", n]
        w.writerow(row)
    return buf.getvalue()


_TEX = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(groups, *, metrics=DEFAULT_METRICS, percent: bool = True, decimals: int = 2) -> str:
    """A booktabs `tabular` with "mean $\\pm$ std" cells (value alone for n = 1), CAPTION as a
    LaTeX comment above it, precision_title above that (needs \\usepackage{booktabs})."""
    groups = list(groups)
    head = ["run", "n"] + [_tex_escape(_header(m, percent)) for m in metrics]
    title = precision_title(groups)
    lines = ([f"% {title}"] if title else []) + [f"% {CAPTION}", r"\begin{tabular}{l" + "r" * (len(head) - 1) + "}",
                                                 r"\toprule",
             " & ".join(head) + r" \\", r"\midrule"]
    for label, g in zip(row_labels(groups), groups):
        cells = [_tex_escape(label), str(len(g.runs))]
        cells += [cell_text(g, m, percent=percent, decimals=decimals, pm=r" $\pm$ ") for m in metrics]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def txl_groups(groups, *, by=("dataset", "model", "method")) -> dict:
    """{key: groups} of the groups that form T x λ grids: groups of a method other than cross-entropy
    with numeric temperature and lambda_cls, keyed by their config values `by` (one grid per key,
    so runs of several methods never collide on one cell), kept where a key's groups span at least
    two temperatures or two λ."""
    grids: dict = {}
    for g in groups:
        c = g.config
        if c.get("method") != "ce" and all(isinstance(c.get(k), (int, float)) and not isinstance(c.get(k), bool)
                                           for k in ("temperature", "lambda_cls")):
            grids.setdefault(tuple(c.get(k) for k in by), []).append(g)
    return {k: gs for k, gs in grids.items()
            if len({g.config["temperature"] for g in gs}) > 1 or len({g.config["lambda_cls"] for g in gs}) > 1}


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


MISSING = "—"
MARK = "†"
COMPARISON_NOTE = (f"ours: mean ± sample std (ddof = 1) over n runs; paper: mean ± std as reported; Δ = ours − paper; "
                   f"{MARK}: the paper's mean lies outside ours ± 2 std, widened by half a unit of the last shown "
                   f"decimal for rounding (n = 1: std taken as 0, so {MARK} marks any difference beyond rounding); "
                   f"{MISSING}: not run yet or not reported")


def _comparison_cells(rows, columns, ours, paper, decimals):
    """{(row, col): dict(ours=(mean, std, n) | None, paper=(mean, std | None) | None, diff, mark)}."""
    rows, columns = [str(r) for r in rows], [str(c) for c in columns]
    if len(set(rows)) != len(rows) or len(set(columns)) != len(columns):
        raise ValueError("rows and columns must not repeat a name")
    cells = {(r, c): {} for r in rows for c in columns}
    for what, given in (("ours", ours), ("paper", paper)):
        for key in given:
            if key not in cells:
                raise ValueError(f"{what} has the cell {key!r}, which is not in rows x columns")
    tol = 0.5 * 10.0 ** -decimals  # the printed values are rounded to `decimals`
    for key, cell in cells.items():
        o, p = ours.get(key), paper.get(key)
        if o is not None:
            mean, std, n = o
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"ours{key!r}: n must be an integer >= 1; got {n!r}")
            std = 0.0 if n == 1 else float(std)
            if not (math.isfinite(float(mean)) and math.isfinite(std) and std >= 0):
                raise ValueError(f"ours{key!r}: need a finite mean and a finite std >= 0; got {o!r}")
            o = (float(mean), std, int(n))
        if p is not None:
            p = (float(p[0]), None if p[1] is None else float(p[1]))
            if not math.isfinite(p[0]):
                raise ValueError(f"paper{key!r}: need a finite mean; got {p[0]!r}")
        both = o is not None and p is not None
        cell.update(ours=o, paper=p, diff=o[0] - p[0] if both else None,
                    mark=both and abs(o[0] - p[0]) > 2 * o[1] + tol)
    return rows, columns, cells


def _ours_text(o, decimals, pm):
    if o is None:
        return MISSING
    mean, std, n = o
    return f"{mean:.{decimals}f}{pm}{std:.{decimals}f} (n={n})" if n >= 2 else f"{mean:.{decimals}f} (n=1)"


def _paper_text(p, decimals, pm):
    if p is None:
        return MISSING
    return f"{p[0]:.{decimals}f}" + ("" if p[1] is None else f"{pm}{p[1]:.{decimals}f}")


def _diff_text(cell, decimals, mark):
    if cell["diff"] is None:
        return MISSING
    return f"{cell['diff']:+.{decimals}f}" + (f" {mark}" if cell["mark"] else "")


def comparison_table(rows: ArrayLike, columns, ours: dict, paper: dict, *, title: str | None = None,
                     fmt: str = "markdown", decimals: int = 2, row_header: str = "") -> str:
    """Our results next to the paper's, cell by cell.

    rows, columns: names of the table's rows and columns (e.g. methods and data sets); ours:
    {(row, column): (mean, std, n)} over n >= 1 runs (std the sample std; ignored and taken as 0
    for n = 1); paper: {(row, column): (mean, std or None)}. Cells absent from `ours` (not run
    yet) or from `paper` show as "—", never as 0. Values are printed as given (pass percent in,
    get percent out) with `decimals` decimals. Δ = ours mean − paper mean; "†" marks a cell whose
    paper mean lies outside ours mean ± 2·std, widened by ½·10^-decimals for rounding (so n = 1
    marks any difference beyond rounding).

    fmt "markdown": a wide table, per column three sub-columns "<column> ours" ("mean ± std
    (n=k)"), "<column> paper" ("mean ± std"), "<column> Δ" (signed, "†" appended), the title as a
    bold line above and COMPARISON_NOTE as a line under it; `row_header` heads the column of row
    names. fmt "latex": the same as a booktabs tabular, title and note as comments. fmt "csv":
    one line per cell (tidy): row, column, ours_mean, ours_std_ddof1, ours_n, paper_mean,
    paper_std, difference, paper_outside_2std (1 / 0), empty where missing, full precision, no
    title.
    """
    if fmt not in ("markdown", "csv", "latex"):
        raise ValueError(f"fmt must be 'markdown', 'csv' or 'latex'; got {fmt!r}")
    rows, columns, cells = _comparison_cells(rows, columns, ours, paper, decimals)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["row", "column", "ours_mean", "ours_std_ddof1", "ours_n", "paper_mean", "paper_std",
                    "difference", "paper_outside_2std"])
        for (r, c), cell in cells.items():
            o, p = cell["ours"], cell["paper"]
            w.writerow([r, c, *(("", "", "") if o is None else (repr(o[0]), repr(o[1]) if o[2] >= 2 else "", o[2])),
                        *(("", "") if p is None else (repr(p[0]), "" if p[1] is None else repr(p[1]))),
                        "" if cell["diff"] is None else repr(cell["diff"]),
                        "" if cell["diff"] is None else int(cell["mark"])])
        return buf.getvalue()
    tex = fmt == "latex"
    pm, mark = (r" $\pm$ ", r"$\dagger$") if tex else (" ± ", MARK)
    body = []
    for r in rows:
        line = [_tex_escape(r) if tex else r]
        for c in columns:
            cell = cells[(r, c)]
            line += [_ours_text(cell["ours"], decimals, pm), _paper_text(cell["paper"], decimals, pm),
                     _diff_text(cell, decimals, mark)]
        body.append([x.replace(MISSING, "---") for x in line] if tex else line)
    if tex:
        head1 = [_tex_escape(row_header)] + [rf"\multicolumn{{3}}{{c}}{{{_tex_escape(c)}}}" for c in columns]
        rules = " ".join(rf"\cmidrule(lr){{{2 + 3 * i}-{4 + 3 * i}}}" for i in range(len(columns)))
        subhead = " & ".join([""] + ["ours", "paper", r"$\Delta$"] * len(columns)) + r" \\"
        lines = [f"% {title}"] if title else []
        lines += [f"% {COMPARISON_NOTE}", r"\begin{tabular}{l" + "rrr" * len(columns) + "}", r"\toprule",
                  " & ".join(head1) + r" \\", rules, subhead, r"\midrule"]
        lines += [" & ".join(line) + r" \\" for line in body] + [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"
    head = [row_header] + [f"{c} {sub}" for c in columns for sub in ("ours", "paper", "Δ")]
    lines = ([f"**{title}**", ""] if title else []) + [
        "| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines) + f"\n\n{COMPARISON_NOTE[0].upper()}{COMPARISON_NOTE[1:]}.\n"
