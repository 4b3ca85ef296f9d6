"""Hierarchy (paper §3.3, Fig. 4): for runs whose predictions carry a coarse grouping (CIFAR-100's 20
superclasses, the mixed data set's domains), the confusion between the coarse groups of the true
and of the predicted fine label with the hierarchical accuracy, and the fine-label top-1 error per
coarse group of every such run side by side."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import streamlit as st

from cskd.analysis.displays import DomainErrorDisplay, HierarchyDisplay
from cskd.analysis.figures import safe_stem
from cskd.analysis.hierarchy import group_names
from cskd.app import charts, ui


def coarse(r) -> tuple[np.ndarray, list]:
    mapping = np.asarray(r.preds.fine_to_coarse)
    return mapping, group_names(mapping, r.preds.coarse_names)


@st.cache_data(show_spinner=False, max_entries=64)
def hierarchy_display(key, name: str, _r) -> HierarchyDisplay:
    mapping, names = coarse(_r)
    return HierarchyDisplay.from_predictions(np.asarray(_r.stats.pred), np.asarray(_r.preds.labels), mapping,
                                             coarse_names=names, name=name)


def page() -> None:
    ctx = ui.context()
    st.title("Hierarchy")
    st.caption("Row g, column h: share of the test samples of true coarse group g whose predicted fine class "
               "belongs to coarse group h. Hierarchical accuracy: share on the diagonal.")
    ready = ui.ready_runs(ctx, ui.need_picks(ctx), where="hierarchy")
    grouped = [r for r in ready if r.preds.fine_to_coarse is not None]
    flat = [r for r in ready if r not in grouped]
    if flat:
        sets = sorted({r.preds.dataset for r in flat})
        st.info(f"{ui.literal(', '.join(r.name for r in flat))}: the data set ({ui.literal(', '.join(sets))}) has "
                "no coarse grouping, so there is no hierarchical confusion to show. Predictions carry "
                "`fine_to_coarse` only for data sets with superclasses, such as CIFAR-100 (20 of them).")
    cols = st.columns(2) if len(grouped) > 1 else [st.container()]
    for j, r in enumerate(grouped):
        with cols[j % len(cols)], ui.card_on_error(r.name, "its coarse grouping (predictions-test.npz)"):
            d = hierarchy_display(r.files.key, r.name, r)
            st.markdown(f"**{ui.literal(r.name)}** · hierarchical accuracy {100 * d.accuracy:.2f}%")
            frame = d.frame().assign(x_order=lambda f: f["h"], y_order=lambda f: f["g"])
            frame["percent_text"] = frame["percent"].map(lambda v: "" if np.isnan(v) else f"{v:.0f}")
            spec = charts.heatmap(frame, x="predicted_group", y="true_group", value="percent",
                                  text="percent_text", x_title="coarse group of the predicted fine label",
                                  y_title="true coarse group", value_title="% of true group", domain=[0, 100],
                                  tooltip=[{"field": "n_true_group", "title": "samples in the group"}])
            spec["height"] = max(260, 22 * len(d.coarse_names))
            st.vega_lite_chart(frame, spec, width="stretch")
            ui.downloads(f"hierarchy-{safe_stem(r.name)}", lambda d=d: d.plot().figure, key=f"hier:{r.name}")
    if grouped:
        with ui.card_on_error("picked runs", "their coarse groupings"):
            domain_errors(ctx, grouped)


def domain_errors(ctx, grouped) -> None:
    """Paper Fig. 4(c): the runs sharing the first run's grouping, side by side."""
    same = [r for r in grouped if coarse(r)[1] == coarse(grouped[0])[1]]
    st.subheader("Fine-label top-1 error per coarse group")
    mapping, names = coarse(same[0])
    d = replace(DomainErrorDisplay.from_predictions({r.name: np.asarray(r.stats.pred) for r in same},
                                                    np.asarray(same[0].preds.labels), mapping, coarse_names=names),
                colors=ui.colors(same))
    frame = d.frame()
    st.vega_lite_chart(frame, charts.grouped_bars(frame, x="group_name", y="top1_error_pct",
                                                  y_title="top-1 error of the fine label (%)",
                                                  x_title="coarse group of the true label"), width="stretch")
    ui.downloads("domain-top1-error", lambda: d.plot().figure, key="domain")

page()
