"""Charts drawn by the browser (Vega-Lite), for the on-screen views.

Building an Altair chart and validating it (`to_dict`) costs about 0.1 s, too much to repeat on
every run-set change. So each chart's spec is built once, without data, as a template reading a
named data source "table"; a rerun only fills in the rows (`_fill`), and st.vega_lite_chart sends
them to the browser as Arrow. The downloadable PNG/PDF figures are the paper-style matplotlib
figures of analysis.figures (see app.data).
"""

from __future__ import annotations

import json

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from analysis.figures import GT_COLOR
from app import data

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf"]  # matplotlib's C0..C9, so the screen matches the downloaded figures
SIDE = 260  # pixels of one reliability panel
TABLE = alt.NamedData(name="table")
UNIT = alt.Scale(domain=[0, 1])


def _fill(template: dict, rows, **top) -> dict:
    """The template with its data source holding `rows` (a DataFrame or records) and top-level
    keys (e.g. title) set. st.cache_data hands out a fresh copy of the template each call."""
    template["datasets"] = {"table": pd.DataFrame(rows)}
    config = {**template.get("config", {}), **top.pop("config", {})}
    template.update(top, config=config)
    return template


def _run_color():
    # Colour by the run's position among the picked runs, in matplotlib's order.
    return alt.Color("order:N", scale=alt.Scale(range=COLORS), legend=None)


@st.cache_data(show_spinner=False)
def _reliability_template() -> dict:
    x = alt.X("lower:Q", scale=UNIT, title="confidence (max softmax)")
    tip = [alt.Tooltip("label:N", title="run"), alt.Tooltip("lower:Q", title="bin from", format=".2f"),
           alt.Tooltip("upper:Q", title="to", format=".2f"), alt.Tooltip("accuracy:Q", format=".3f"),
           alt.Tooltip("confidence:Q", format=".3f"), "count:Q"]
    full = alt.Chart().transform_filter("datum.count > 0")
    # Rectangles with both ends given: a bar with x2 would be drawn as a thin tick.
    acc = full.mark_rect(stroke="black", strokeWidth=0.5).encode(
        x=x, x2="upper:Q", y=alt.Y("zero:Q", scale=UNIT, title="accuracy"), y2="accuracy:Q",
        color=_run_color(), tooltip=tip)
    gap = full.mark_rect(color=GT_COLOR, opacity=0.3).encode(x=x, x2="upper:Q", y="accuracy:Q", y2="confidence:Q",
                                                              tooltip=tip)
    # The identity line, as one segment per bin: (lower, lower) to (upper, upper).
    diagonal = alt.Chart().mark_rule(color="black", strokeDash=[4, 4]).encode(
        x=x, y=alt.Y("lower:Q", scale=UNIT), x2="upper:Q", y2="upper:Q")
    column = dict(sort=alt.EncodingSortField("order", op="min"), title=None)
    top = alt.layer(acc, gap, diagonal).properties(width=SIDE, height=SIDE).facet(
        column=alt.Column("label:N", header=alt.Header(labelFontSize=12, labelLimit=SIDE + 40), **column),
        data=TABLE)
    # Facets share their scales: one count axis for all runs.
    counts = alt.Chart().mark_rect(stroke="black", strokeWidth=0.5).encode(
        x=x, x2="upper:Q", y=alt.Y("zero:Q", title="count"), y2="count:Q", color=_run_color(), tooltip=tip,
    ).properties(width=SIDE, height=70).facet(
        column=alt.Column("label:N", header=alt.Header(labels=False), **column), data=TABLE)
    return alt.vconcat(top, counts, spacing=4).to_dict()


def reliability(runs: tuple, n_bins: int, scaled: bool) -> dict:
    """Reliability diagrams of `runs` ((name, test key, val key), ...) side by side on the same
    axes: accuracy per confidence bin, the gap to the bin's mean confidence shaded, the diagonal,
    and the per-bin counts underneath on one count scale."""
    frames = []
    for j, (name, test, val) in enumerate(runs):
        bins, ece, mce = data.reliability(test, val, n_bins, scaled)
        frames.append(pd.DataFrame({
            "label": f"{name}: ECE {100 * ece:.2f}%, MCE {100 * mce:.2f}%", "order": j,
            "lower": bins.lower, "upper": bins.upper, "zero": 0.0, "count": bins.count,
            "accuracy": np.nan_to_num(bins.accuracy), "confidence": np.nan_to_num(bins.confidence)}))
    return _fill(_reliability_template(), pd.concat(frames, ignore_index=True))


@st.cache_data(show_spinner=False)
def _distribution_template() -> dict:
    base = alt.Chart(TABLE).encode(
        # Room right of 1.0 for the value printed after the longest bar.
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1.15]), title="softmax probability",
                axis=alt.Axis(values=[0, 0.2, 0.4, 0.6, 0.8, 1.0])),
        y=alt.Y("class:N", sort=alt.EncodingSortField("rank", op="min"), title=None),
        tooltip=["class:N", alt.Tooltip("probability:Q", format=".3f"), alt.Tooltip("truth:N", title="ground truth")])
    bars = base.mark_bar().encode(
        color=alt.condition(alt.datum["truth"], alt.value(GT_COLOR), alt.value("#4c78a8")))
    values = base.mark_text(align="left", dx=3, fontSize=11).encode(text=alt.Text("probability:Q", format=".3f"))
    return alt.layer(bars, values).to_dict()


def distribution(name: str, test, row: int) -> dict:
    """One run's top-5 softmax on one sample as bars, the ground truth in red, also its axis
    label (appended below the top 5 when it is not among them)."""
    dist = data.distribution(test, row)
    class_names = data.predictions(test)["class_names"]
    classes, probs = list(dist["classes"]), list(dist["probs"])
    if not dist["true_in_topk"]:
        classes.append(dist["true_class"])
        probs.append(dist["true_prob"])
    rows = {"class": [class_names[c] for c in classes], "probability": probs, "rank": range(len(classes)),
            "truth": [c == dist["true_class"] for c in classes]}
    true_name = class_names[dist["true_class"]]
    label_color = {"condition": {"test": f"datum.value === {json.dumps(true_name)}", "value": GT_COLOR},
                   "value": "#444"}
    # The height covers title and axis too (Streamlit fits the whole chart into it).
    return _fill(_distribution_template(), rows, title=name, height=30 * len(classes) + 100,
                 config={"axisY": {"labelColor": label_color, "labelFontSize": 12}})


@st.cache_data(show_spinner=False)
def _logprob_template() -> dict:
    return alt.Chart(TABLE).mark_rect(opacity=0.45, stroke=None).encode(
        x=alt.X("lower:Q", title="log-probability"), x2="upper:Q",
        y=alt.Y("zero:Q", title="samples"), y2="count:Q", color=alt.Color(
            "run:N", sort=alt.EncodingSortField("order", op="min"), scale=alt.Scale(range=COLORS),
            legend=alt.Legend(orient="top", title=None)),
        tooltip=["run:N", alt.Tooltip("lower:Q", format=".2f"), alt.Tooltip("upper:Q", format=".2f"), "count:Q"],
    ).properties(width=380, height=220).facet(
        column=alt.Column("of:N", title=None, sort=["predicted class", "ground-truth class"],
                          header=alt.Header(labelExpr="'log-probability of the ' + datum.value", labelFontSize=12)),
    ).resolve_scale(x="independent", y="independent").to_dict()


def logprob(named_keys: tuple, first_not_second: bool) -> dict:
    """Paper Fig. 2 on screen: overlaid histograms of the log-probability of the predicted and of
    the true class on the misclassified samples, one colour per run."""
    return _fill(_logprob_template(), data.logprob_hist(named_keys, first_not_second))


@st.cache_data(show_spinner=False)
def _hierarchy_template() -> dict:
    order = alt.EncodingSortField("g", op="min")
    base = alt.Chart(TABLE).encode(
        x=alt.X("predicted group:N", sort=alt.EncodingSortField("h", op="min"),
                title="coarse group of the predicted fine label"),
        y=alt.Y("true group:N", sort=order, title="true coarse group"))
    cells = base.mark_rect().encode(
        color=alt.Color("percent:Q", scale=alt.Scale(scheme="blues", domain=[0, 100]), title="% of true group",
                        legend=alt.Legend(orient="bottom", gradientLength=200)),
        tooltip=["true group:N", "predicted group:N", alt.Tooltip("percent:Q", format=".1f")])
    text = base.mark_text(fontSize=9).encode(
        text=alt.Text("percent:Q", format=".0f"),
        color=alt.condition(alt.datum.percent > 50, alt.value("white"), alt.value("black")))
    return alt.layer(cells, text).to_dict()


def hierarchy(test) -> dict:
    """The coarse confusion matrix (percent of the true group) as a heat map."""
    _, matrix, names = data.hierarchy(test)
    g, h = np.meshgrid(np.arange(len(names)), np.arange(len(names)), indexing="ij")
    names = np.asarray(names, dtype=object)
    rows = {"g": g.ravel(), "h": h.ravel(), "true group": names[g.ravel()], "predicted group": names[h.ravel()],
            "percent": np.nan_to_num(100 * matrix.ravel())}
    return _fill(_hierarchy_template(), rows, height=max(300, 22 * len(names) + 160))


@st.cache_data(show_spinner=False)
def _curves_template() -> dict:
    return alt.Chart(TABLE).mark_line().encode(
        x=alt.X("epoch:Q"), y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("run:N", sort=alt.EncodingSortField("order", op="min"), scale=alt.Scale(range=COLORS),
                        legend=alt.Legend(orient="bottom", columns=2, title=None)),
        tooltip=["run:N", "epoch:Q", alt.Tooltip("value:Q", format=".4f")],
    ).properties(height=300).to_dict()


def curves(runs: tuple, metric: str, title: str) -> dict | None:
    """One line per run ((name, folder, metrics.jsonl key), ...) of `metric` against the epoch;
    None if no run logs it."""
    rows = [{"run": name, "order": j, "epoch": r["epoch"], "value": r[metric]}
            for j, (name, folder, key) in enumerate(runs) for r in data.curves(folder, key)
            if isinstance(r.get(metric), (int, float)) and "epoch" in r]
    return _fill(_curves_template(), rows, title=title) if rows else None


def scatter(df, n_classes: int) -> alt.Chart:
    """t-SNE points coloured by class; hover shows class and data-set index. Built per call:
    one layer is cheap, and its 10,000 rows go to the browser as Arrow."""
    legend = alt.Legend(columns=2, symbolLimit=20) if n_classes <= 20 else None
    return alt.Chart(df).mark_circle(size=9, opacity=0.7).encode(
        x=alt.X("x:Q", axis=None), y=alt.Y("y:Q", axis=None),
        color=alt.Color("class:N", legend=legend, sort=None),
        tooltip=["class:N", "index:Q"],
    ).properties(height=420).interactive()
