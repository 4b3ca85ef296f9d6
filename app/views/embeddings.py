"""Embeddings: the cached 2-D t-SNE of each picked run's penultimate features, coloured by class
(paper Fig. 3), with its Recall@1 (paper Table 6)."""

from __future__ import annotations

import streamlit as st

from app import charts, data, ui

PER_ROW = 2  # charts side by side


def tsne_button(f, label: str) -> None:
    if st.button(label, key=f"tsne:{f.name}", help="openTSNE on the test features; about 10 s for 10,000 samples"):
        from cskd.analyze import cached_tsne

        with st.spinner(f"t-SNE of {f.name}"):
            try:
                cached_tsne(f.path, "test", data.predictions(f.test))
            except Exception as e:  # noqa: BLE001 -- stays on the card of this run
                ui.error_card(f.name, e)
                return
        st.rerun()


def one_run(f) -> None:
    st.markdown(f"**{f.name}**")
    try:
        df = data.tsne_frame(f.tsne, f.test)
    except Exception as e:  # noqa: BLE001 -- a damaged cache names its file, and can be redone
        ui.error_card(f.name, e)
        tsne_button(f, f"Recompute the t-SNE of {f.name}")
        return
    if df is None:
        st.caption("No t-SNE cache (`tsne-test.npz`) newer than the predictions.")
        tsne_button(f, f"Compute the t-SNE of {f.name}")
        return
    try:
        r1 = data.test_metrics(f.test, f.val)["recall_at_1"]
        st.caption(f"Recall@1 {100 * r1:.2f}% · {len(df):,} points · hover a point for its class and index")
    except Exception as e:  # noqa: BLE001
        ui.error_card(f.name, e)
    n_classes = len(data.predictions(f.test)["class_names"])
    st.altair_chart(charts.scatter(df, n_classes), width="stretch")


def page() -> None:
    ctx = ui.context()
    st.title("Embeddings")
    st.caption("t-SNE of the penultimate features of the test split (at most 10,000 points, stratified), "
               "cached in each run's `tsne-test.npz`. Recall@1: share of samples whose nearest "
               "neighbour in feature space has the same class.")
    ready = ui.with_predictions(ctx, ui.need_picks(ctx), where="embeddings")
    for start in range(0, len(ready), PER_ROW):
        cols = st.columns(PER_ROW)
        for col, f in zip(cols, ready[start:start + PER_ROW]):
            with col:
                one_run(f)


page()
