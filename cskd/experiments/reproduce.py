"""`cskd reproduce TABLE`: train what one of the paper's tables needs, then print our numbers next to
the paper's, cell by cell.

    cskd reproduce table1 --dry-run          the plan: runs, and the estimated GPU-hours
    cskd reproduce table1                    train (or continue) every run, then write the table
    cskd reproduce table1 --scale smoke      the same path on digits in minutes on a CPU

Runs go to `--runs` (default checkpoints/reproduce; smoke runs to checkpoints/reproduce-smoke, so
the two never mix) and are resumed like a sweep's, so a killed reproduction continues with the
same command. The table is written as `<out>/<table>.md/.csv/.tex` and our cells as `<table>.json`
(`<table>-smoke.*` for smoke)
with ours as mean ± std (n), the paper's mean ± std, the difference, and "†" where the paper's
mean lies outside ours ± 2 std; cells not run yet show as missing, never as zero.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from cskd.errors import UserError
from cskd.experiments.paper import TABLES as PAPER_TABLES
from cskd.experiments.paper import cells as paper_cells
from cskd.experiments.plans import METRIC_LABELS, Item, assumed_tflops, gpu_hours, paper_cell_key, plan, row_order
from cskd.runfolder.folder import RunFolder
from cskd.runfolder.run_names import REPRODUCE_RUNS_ROOT
from cskd.runfolder.store import FolderLock, Manifest
from cskd.runfolder.training_log import finished_summary


def finished(items: list[Item]) -> set[str]:
    """The run folders of `items` that hold a finished run (a damaged one counts as unfinished: its
    training then says what is wrong)."""
    done = set()
    for item in items:
        try:
            if finished_summary(RunFolder(item.cfg.out)):
                done.add(item.cfg.out)
        except UserError:
            pass
    return done


def print_plan(table: str, items: list[Item], done: set[str], *, tflops: float, scale: str) -> None:
    todo = [i for i in items if i.cfg.out not in done]
    hours = gpu_hours(todo, tflops=tflops)
    print(f"{table}: {PAPER_TABLES.get(table, 'Figure 4(c): fine-label top-1 error per domain of the mixed set')}")
    print(f"{len(items)} runs, {len(items) - len(todo)} finished, {len(todo)} to train"
          + (" (smoke scale: digits, small CNN, 2 epochs)" if scale == "smoke" else ""))
    precision = items[0].cfg.precision if items else "?"
    print(f"precision {precision}; estimated GPU time of the runs to train: {hours:.1f} GPU-hours at an assumed "
          f"sustained {tflops:g} TFLOP/s (FLOPs counted per model; the throughput is an assumption for {precision}, "
          f"not a measurement — change it with --tflops)")
    for item in items[:5]:
        mark = "done " if item.cfg.out in done else "todo "
        print(f"  {mark}{Path(item.cfg.out).name}" + ("   (teacher)" if item.teacher else ""))
    if len(items) > 5:
        print(f"  ... and {len(items) - 5} more")


def run_metrics_of(item: Item) -> dict:
    """The metrics of a finished run (predicting its test and validation splits where needed, read
    from its stats cache), as percents of the paper's units; hierarchical accuracy and per-group
    errors when they exist."""
    from cskd.evaluation.run_data import prepare_run

    preds, _, _, stats = prepare_run(Path(item.cfg.out), split="test", progress=False, with_tsne=False)
    m = stats.report_metrics(preds.coarse_names)  # 20 bins
    return {k: 100 * v for k, v in m.items() if k not in ("nll", "nll_after_ts", "temperature")}


def collect(items: list[Item], done: set[str]) -> dict:
    """{(row, column, metric): (mean, std, n)} over the finished runs (`done`) of each cell (std:
    sample std)."""
    values: dict = {}
    for item in items:
        if not item.cells or item.cfg.out not in done:
            continue
        m = run_metrics_of(item)
        for cell in item.cells:
            if cell[2] in m and math.isfinite(m[cell[2]]):
                values.setdefault(cell, []).append(m[cell[2]])
    return {k: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)) for k, v in values.items()}


def table_files(table: str, scale: str) -> list[str]:
    """The files write_tables writes: <table>.md/.csv/.tex/.json (<table>-smoke.* at smoke scale)."""
    stem = f"{table}-smoke" if scale == "smoke" else table
    return [f"{stem}.{ext}" for ext in ("md", "csv", "tex", "json")]


def check_tables_folder(out: Path, names: list[str]) -> None:
    """Refuse now, not after the training, a --out that cannot take the tables."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder; choose a folder for the tables")
    manifest = Manifest(out)
    foreign = [name for name in names if not manifest.owns(name)]
    if foreign:
        raise UserError(f"{out / foreign[0]} was not written by cskd (or was changed since); cskd never replaces "
                        f"such a file: move it away, or give another --out")


def write_tables(table: str, items: list[Item], ours: dict, out: Path, *, protocol: str, scale: str) -> list[Path]:
    """<table>.md/.csv/.tex (one section per metric) with the paper's numbers beside ours, and
    <table>.json with our cells."""
    from cskd.analysis.tables import comparison_table

    paper = {paper_cell_key(c): (c.mean, c.std) for c in paper_cells(table=table)}
    metrics = list(dict.fromkeys(cell[2] for item in items for cell in item.cells))
    rows = row_order(table)
    precision = items[0].cfg.precision if items else "?"  # one --precision for all of a table's runs
    title = (f"{table}: ours vs the paper, protocol {protocol}, precision {precision}" +
             (" — SMOKE TEST on digits, not comparable to the paper" if scale == "smoke" else ""))
    names = table_files(table, scale)
    texts = {}
    for fmt, name in zip(("markdown", "csv", "latex"), names[:3], strict=True):
        parts = []
        for metric in metrics:
            columns = list(dict.fromkeys(cell[1] for item in items for cell in item.cells if cell[2] == metric))
            sub_ours = {(r, c): v for (r, c, m), v in ours.items() if m == metric}
            # --datasets may leave some of the paper's columns out
            sub_paper = {(r, c): v for (r, c, m), v in paper.items() if m == metric and r in rows and c in columns}
            label = f"{title} — {METRIC_LABELS.get(metric, metric)} (%)"
            parts.append(comparison_table(rows, columns, sub_ours, sub_paper, title=label, fmt=fmt,
                                          row_header="method" if table != "table7" else "T \\ λ"))
        texts[name] = "\n".join(parts)
    texts[names[-1]] = json.dumps({"table": table, "protocol": protocol, "precision": precision, "scale": scale,
                                        "ours": [{"row": r, "column": c, "metric": m, "mean": v[0], "std": v[1],
                                                  "n": v[2]} for (r, c, m), v in ours.items()]}, indent=1) + "\n"
    _write_owned(out, texts)
    return [out / name for name in texts if not name.endswith(".json")]


def _write_owned(folder: Path, texts: dict) -> None:
    """Write each {name: text} atomically into `folder`, refusing a file of that name cskd did not
    write there (the tables folder keeps a manifest, as run folders do)."""
    with FolderLock(folder, what="tables folder"):
        check_tables_folder(folder, list(texts))  # none is replaced unless all can be
        manifest = Manifest(folder)
        for name, text in texts.items():
            manifest.write(name, lambda f, text=text: f.write(text.encode()), instead="give another --out")


def reproduce(table: str, *, datasets=None, seeds=None, protocol: str = "authors", scale: str = "full",
              runs_root: str | None = None, out: str | None = None, data_root: str = "data", dry_run: bool = False,
              nproc_per_node: int = 1, tflops: float | None = None, epochs: int | None = None,
              progress: bool | None = None, precision: str | None = None, launch=None,
              status: bool = False) -> list[Path]:
    """Plan `table`, train what is missing (unless `dry_run`), write its comparison tables. `tflops` None:
    the throughput assumed for the runs' precision (cskd.experiments.plans.ASSUMED_TFLOPS). `launch`
    (cskd.experiments.slurm.Launch): train through submitit, the tables once every run is finished;
    `status`: print where the runs stand (launch.show_status) and train nothing."""
    from cskd.experiments.launch import train_item

    if scale not in ("full", "smoke"):
        raise UserError(f"--scale must be full or smoke; got {scale}")
    if tflops is not None and not (tflops > 0 and math.isfinite(tflops)):
        raise UserError(f"--tflops must be a positive number; got {tflops}")
    runs_root = runs_root or (f"{REPRODUCE_RUNS_ROOT}-smoke" if scale == "smoke" else REPRODUCE_RUNS_ROOT)
    items = plan(table, datasets=datasets, seeds=seeds, protocol=protocol, scale=scale, runs_root=runs_root,
                 data_root=data_root, epochs=epochs, precision=precision)
    if not items:
        raise UserError(f"{table} plans no run for these options (--datasets {' '.join(datasets or [])}); "
                        f"name a data set the table reports")
    tflops = tflops or assumed_tflops(items[0].cfg.precision)
    if status:
        launch.show_status([(i.cfg, i.teacher) for i in items], runs_root, tflops=tflops)
        return []
    done = finished(items)
    print_plan(table, items, done, tflops=tflops, scale=scale)
    if dry_run:
        return []
    tables = Path(out or Path(runs_root) / "tables")
    check_tables_folder(tables, table_files(table, scale))  # found out now, not after hours of training
    if scale == "full":
        from cskd.experiments.launch import check_data

        check_data([i.cfg for i in items if i.cfg.out not in done])  # a missing data set stops it now
    t0 = time.time()
    if launch is not None:
        if not launch.run([(i.cfg, i.teacher) for i in items], runs_root, name=table, tflops=tflops):
            print(f"the tables are written once every run is finished: `cskd reproduce {table}` then (it trains "
                  f"what is left; --status meanwhile)")
            return []
        done = finished(items)
    for k, item in enumerate(items, 1):
        if item.cfg.out not in done:
            print(f"[{k}/{len(items)}] {Path(item.cfg.out).name}")
            train_item(item.cfg, nproc_per_node=nproc_per_node, progress=progress)
    ours = collect(items, finished(items))
    paths = write_tables(table, items, ours, tables, protocol=protocol, scale=scale)
    print(f"{table}: {len(ours)} of our cells filled in {time.time() - t0:.1f} s; wrote {paths[0]} (and .csv, .tex)")
    print(paths[0].read_text())
    return paths

