"""Embeddings: the cached 2-D t-SNE of each picked run's penultimate features (paper Fig. 3), coloured
by class (colours that stay apart at 100+ classes) or by coarse group, with a legend, the image on
hover, and its Recall@1 (paper Table 6). Choosing a point shows that sample and its nearest
neighbours in feature space (the exact FAISS search of the stats cache) with their classes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from cskd.analysis.displays import TSNEDisplay
from cskd.app import charts, data, images, jobs, ui
from cskd.errors import UserError

PER_ROW = 2
HOVER_LIMIT = 10_000  # points per run that get a thumbnail on hover (each a ~0.5 kB WebP data URL)
LEGEND_LIMIT = 100


@st.cache_resource(show_spinner=False, max_entries=16)
def tsne_frame(key, name: str, color_by: str, _coords, _rows, _preds, thumbnails: bool):
    """(TSNEDisplay.frame() with an `image` column when asked for, palette, legend wanted). A
    resource, not data: the frame (up to ~15 MB of thumbnails) is shared, never copied per rerun,
    and only read."""
    preds = _preds
    mapping = preds.fine_to_coarse
    d = TSNEDisplay.from_embedding(_coords, _rows, np.asarray(preds.labels), class_names=preds.class_names,
                                   fine_to_coarse=None if mapping is None else np.asarray(mapping),
                                   coarse_names=preds.coarse_names, indices=np.asarray(preds.indices),
                                   color_by=color_by, name=name)
    frame = d.frame()
    if thumbnails:
        urls = images.shared_urls(preds, d.rows)
        if urls is not None:
            frame["image"] = urls
    return frame, d.palette, len(d.category_names) <= LEGEND_LIMIT


def one_run(ctx, r, color_by: str, hover: bool) -> None:
    st.markdown(f"**{ui.literal(r.name)}**")
    if r.preds.features is None:
        st.info("These predictions carry no features (imported without --features): there is no embedding and "
                "no Recall@1 to show.")
        return
    try:
        tsne = data.tsne(r.files)
    except UserError as e:  # a damaged cache names its file, and is computed again
        ui.error_card(r.name, e)
        tsne = None
    if tsne is None:
        job = ui.ask(r.files, "tsne", estimate_s=15.0)
        if job.state == "failed":
            ui.error_card(r.name, job.error)
            if st.button(f"Retry the t-SNE of {ui.literal(r.name)}", key=f"tsne:{r.name}"):
                ui.ask(r.files, "tsne", retry=True)
                st.rerun()
        else:
            ui.job_caption(job)
        return
    coords, rows = tsne
    thumbnails = hover and r.preds.images is not None and rows.size <= HOVER_LIMIT
    frame, palette, legend = tsne_frame(r.files.key, r.name, color_by, coords, rows, r.preds, thumbnails)
    recall = r.stats.metrics.get("recall_at_1")
    st.caption(f"{len(frame)} points · Recall@1 {100 * recall:.2f}%" if recall is not None else
               f"{len(frame)} points · Recall@1 still being computed")
    spec = charts.scatter(frame, palette=palette, legend=legend, thumbnails=thumbnails, select="point")
    event = st.vega_lite_chart(frame, spec, key=f"tsne-chart:{r.name}", on_select="rerun", width="stretch")
    picked = (event["selection"].get("point") if event is not None else None) or []
    if picked and "row" in picked[0]:
        st.session_state["_tsne_point"] = (r.name, int(picked[0]["row"]))


def neighbours(ctx, ready) -> None:
    point = st.session_state.get("_tsne_point")
    by_name = {r.name: r for r in ready}
    if point is None or point[0] not in by_name:
        st.caption("Click a point to see its image and its nearest neighbours in feature space.")
        return
    r, row = by_name[point[0]], point[1]
    preds, stats = r.preds, r.stats
    names, labels, indices = preds.class_names, np.asarray(preds.labels), np.asarray(preds.indices)
    st.subheader("Chosen sample and its nearest neighbours")
    nbrs = stats.neighbours
    left, right = st.columns([1, 3], gap="medium")
    with left:
        img = images.image(preds, row)
        if img is not None:
            st.image(img, width=160)
        st.text(f"{r.name}\nsample #{int(indices[row])}\ntrue: {names[labels[row]]}\n"
                f"predicted: {names[int(np.asarray(stats.pred)[row])]}")
    with right:
        if nbrs is None:
            st.caption("The exact neighbour search of this run is still running (or its features are not finite).")
            return
        near = np.asarray(nbrs[row], dtype=np.int64)
        urls = images.urls(r.files.key, tuple(int(n) for n in near), preds)
        table = {"image": urls} if urls is not None else {}
        table.update({"rank": np.arange(1, near.size + 1), "index": indices[near],
                      "class": np.asarray(names, dtype=object)[labels[near]],
                      "same class": labels[near] == labels[row],
                      "squared L2 distance": np.asarray(stats.neighbour_distances[row])})
        st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch", row_height=56 if urls else None,
                     column_config={"image": st.column_config.ImageColumn("image", width="small")})


def page() -> None:
    ctx = ui.context()
    st.title("Embeddings")
    ready = ui.ready_runs(ctx, ui.need_picks(ctx), where="embeddings")
    if not ready:
        return
    grouped = any(r.preds.fine_to_coarse is not None for r in ready)
    row = st.container(horizontal=True, vertical_alignment="bottom")
    color_by = row.segmented_control("Colour by", ["class", "coarse group"] if grouped else ["class"],
                                     default="class", key="emb_color", persist_state="session", required=True)
    hover = row.toggle("Image on hover", value=True, key="emb_hover", persist_state="session",
                       help=f"up to {HOVER_LIMIT:,} points per run")
    color_by = "group" if color_by == "coarse group" else "class"
    for start in range(0, len(ready), PER_ROW):
        cols = st.columns(PER_ROW)
        for col, r in zip(cols, ready[start:start + PER_ROW]):
            with col, ui.card_on_error(r.name, "its t-SNE cache or predictions"):
                one_run(ctx, r, color_by if (color_by == "class" or r.preds.fine_to_coarse is not None) else "class",
                        hover)
    with ui.card_on_error("chosen sample", "its neighbours (stats-test.npz)"):
        neighbours(ctx, ready)
    if any(j.task == "tsne" for j in jobs.active()):
        st.caption("t-SNE takes about 10-20 s per run of 10,000 points on 2 cores; it is cached in the run folder.")


page()
