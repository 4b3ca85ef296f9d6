"""Runs: every run of the runs folder with its settings and test metrics, the runs grouped over
seeds (mean ± std), and the training curves of the picked runs."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from analysis.tables import format_table, group_by_seed
from app import charts, data, ui

GROUP_METRICS = ("best_val_acc", "top1_error", "top5_error", "ece", "recall_at_1")


def pct(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else 100 * x


def collect(ctx):
    """One table row and one group_by_seed record per readable run; error cards for the rest."""
    rows, records = [], []
    for name in ctx.runs:
        files = ui.files_of(ctx, name)
        if files is None:
            continue
        try:
            cfg = data.config(str(files.path), files.config)
            summ = data.summary(files.summary)
        except Exception as e:  # noqa: BLE001 -- one damaged run keeps its card, the table goes on
            ui.error_card(name, e)
            continue
        m = {}
        if files.test is not None:
            try:
                m = data.test_metrics(files.test, files.val)
            except Exception as e:  # noqa: BLE001
                ui.error_card(name, e)
        if "best_val_acc" in summ:
            m = {**m, "best_val_acc": summ["best_val_acc"]}
        if "top1_error" not in m and "test_acc" in summ:
            m["top1_error"] = 1 - summ["test_acc"]  # from training's own test pass
        uses_t = cfg["method"] != "ce"  # CE has no T or λ; other methods' values are shown as set
        rows.append({
            "run": name, "dataset": cfg["dataset"], "model": cfg["model"], "method": cfg["method"],
            "T": cfg["temperature"] if uses_t else None, "λ": cfg["lambda_cls"] if uses_t else None,
            "seed": cfg["seed"], "epochs": cfg["epochs"],
            "best val acc %": pct(summ.get("best_val_acc")),
            "top-1 err %": pct(m.get("top1_error")), "top-5 err %": pct(m.get("top5_error")),
            "ECE %": pct(m.get("ece")), "R@1 %": pct(m.get("recall_at_1")),
            "predictions": files.test is not None,
        })
        records.append({"run": name, "config": cfg, "metrics": {k: m[k] for k in GROUP_METRICS if k in m}})
    return rows, records


def curves_chart(ctx) -> None:
    st.subheader("Training curves")
    if not ctx.picked:
        st.info("Pick runs in the sidebar to see their training curves.")
        return
    named = []
    for name in ctx.picked:
        files = ui.files_of(ctx, name)
        if files is not None:
            named.append((name, str(files.path), files.metrics))
    left, right = st.columns(2)
    for col, metric, title in ((left, "val_acc", "validation accuracy per epoch"),
                               (right, "train_loss", "training loss per epoch")):
        spec = charts.curves(tuple(named), metric, title)
        if spec is None:
            col.caption(f"No run logs {metric} in its metrics.jsonl.")
        else:
            col.vega_lite_chart(spec=spec, width="stretch")


def page() -> None:
    ctx = ui.context()
    st.title("Runs")
    st.caption("Test metrics come from `predictions-test.npz` (ECE with 20 bins, as in the paper); "
               "runs without predictions show the accuracy of training's own test pass. "
               "Pick the runs to compare in the sidebar: every page shows them.")
    rows, records = collect(ctx)
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
            c: st.column_config.NumberColumn(format="%.2f")
            for c in ("best val acc %", "top-1 err %", "top-5 err %", "ECE %", "R@1 %")})
    missing = [r["run"] for r in rows if not r["predictions"]]
    if missing:
        with st.expander(f"{len(missing)} run(s) without predictions"):
            for name in missing:
                ui.compute_predictions(ctx, name, where="runs")

    st.subheader("Grouped over seeds")
    st.caption("Runs whose configs differ only in the seed, as mean ± std over seeds (%).")
    if records:
        st.markdown(format_table(group_by_seed(records), metrics=GROUP_METRICS))
    curves_chart(ctx)


page()
