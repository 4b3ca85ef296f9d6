"""Confusion: for one picked run, its fine-label confusion (from the stats cache): the confused
class pairs as a sortable, searchable table, the confusion matrix of the classes most involved as
a heat map, and per-class accuracy of every picked run. Choosing a pair (a table row or a cell)
shows its samples and each picked run's predictive distribution on one of them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from cskd.analysis.confusion import most_confused_pairs
from cskd.app import charts, images, selection, ui

CELL_KEY = "_confusion_cell"


@st.cache_data(show_spinner=False, max_entries=64)
def pairs_table(key, _confusion, class_names: tuple) -> pd.DataFrame:
    """Every off-diagonal non-empty cell: true, predicted, count, share of the true class."""
    m = np.asarray(_confusion)
    t, p, counts = np.array(most_confused_pairs(m, k=m.size), dtype=np.int64).reshape(-1, 3).T
    sizes = m.sum(axis=1)[t]
    names = np.asarray(class_names, dtype=object)
    return pd.DataFrame({"true": names[t], "predicted as": names[p], "samples": counts,
                         "% of the true class": 100 * counts / np.maximum(sizes, 1), "t": t, "p": p})


def matrix_frame(confusion: np.ndarray, class_names, classes: np.ndarray) -> pd.DataFrame:
    """Heat-map cells of `classes` × `classes`: count and percent of the true class."""
    m = np.asarray(confusion)[np.ix_(classes, classes)]
    sizes = np.asarray(confusion).sum(axis=1)[classes]
    g, h = np.meshgrid(np.arange(classes.size), np.arange(classes.size), indexing="ij")
    names = np.asarray(class_names, dtype=object)[classes]
    return pd.DataFrame({"true": names[g.ravel()], "predicted": names[h.ravel()], "y_order": g.ravel(),
                         "x_order": h.ravel(), "samples": m.ravel(),
                         "percent": 100 * m.ravel() / np.maximum(sizes[g.ravel()], 1),
                         "t": classes[g.ravel()], "p": classes[h.ravel()]}).assign(
        # The diagonal (right answers) would dwarf the confusions on the colour scale: left blank.
        errors=lambda f: f["percent"].where(f["t"] != f["p"]))


def involved(confusion: np.ndarray, n: int) -> np.ndarray:
    """The `n` classes with the most errors in or out (true or predicted), in class order."""
    m = np.asarray(confusion)
    off = m.sum(axis=0) + m.sum(axis=1) - 2 * np.diag(m)
    return np.sort(np.argsort(-off, kind="stable")[:n])


def set_cell(t: int, p: int) -> None:
    st.session_state[CELL_KEY] = (int(t), int(p))


def page() -> None:
    ctx = ui.context()
    st.title("Confusion between classes")
    ready = ui.ready_runs_on_same_samples(ctx, where="confusion")
    if not ready:
        return
    with ui.card_on_error("picked runs", "their predictions or stats caches"):
        body(ctx, ready)


def body(ctx, ready) -> None:
    names = [r.name for r in ready]
    run = ready[names.index(st.selectbox("Run", names, key="conf_run", persist_state="session"))]
    class_names = run.preds.class_names
    confusion = np.asarray(run.stats.confusion)
    table = pairs_table(run.files.key, confusion, tuple(class_names))
    left, right = st.columns([2, 3], gap="medium")
    with left:
        st.markdown(f"**Confused pairs** ({len(table)}; search with the table's magnifier, sort by a header)")
        event = st.dataframe(table.drop(columns=["t", "p"]), hide_index=True, width="stretch", key="conf_pairs",
                             on_select="rerun", selection_mode="single-row", height=420,
                             column_config={"% of the true class": st.column_config.NumberColumn(format="%.1f")})
        chosen = event["selection"]["rows"] if event is not None else []
        if chosen and chosen[0] < len(table) and st.session_state.get("_conf_table_pick") != chosen[0]:
            st.session_state["_conf_table_pick"] = chosen[0]
            set_cell(table["t"].iloc[chosen[0]], table["p"].iloc[chosen[0]])
    with right:
        n = len(class_names)
        shown = st.slider("Classes in the matrix (those with the most errors)", 2, max(2, min(n, 60)),
                          min(n, 30), key="conf_n", persist_state="session") if n > 2 else n
        frame = matrix_frame(confusion, class_names, involved(confusion, shown))
        spec = charts.heatmap(frame, x="predicted", y="true", value="errors", text=None, x_title="predicted class",
                              y_title="true class", value_title="% of the true class", select="cell",
                              tooltip=[{"field": "samples"}])
        st.caption("Colour: share of the true class predicted as the column's class; the diagonal (right "
                   "answers) is left blank. Click a cell to see its samples.")
        spec["height"] = max(240, 14 * shown)
        event = st.vega_lite_chart(frame, spec, key="conf_matrix", on_select="rerun", width="stretch")
        points = (event["selection"].get("cell") if event is not None else None) or []
        if points:
            point = points[0]
            hit = frame[(frame["true"] == point.get("true")) & (frame["predicted"] == point.get("predicted"))]
            if len(hit) and st.session_state.get("_conf_chart_pick") != (point.get("true"), point.get("predicted")):
                st.session_state["_conf_chart_pick"] = (point.get("true"), point.get("predicted"))
                set_cell(hit["t"].iloc[0], hit["p"].iloc[0])
    drill(ctx, ready, run, class_names)
    per_class(ready, class_names)


def drill(ctx, ready, run, class_names) -> None:
    """The samples of the chosen (true, predicted) cell in `run`, and the runs' distributions on one."""
    cell = st.session_state.get(CELL_KEY)
    if cell is None or max(cell) >= len(class_names):
        st.caption("Choose a pair in the table or a cell of the matrix to see its samples.")
        return
    t, p = cell
    labels = np.asarray(run.preds.labels)
    rows = np.flatnonzero((labels == t) & (np.asarray(run.stats.pred) == p))
    st.subheader("Samples of the chosen cell")
    st.markdown(f"True **{ui.literal(class_names[t])}**, predicted **{ui.literal(class_names[p])}** by "
                f"{ui.literal(run.name)}: {rows.size} sample(s).")
    if not rows.size:
        return
    shown = rows[:48]
    urls = images.urls(run.files.key, tuple(int(r) for r in shown), run.preds)
    indices = np.asarray(run.preds.indices)
    table = {"image": urls} if urls is not None else {}
    table.update({"index": indices[shown]})
    for r in ready:
        table[f"{r.name}: p(predicted)"] = np.asarray(r.stats.confidence)[shown]
        table[f"{r.name}: p(true)"] = np.exp(np.asarray(r.stats.true_logprob)[shown])
    left, right = st.columns([2, 3], gap="medium")
    with left:
        if rows.size > shown.size:
            st.caption(f"The first {shown.size} of {rows.size}.")
        event = st.dataframe(pd.DataFrame(table), hide_index=True, key="conf_samples", on_select="rerun",
                             selection_mode="single-row", row_height=56 if urls is not None else None,
                             column_config={"image": st.column_config.ImageColumn("image", width="small")},
                             height=min(56 * shown.size + 40, 480))
        chosen = event["selection"]["rows"] if event is not None else []
        row = int(shown[chosen[0]]) if chosen and chosen[0] < shown.size else int(shown[0])
    with right:
        d = selection.distribution(ready, row, shared_axis=True, index=int(indices[row]))
        frame = selection.distribution_frame(d, ctx)
        st.markdown(f"**Sample #{int(indices[row])}**: each picked run's probabilities")
        st.vega_lite_chart(frame, charts.distributions(frame, shared_axis=True, true_name=class_names[t]),
                           width="stretch")


def per_class(ready, class_names) -> None:
    st.subheader("Per-class accuracy")
    table = {"class": class_names}
    for r in ready:
        table[f"{r.name} %"] = 100 * np.asarray(r.stats.per_class_accuracy)
    if len(ready) == 2:
        table["difference %"] = table[f"{ready[1].name} %"] - table[f"{ready[0].name} %"]
    df = pd.DataFrame(table)
    st.dataframe(df, hide_index=True, width="stretch", height=320, column_config={
        c: st.column_config.NumberColumn(c, format="%.1f") for c in df.columns if c != "class"})


page()
