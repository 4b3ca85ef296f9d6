"""Misclassified: the test samples the picked runs get wrong (every run, one but not another, any, or
where they disagree), filtered and sorted, summarised per run, paged through in full with their
images and each run's prediction, one sample inspected beside the gallery (paper Fig. 1b, the runs
on one class axis), and the log-probability histograms of paper Fig. 2."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import streamlit as st

from cskd.app import charts, images, selection, ui

PAGE_SIZES = (24, 48, 96)


def choose_set(ready) -> tuple[str, int, int, str]:
    names = [r.name for r in ready]
    mode = st.segmented_control("Samples", list(selection.SETS), default="every run wrong", key="mis_mode",
                                persist_state="session", required=True) or "every run wrong"
    a, b = 0, 1
    if mode == "one wrong, one right":
        if len(ready) < 2:
            st.info("Pick at least two runs to compare one against another.")
            mode = "every run wrong"
        else:
            left, right = st.columns(2)
            a = names.index(left.selectbox("wrong in", names, key="mis_a", persist_state="session"))
            rest = [n for n in names if n != names[a]]
            b = names.index(right.selectbox("but right in", rest, key="mis_b", persist_state="session"))
    names_part = f"{names[a]} but not by {names[b]}" if mode == "one wrong, one right" else ", ".join(names)
    what = selection.SETS[mode] if mode != "one wrong, one right" else f"misclassified by {names_part}"
    return mode, a, b, what


def filters(ready, class_names: list) -> dict:
    names = [r.name for r in ready]
    with st.expander("Filter and sort", expanded=False):
        c1, c2, c3 = st.columns(3)
        ref = names.index(c1.selectbox("Confidence, predicted class and rank of", names, key="mis_ref",
                                       persist_state="session"))
        order = c1.selectbox("Sort by", selection.ORDERS, key="mis_order", persist_state="session")
        ids = list(range(len(class_names)))
        true_classes = c2.multiselect("True class", ids, format_func=lambda c: class_names[c], key="mis_true",
                                      persist_state="session", placeholder="any")
        predicted = c2.multiselect("Predicted class", ids, format_func=lambda c: class_names[c], key="mis_pred",
                                   persist_state="session", placeholder="any")
        confidence = c3.slider("Confidence", 0.0, 1.0, (0.0, 1.0), step=0.01, key="mis_conf",
                               persist_state="session")
        worst = max(2, len(class_names))
        # 1-based, as every rank on the pages (selection.rank_text); a new key: old sessions held 0-based ranks
        ranks = c3.slider("Rank of the true class (1 = top-1)", 1, worst, (1, worst), key="mis_rank_1based",
                          persist_state="session")
        disagree = c3.toggle("Only where the runs disagree", key="mis_disagree", persist_state="session",
                             disabled=len(ready) < 2)
    return dict(ref=ref, order=order, true_classes=tuple(true_classes), predicted=tuple(predicted),
                confidence=tuple(confidence), ranks=(ranks[0] - 1, ranks[1] - 1), disagree=disagree)


def gallery_table(ready, rows: np.ndarray, labels, indices, class_names, ref: int) -> pd.DataFrame:
    """One line per sample on the page: image, data-set index, true class, each run's prediction and
    confidence, and the reference run's probability and rank of the true class."""
    first = ready[0]
    urls = images.urls(first.files.key, tuple(int(r) for r in rows), first.preds)
    names = np.asarray(class_names, dtype=object)
    table = {}
    if urls is not None:
        table["image"] = urls
    table.update({"index": indices[rows], "true class": names[labels[rows]]})
    for r in ready:  # one column per run: what it predicts, with its confidence
        s = r.stats
        conf = np.asarray(s.confidence)[rows]
        table[f"{r.name} predicts"] = [f"{c} ({p:.2f})" for c, p in zip(names[np.asarray(s.pred)[rows]], conf)]
    s = ready[ref].stats
    table["p(true class)"] = np.exp(np.asarray(s.true_logprob)[rows])
    table["rank of true class"] = np.asarray(s.true_rank)[rows] + 1  # 1-based: 1 = top-1
    return pd.DataFrame(table)


def gallery(ready, rows, labels, indices, class_names, ref: int) -> int | None:
    """The whole set, a page at a time; returns the row of the sample to inspect."""
    top = st.container(horizontal=True, vertical_alignment="bottom")
    size = top.segmented_control("Per page", PAGE_SIZES, default=48, key="mis_page_size", persist_state="session",
                                 required=True) or 48
    pages = max(1, -(-rows.size // size))
    if st.session_state.get("mis_page", 1) > pages:
        st.session_state["mis_page"] = pages
    page = top.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1, key="mis_page",
                            persist_state="session", width=140)
    shown = rows[(page - 1) * size: page * size]
    top.caption(f"samples {(page - 1) * size + 1}–{(page - 1) * size + shown.size} of {rows.size}")
    if ready[0].preds.images is None:
        st.caption("These predictions carry no images (imported without --images, or a file data set of more "
                   "than 20,000 samples): the table lists the samples without them.")
    table = gallery_table(ready, shown, labels, indices, class_names, ref)
    config = {"image": st.column_config.ImageColumn("image", width="small"),
              "index": st.column_config.NumberColumn("index", help="the sample's position in its data set")}
    ref_name = ready[ref].name
    config["p(true class)"] = st.column_config.NumberColumn(format="%.3f", help=f"in {ui.literal(ref_name)}")
    config["rank of true class"] = st.column_config.NumberColumn(help=f"in {ui.literal(ref_name)}; 1 = its top-1, "
                                                                  f"of {len(class_names)} classes")
    event = st.dataframe(table, hide_index=True, width="stretch", column_config=config, key="mis_gallery",
                         on_select="rerun", selection_mode="single-row", row_height=56 if "image" in table else None,
                         height=min(56 * len(table) + 40, 620))
    picked = event["selection"]["rows"] if event is not None else []
    if picked and picked[0] < shown.size:
        return int(shown[picked[0]])
    return int(shown[0]) if shown.size else None


def inspect(ctx, ready, row: int, labels, indices, class_names) -> None:
    """The sample beside the gallery: its image, what each run predicts, and their distributions."""
    index = int(indices[row])
    true_name = class_names[int(labels[row])]
    st.markdown(f"**Sample #{index}** · ground truth **{ui.literal(true_name)}**")
    img = images.image(ready[0].preds, row)
    if img is not None:
        st.image(img, width=160)
    lines = []
    for r in ready:
        s = r.stats
        p, pred = float(np.asarray(s.confidence)[row]), int(np.asarray(s.pred)[row])
        t, rank = float(np.exp(np.asarray(s.true_logprob)[row])), int(np.asarray(s.true_rank)[row])
        verdict = "right" if pred == int(labels[row]) else "wrong"
        lines.append(f"{r.name}: predicts {class_names[pred]} (p = {p:.3f}, {verdict}); true class p = {t:.3f}, "
                     f"{selection.rank_text(rank, len(class_names))}")
    st.text("\n".join(lines))
    shared = st.toggle("One class axis for all runs", value=len(ready) > 1, key="mis_shared", persist_state="session",
                       help="the union of the runs' top 5 (and the true class); off: each run's own top 5")
    d = replace(selection.distribution(ready, row, shared_axis=shared, index=index), colors=ui.colors(ready))
    frame = selection.distribution_frame(d, ctx)
    with st.container(key="distributions"):
        st.vega_lite_chart(frame, charts.distributions(frame, shared_axis=shared, true_name=true_name),
                           width="stretch")
    st.caption("Bars: softmax probabilities, one colour per run; the ground truth's bars are outlined and its "
               "label red (added below the top 5 when no run ranks it there).")
    ui.downloads(f"predictive-distribution-{index}", lambda: d.plot(image=images.image(ready[0].preds, row, 32)).figure,
                 key="distribution")


def page() -> None:
    ctx = ui.context()
    st.title("Misclassified samples")
    ready = ui.ready_runs_on_same_samples(ctx, where="misclassified")
    if not ready:
        return
    with ui.card_on_error("picked runs", "their predictions or stats caches"):
        body(ctx, ready)


def body(ctx, ready) -> None:
    first = ready[0].preds
    labels, indices, class_names = np.asarray(first.labels), np.asarray(first.indices), first.class_names
    mode, a, b, what = choose_set(ready)
    f = filters(ready, class_names)
    base = selection.base_rows(ready, mode, a, b)
    rows = selection.filtered(ready, base, labels, **f)
    narrowed = " (after the filters)" if rows.size != base.size else ""
    st.markdown(f"**{rows.size}** of {labels.size} test samples are {ui.literal(what)}{narrowed}.")
    summary = selection.summary(ready, rows)
    st.dataframe(summary, hide_index=True, width="stretch", column_config={
        c: st.column_config.NumberColumn(c, format="%.3f") for c in summary.columns if c.startswith("mean")})
    agree = selection.agreement(ready, rows)
    if agree is not None:
        st.caption(f"The runs predict the same class for {100 * agree:.1f} % of these samples.")
    if rows.size:
        left, right = st.columns([3, 2], gap="medium")
        with left:
            row = gallery(ready, rows, labels, indices, class_names, f["ref"])
        with right, st.container(key="inspect"):
            if row is not None:
                inspect(ctx, ready, row, labels, indices, class_names)
    logprobs(ctx, ready, rows, what + narrowed)


def logprobs(ctx, ready, rows: np.ndarray, what: str) -> None:
    st.markdown("**Log-probabilities on these samples** (paper Fig. 2)")
    d = selection.logprob_display(tuple(r.files.key for r in ready), ready, (rows.size, hash(rows.tobytes())), rows,
                                  what)
    d = replace(d, colors=ui.colors(ready))
    if d.too_few:
        st.info(f"Only {d.n_samples} sample(s) qualify: fewer than {d.min_samples}, too few for a histogram.")
        return
    frame = d.frame()
    st.vega_lite_chart(frame, charts.logprob(frame))
    ui.downloads("logprob-histograms", lambda: d.plot()[0].figure, key="logprob")


page()
