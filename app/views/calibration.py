"""Calibration: reliability diagrams of the picked runs side by side (same axes), per-bin counts,
ECE / MCE for a chosen number of bins, before and after temperature scaling fitted on the
validation predictions (paper §3.1, Fig. 5)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import charts, data, ui


def metrics_table(ready, n_bins: int) -> pd.DataFrame:
    rows = []
    for f in ready:
        _, ece, mce = data.reliability(f.test, f.val, n_bins, False)
        row = {"run": f.name, "ECE %": 100 * ece, "MCE %": 100 * mce,
               "T (fit on val)": None, "ECE after TS %": None, "MCE after TS %": None}
        if f.val is not None:
            _, ece_t, mce_t = data.reliability(f.test, f.val, n_bins, True)
            row.update({"T (fit on val)": data.temperature(f.val), "ECE after TS %": 100 * ece_t,
                        "MCE after TS %": 100 * mce_t})
        rows.append(row)
    return pd.DataFrame(rows)


def counts_table(ready, n_bins: int) -> pd.DataFrame:
    first, _, _ = data.reliability(ready[0].test, ready[0].val, n_bins, False)
    table = {"confidence bin": [f"({lo:.2f}, {hi:.2f}]" for lo, hi in zip(first.lower, first.upper)]}
    for f in ready:
        bins, _, _ = data.reliability(f.test, f.val, n_bins, False)
        table[f.name] = bins.count
    return pd.DataFrame(table)


def figure(runs: tuple, n_bins: int, scaled: bool, title: str, stem: str) -> None:
    st.markdown(f"**{title}**")
    st.vega_lite_chart(spec=charts.reliability(runs, n_bins, scaled))
    ui.downloads(f"{stem}-{n_bins}bins", lambda: data.reliability_figure(runs, n_bins, scaled, "png"),
                 lambda: data.reliability_figure(runs, n_bins, scaled, "pdf"), key=f"{stem}:{n_bins}")


def page() -> None:
    ctx = ui.context()
    st.title("Calibration")
    ui.kept("n_bins", 20)
    st.number_input("Number of equal-width confidence bins", min_value=1, max_value=200, step=1,
                    key="n_bins", help="The paper uses 20.")
    ui.keep("n_bins")
    n_bins = int(st.session_state["n_bins"])
    ready = ui.with_predictions(ctx, ui.need_picks(ctx), where="calibration")
    if not ready:
        return

    st.dataframe(metrics_table(ready, n_bins), hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.2f")
        for c in ("ECE %", "MCE %", "T (fit on val)", "ECE after TS %", "MCE after TS %")})
    runs = tuple((f.name, f.test, f.val) for f in ready)
    figure(runs, n_bins, False, "Reliability diagrams (test split)", "reliability")

    scaled = tuple(r for r in runs if r[2] is not None)
    no_val = [r[0] for r in runs if r[2] is None]
    if no_val:
        st.caption(f"No validation predictions (`predictions-val.npz`) for {', '.join(no_val)}: "
                   "temperature scaling is fitted on them, never on the test split.")
    if scaled:
        figure(scaled, n_bins, True, "After temperature scaling (T fitted on the validation split)",
               "reliability-ts")
    with st.expander("Samples per bin"):
        st.dataframe(counts_table(ready, n_bins), hide_index=True)


page()
