"""Runs: every run of the runs folder with its settings and the metrics its stats cache holds (never
computed here for runs nobody picked: a button does that), the runs grouped over seeds (mean ±
std), the T × λ grid when the runs span one, and the training curves of the picked runs."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from cskd.analysis.calibration import N_BINS
from cskd.analysis.displays import TxLDisplay
from cskd.analysis.figures import safe_stem
from cskd.analysis.tables import cell_text, group_by_seed, row_labels, txl_groups
from cskd.app import charts, data, jobs, ui
from cskd.config import CLASS_WISE, NOT_EXPERIMENT, USES_TEMPERATURE
from cskd.errors import UserError

GROUP_METRICS = {"top1_error": "top-1 err %", "top5_error": "top-5 err %", "nll": "NLL", "ece": "ECE %",
                 "recall_at_1": "R@1 %", "best_acc": "best acc %"}
NUMBERS = ("best acc %", "top-1 err %", "top-5 err %", "NLL", "ECE %", "R@1 %")


def pct(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else 100 * x


def state_of(files, status: tuple, stats) -> str:
    for task in ("predict", "stats", "search"):
        job = jobs.get(files.path, task)
        if job is not None and job.active:
            return f"computing {jobs.TASKS[task]} ({100 * job.fraction:.0f} %)"
    state, _ = status
    if state != "fresh":
        return {"missing": "no predictions", "stale": "predictions stale"}.get(state, f"predictions {state}")
    if stats is None:
        return "metrics not computed"
    return "metrics" if stats.complete else "metrics (R@1 pending)"


def collect(ctx):
    """One table row and one group_by_seed record per readable run; error cards for the rest.
    Only caches are read: a run without a stats cache shows training's own test accuracy."""
    rows, records, missing = [], [], []
    for name in ctx.runs:
        files = ui.run_files(ctx, name)
        if files is None:
            continue
        try:
            rec = data.record(files)
            summ = data.summary(files) or {}
        except UserError as e:
            ui.error_card(name, e)
            continue
        status, stats = data.status(files), None
        if status[0] == "fresh":
            try:
                stats = data.stats(files)
            except UserError as e:
                ui.error_card(name, e)
        if stats is None and status[0] == "fresh":
            missing.append(files)
        m = dict(stats.metrics) if stats is not None else {}
        if m.get("top1_error") is None and summ.get("test_acc") is not None:
            m["top1_error"] = 1 - summ["test_acc"]  # from training's own test pass
        if summ.get("best_acc") is not None:
            m["best_acc"] = summ["best_acc"]
        cfg = rec["config"]
        method = cfg.get("method")
        rows.append({
            "run": name, "dataset": cfg.get("dataset"), "model": cfg.get("model"), "method": method,
            "T": _short(cfg.get("temperature")) if method in USES_TEMPERATURE else "—",
            "λ": _short(cfg.get("lambda_cls")) if method in CLASS_WISE else "—",
            "seed": cfg.get("seed"), "epochs": cfg.get("epochs"),
            "protocol": "—" if rec["kind"] == "imported" else cfg.get("protocol") or "clean",
            "selected on": summ.get("selected_on") or cfg.get("select_on") or "—",
            "best acc %": pct(summ.get("best_acc")), "top-1 err %": pct(m.get("top1_error")),
            "top-5 err %": pct(m.get("top5_error")), "NLL": m.get("nll"), "ECE %": pct(m.get("ece")),
            "R@1 %": pct(m.get("recall_at_1")), "state": state_of(files, status, stats),
        })
        records.append({"run": name, "config": cfg,
                        "metrics": {k: m[k] for k in GROUP_METRICS if m.get(k) is not None}})
    return rows, records, missing


def _short(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "—"


def runs_table(rows) -> None:
    """The runs, one line each; columns every run shares are said once above the table, so the
    rest fits the page."""
    df = pd.DataFrame(rows)
    shared = [c for c in ("dataset", "model", "epochs", "protocol", "selected on")
              if len(df) > 1 and df[c].nunique(dropna=False) == 1]
    if shared:
        st.caption("Every run: " + ui.literal("; ".join(f"{c} {df[c].iloc[0]}" for c in shared)) + ".")
        df = df.drop(columns=shared)
    config = {c: st.column_config.NumberColumn(c, format="%.2f", width="small") for c in NUMBERS}
    config.update({"run": st.column_config.TextColumn("run", width="medium", pinned=True),
                   "T": st.column_config.TextColumn("T", width="small"),
                   "λ": st.column_config.TextColumn("λ", width="small"),
                   "seed": st.column_config.NumberColumn("seed", width="small"),
                   "epochs": st.column_config.NumberColumn("epochs", width="small"),
                   "protocol": st.column_config.TextColumn("protocol", width="small",
                                                           help="authors: the authors' experiment (full training "
                                                                "set, best test epoch, ...); clean: held-out "
                                                                "validation"),
                   "selected on": st.column_config.TextColumn("selected on", width="small",
                                                              help="the split the best epoch was picked on; "
                                                                   "'test' is the authors' protocol"),
                   "best acc %": st.column_config.NumberColumn("best acc %", format="%.2f", width="small",
                                                               help="accuracy of the best epoch on that split")})
    with st.container(key="runs-table"):  # the key names it for the browser test and the benchmark
        st.dataframe(df, hide_index=True, width="stretch", column_config=config, height=min(35 * len(df) + 42, 560))


def compute_others(ctx, missing) -> None:
    others = [f for f in missing if f.name not in ctx.picked]
    if not others:
        return
    waiting = [f for f in others if (j := jobs.get(f.path, "stats")) is None or not j.active]
    if waiting and st.button(f"Compute the metrics of the {len(waiting)} other run(s) with predictions",
                             key="stats:others", help="Picked runs get theirs automatically; these are not picked."):
        for f in waiting:  # the metrics of all of them first, then their neighbour searches
            ui.ask(f, "stats", retry=True)
        for f in waiting:
            ui.ask(f, "search", retry=True)
        st.rerun()


def seed_groups(records) -> None:
    st.subheader("Grouped over seeds")
    if not records:
        return
    groups = group_by_seed(records, ignore=NOT_EXPERIMENT)
    table = []
    for label, g in zip(row_labels(groups), groups):
        row = {"group": label, "n": len(g.runs), "runs": ", ".join(g.runs)}
        for metric, column in GROUP_METRICS.items():
            row[column] = cell_text(g, metric, missing="—")
        table.append(row)
    st.caption("Runs whose configs differ only in the seed (or where and how they ran): mean ± sample std "
               "(ddof = 1) over the runs that have the metric; (n=k) when only k of them do.")
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")
    txl(groups)


def txl(groups) -> None:
    """The T × λ heat map (supplementary Table 7) of each data set, model and class-wise method whose
    runs span at least two temperatures or two λ."""
    grids = {key: grid for key, grid in txl_groups(groups).items() if key[2] in CLASS_WISE}
    if not grids:
        return
    st.subheader("T × λ")
    metric = st.segmented_control("Metric", ["top1_error", "ece", "nll", "recall_at_1"], default="top1_error",
                                  key="txl_metric", persist_state="session") or "top1_error"
    for (dataset, model, method), grid in grids.items():
        try:
            d = TxLDisplay.from_groups(grid, metric=metric, name=f"{dataset} · {model} · {method}")
        except ValueError as e:  # e.g. runs that differ in more than T and λ share a cell
            st.caption(f"No T × λ grid for {ui.literal(f'{dataset} · {model} · {method}')}: {ui.literal(e)}")
            continue
        frame = d.frame().assign(x_order=lambda f: f["lambda_cls"], y_order=lambda f: f["temperature"])
        frame = frame.assign(**{"λ": frame["lambda_cls"].map("{:g}".format),
                                "T": frame["temperature"].map("{:g}".format)})
        st.markdown(f"**{ui.literal(d.name)}**: {ui.literal(d.value_label)}, mean over seeds")
        finite = frame["value"].dropna()
        spec = charts.heatmap(frame, x="λ", y="T", value="value", text="text", x_title="λ_cls", y_title="T",
                              value_title=d.value_label, scheme="viridis",
                              domain=[float(finite.min()), float(finite.max())] if len(finite) else None)
        st.vega_lite_chart(frame, spec, width="stretch")
        ui.downloads(f"txl-{safe_stem(d.name)}-{metric}", lambda d=d: d.plot().figure, key=f"txl:{d.name}")


def curves(ctx) -> None:
    st.subheader("Training curves")
    if not ctx.picked:
        st.info("Pick runs in the sidebar to see their training curves.")
        return
    acc, loss = [], []
    for name in ctx.picked:
        files = ui.run_files(ctx, name)
        if files is None:
            continue
        try:
            records, summ, cfg = data.curves(files), data.summary(files) or {}, data.record(files)["config"]
        except UserError as e:
            ui.error_card(name, e)
            continue
        split = summ.get("selected_on") or cfg.get("select_on") or "val"
        what = "validation accuracy" if split == "val" else "TEST accuracy (the selection split)"
        color = ctx.color(name)
        for r in records:
            if _number(r.get(f"{split}_acc")):
                acc.append({"run": name, "color": color, "epoch": r["epoch"], "value": r[f"{split}_acc"],
                            "quantity": what})
            if _number(r.get("train_loss")):
                loss.append({"run": name, "color": color, "epoch": r["epoch"], "value": r["train_loss"],
                             "quantity": "CE + regulariser (the method's objective)"})
            if _number(r.get("train_ce")) and cfg.get("method") != "ce":
                loss.append({"run": name, "color": color, "epoch": r["epoch"], "value": r["train_ce"],
                             "quantity": "CE alone"})
    left, right = st.columns(2)
    for col, rows, title, y in ((left, acc, "Accuracy on the selection split per epoch", "accuracy"),
                                (right, loss, "Training loss per epoch", "loss (nats)")):
        if rows:
            frame = pd.DataFrame(rows)
            col.vega_lite_chart(frame, charts.curves(frame, title=title, y_title=y), width="stretch")
        else:
            col.caption(f"No picked run logs this in its metrics.jsonl ({title.lower()}).")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def page() -> None:
    ctx = ui.context()
    st.title("Runs")
    st.caption("Metrics come from each run's stats cache (`stats-test.npz`: computed once from its test "
               f"predictions, ECE with {N_BINS} bins as in the paper). Picked runs get theirs computed in the "
               "background; runs without one show the accuracy of training's own test pass. Pick the runs to compare "
               "in the sidebar: every page shows them.")
    rows, records, missing = collect(ctx)
    if rows:
        runs_table(rows)
    if ctx.picked:
        with st.container(key="picked-status"):
            ui.ready_runs(ctx, ctx.picked, where="runs")
    compute_others(ctx, missing)
    seed_groups(records)
    curves(ctx)


page()
