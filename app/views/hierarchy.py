"""Hierarchy: for runs whose predictions carry a coarse grouping (`fine_to_coarse`,
`coarse_names`, e.g. CIFAR-100's 20 superclasses), the confusion between coarse groups of the
true label and of the predicted fine label, and the hierarchical accuracy (paper §3.3, Fig. 4)."""

from __future__ import annotations

import streamlit as st

from app import charts, data, ui


def page() -> None:
    ctx = ui.context()
    st.title("Hierarchy")
    st.caption("Row g, column h: share of the test samples of true coarse group g whose predicted "
               "fine class belongs to coarse group h. Hierarchical accuracy: share on the diagonal.")
    ready = ui.with_predictions(ctx, ui.need_picks(ctx), where="hierarchy")
    grouped = [f for f in ready if "fine_to_coarse" in data.predictions(f.test)]
    flat = [f for f in ready if f not in grouped]
    if flat:
        sets = sorted({data.predictions(f.test)["dataset"] for f in flat})
        st.info(f"{', '.join(f.name for f in flat)}: the data set ({', '.join(sets)}) has no coarse grouping, "
                "so there is no hierarchical confusion to show. Predictions carry `fine_to_coarse` and "
                "`coarse_names` only for data sets with superclasses, such as CIFAR-100 (20 of them).")
    cols = st.columns(2) if len(grouped) > 1 else [st.container()]
    for j, f in enumerate(grouped):
        with cols[j % len(cols)]:
            try:
                acc, _, _ = data.hierarchy(f.test)
            except Exception as e:  # noqa: BLE001
                ui.error_card(f.name, e)
                continue
            st.markdown(f"**{f.name}** · hierarchical accuracy {100 * acc:.2f}%")
            spec = charts.hierarchy(f.test)
            st.vega_lite_chart(spec=spec, width="stretch", height=spec["height"])
            ui.downloads(f"hierarchy-{f.name.replace('/', '_')}",
                         lambda test=f.test: data.hierarchy_figure(test, "png"),
                         lambda test=f.test: data.hierarchy_figure(test, "pdf"), key=f"hier:{f.name}")


page()
