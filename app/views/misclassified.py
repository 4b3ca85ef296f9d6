"""Misclassified: the test samples all picked runs get wrong (or one run but not another), their
images, each run's predictive distribution on a selected sample (paper Fig. 1b) and the
log-probability histograms of paper Fig. 2."""

from __future__ import annotations

import streamlit as st

from app import charts, data, ui

ALL, ONE = "misclassified by every picked run", "misclassified by one run but not another"
COLUMNS = 8  # images per gallery row


def choose_set(ready):
    """(runs whose logits define the set, first_not_second, description) from the widgets."""
    ui.kept("mis_mode", ALL)
    st.radio("Samples", (ALL, ONE), key="mis_mode", horizontal=True)
    ui.keep("mis_mode")
    if st.session_state["mis_mode"] == ALL or len(ready) < 2:
        if st.session_state["mis_mode"] == ONE:
            st.info("Pick at least two runs to compare one against another.")
        return ready, False, f"misclassified by all of {', '.join(f.name for f in ready)}"
    names = [f.name for f in ready]
    left, right = st.columns(2)
    a = left.selectbox("wrong in", names, index=0, key="mis_a")
    b = right.selectbox("but right in", [n for n in names if n != a], index=0, key="mis_b")
    by_name = {f.name: f for f in ready}
    return [by_name[a], by_name[b]], True, f"misclassified by {a} but not by {b}"


def select(row: int) -> None:
    st.session_state["mis_row"] = row


def gallery(ready, rows, class_names, labels, indices) -> None:
    images = data.gallery(ready[0].test, tuple(rows))
    if images is None:
        st.caption("These predictions carry no images (file data sets above 20,000 samples store none).")
        return
    preds = {f.name: data.top_predictions(f.test, tuple(rows)) for f in ready}
    cols = st.columns(COLUMNS)
    for j, (row, img) in enumerate(zip(rows, images)):
        predicted = "/".join(class_names[p[j]] for p in preds.values())
        with cols[j % COLUMNS], st.container(key=f"gallery-{j}"):
            st.image(img, caption=f"#{indices[row]} true {class_names[labels[row]]} → {predicted}")
            st.button("Inspect", key=f"inspect:{row}", on_click=select, args=(int(row),),
                      type="primary" if row == st.session_state.get("mis_row") else "secondary")


def inspect(ready, rows, class_names, labels, indices) -> None:
    if st.session_state.get("mis_row") not in set(int(r) for r in rows):
        st.session_state["mis_row"] = int(rows[0])
    row = st.selectbox("Selected sample", [int(r) for r in rows], key="mis_row",
                       format_func=lambda r: f"#{indices[r]} (true {class_names[labels[r]]})")
    st.subheader(f"Sample #{indices[row]}: ground truth {class_names[labels[row]]}")
    cols = st.container(key="distributions").columns([1] + [2] * len(ready))
    image = data.gallery(ready[0].test, (row,), 160)
    if image is not None:
        cols[0].image(image[0], caption=f"#{indices[row]}")
    for col, f in zip(cols[1:], ready):
        spec = charts.distribution(f.name, f.test, row)
        col.vega_lite_chart(spec=spec, width="stretch", height=spec["height"])
    st.caption("Top-5 classes of each run's softmax; the ground truth in red (added when outside the top 5).")


def page() -> None:
    ctx = ui.context()
    st.title("Misclassified samples")
    ready = ui.with_predictions(ctx, ui.need_picks(ctx), where="misclassified")
    if not ready:
        return
    runs, first_not_second, what = choose_set(ready)
    try:
        rows = data.misclassified(tuple(f.test for f in runs), first_not_second)
    except Exception as e:  # noqa: BLE001 -- e.g. runs on different data sets
        ui.error_card("picked runs", e)
        return
    p = data.predictions(runs[0].test)
    class_names, labels, indices = p["class_names"], p["labels"], p["indices"]
    st.markdown(f"**{len(rows)}** of {len(labels)} test samples are {what}.")
    if len(rows) == 0:
        return

    st.markdown("**Gallery** (captions: data-set index, true class → each run's prediction)")
    ui.kept("mis_limit", 16)
    st.select_slider("Images shown", options=[8, 16, 24, 48, 96], key="mis_limit")
    ui.keep("mis_limit")
    shown = rows[: st.session_state["mis_limit"]]
    gallery(runs, shown, class_names, labels, indices)
    inspect(runs, rows, class_names, labels, indices)

    st.markdown("**Log-probabilities on these samples** (paper Fig. 2)")
    named = tuple((f.name, f.test) for f in runs)
    st.vega_lite_chart(spec=charts.logprob(named, first_not_second))
    ui.downloads("logprob-misclassified", lambda: data.logprob_figure(named, first_not_second, "png"),
                 lambda: data.logprob_figure(named, first_not_second, "pdf"), key="logprob")


page()
