"""Calibration (paper §3.1, Fig. 5): reliability diagrams of the picked runs overlaid on one axes or
side by side, equal-width or equal-mass bins, counts on a log or linear axis, before or after
temperature scaling (fitted on the validation split, never on the test split), with ECE/MCE for
the chosen bins beside the stats cache's NLL, adaptive and class-wise ECE, Brier score, bootstrap
interval and over-/under-confidence, seed groups as mean ± std, and PNG/PDF downloads drawn from
the same ReliabilityDisplay objects."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cskd.analysis.calibration import CI_LEVEL, N_BINS, N_BOOT
from cskd.analysis.displays import ReliabilityDisplay, overlay, side_by_side
from cskd.analysis.smooth_calibration import (
    SmoothReliability,
    plot_smooth_reliability,
    smooth_frame,
    smooth_reliability,
)
from cskd.analysis.tables import cell_text, group_by_seed, row_labels, scale
from cskd.app import charts, ui
from cskd.config import NOT_EXPERIMENT

STRATEGIES = {"equal-width": "uniform", "equal-mass": "quantile", "smooth (no bins)": "smooth"}
GROUPED = {"ece": f"ECE ({N_BINS} bins)", "adaptive_ece": "adaptive ECE", "classwise_ece": "class-wise ECE",
           "nll": "NLL", "brier": "Brier", "overconfidence": "over-confidence", "ece_after_ts": "ECE after TS"}


@st.cache_data(show_spinner=False, max_entries=512)
def display(key, name: str, _stats, n_bins: int, strategy: str, scaled: bool) -> ReliabilityDisplay:
    """The run's reliability bins from its cached per-sample confidence and correctness (no softmax)."""
    conf = _stats.ts_confidence if scaled else _stats.confidence
    correct = _stats.ts_correct if scaled else _stats.correct
    return ReliabilityDisplay.from_confidence(conf, correct, n_bins=n_bins, strategy=strategy, name=name)


@st.cache_data(show_spinner=False, max_entries=512)
def smooth(key, name: str, _stats, scaled: bool) -> SmoothReliability:
    """The run's smooth reliability curve and smooth ECE (relplot) from its cached confidence and correctness."""
    conf = _stats.ts_confidence if scaled else _stats.confidence
    correct = _stats.ts_correct if scaled else _stats.correct
    return smooth_reliability(conf, correct)


def controls() -> tuple[int, str, str, bool, bool]:
    row = st.container(horizontal=True, vertical_alignment="bottom")
    with row:
        n_bins = st.number_input("Bins", min_value=1, max_value=200, value=N_BINS, step=1, key="n_bins",
                                 persist_state="session", help=f"The paper uses {N_BINS} equal-width bins.", width=120)
        strategy = st.segmented_control("Bins of", list(STRATEGIES), default="equal-width", key="cal_strategy",
                                        persist_state="session", required=True,
                                        help="equal-width: (m/M, (m+1)/M]; equal-mass: the same number of samples "
                                             "each; smooth: kernel-smoothed accuracy with a 95 % bootstrap band and "
                                             "the "
                                             "smooth ECE (Błasiok & Nakkiran, ICLR 2024), which needs no bin count")
        layout = st.segmented_control("Layout", ["overlaid", "side by side"], default="overlaid", key="cal_layout",
                                      persist_state="session", required=True)
        counts = st.segmented_control("Count axis", ["log", "linear"], default="log", key="cal_counts",
                                      persist_state="session", required=True,
                                      help="log: bins holding a few samples stay visible")
        scaled = st.toggle("Temperature-scaled", key="cal_scaled", persist_state="session",
                           help="softmax(logits / T), T fitted on the run's validation predictions")
    return int(n_bins), STRATEGIES[strategy or "equal-width"], layout or "overlaid", (counts or "log") == "log", scaled


def metrics_table(ready, displays: dict, curves: dict) -> pd.DataFrame:
    """One line per metric, one column per run (a few runs, many metrics: this way it fits)."""
    table = {}
    for r in ready:
        m, d = r.stats.metrics, displays.get(r.name)
        over, (low, high) = m["overconfidence"], (m.get("ece_ci_low"), m.get("ece_ci_high"))
        if curves:
            shown = {"smooth ECE (shown predictions)": _pct(curves[r.name].smooth_ece if r.name in curves else None)}
        else:
            shown = {"ECE (shown bins)": _pct(d.ece if d else None), "MCE (shown bins)": _pct(d.mce if d else None)}
        table[r.name] = {
            **shown,
            f"ECE ({N_BINS} equal-width bins)": _pct(m["ece"]),
            f"ECE {CI_LEVEL:.0%} bootstrap interval": f"{100 * low:.2f}–{100 * high:.2f} %" if low is not None else "—",
            f"adaptive ECE ({N_BINS} equal-mass bins)": _pct(m["adaptive_ece"]),
            "class-wise ECE": _pct(m["classwise_ece"]), "smooth ECE (no bins)": _pct(m.get("smooth_ece")),
            "NLL (nats)": f"{m['nll']:.3f}", "Brier score": f"{m['brier']:.3f}",
            "confidence − accuracy": ("over-confident by " if over > 0 else "under-confident by ")
            + f"{100 * abs(over):.2f} %",
            "temperature T (fit on val)": f"{m['temperature']:.3f}" if m.get("temperature") else "— (no val)",
            "ECE after TS": _pct(m.get("ece_after_ts")), "MCE after TS": _pct(m.get("mce_after_ts")),
            "NLL after TS": f"{m['nll_after_ts']:.3f}" if m.get("nll_after_ts") is not None else "—"}
    # the metric names stay the index: as a column, a run named "metric" would collide with them
    return pd.DataFrame(table).rename_axis("metric")


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f} %"


def seed_table(ready) -> None:
    records = [{"run": r.name, "config": r.record["config"],
                "metrics": {k: v for k, v in r.stats.metrics.items() if k in GROUPED and v is not None}} for r in ready]
    groups = group_by_seed(records, ignore=NOT_EXPERIMENT) if records else []
    labels = row_labels(groups) if groups else []
    shown = [(label, g) for label, g in zip(labels, groups) if len(g.runs) > 1]
    if not shown:
        return
    st.markdown("**Seed groups** (picked runs that differ only by seed): mean ± sample std")
    rows = []
    for label, g in shown:
        row = {"group": label, "n": len(g.runs)}
        for k, title in GROUPED.items():
            row[title + (" %" if scale(k) == 100.0 else "")] = cell_text(g, k, missing="—")
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def smooth_section(ctx, curves: dict, scaled: bool) -> None:
    """The smooth reliability curves of the picked runs on one axes, with their PNG/PDF download."""
    st.markdown(f"**Smooth reliability** ({'after temperature scaling' if scaled else 'test split'}; "
                f"kernel-smoothed accuracy, band: 95 % bootstrap, below: density of the confidences)")
    colors = {name: ctx.color(name) for name in curves}
    frame = smooth_frame(curves, colors=colors)
    st.vega_lite_chart(frame, charts.smooth_reliability(frame))
    ui.downloads(f"reliability-{'ts-' if scaled else ''}smooth", lambda: plot_smooth_reliability(curves, colors=colors)
                 .figure, key="reliability-smooth")


def page() -> None:
    ctx = ui.context()
    st.title("Calibration")
    n_bins, strategy, layout, log_counts, scaled = controls()
    ready = ui.ready_runs(ctx, ui.need_picks(ctx), where="calibration")
    if not ready:
        return
    shown = [r for r in ready if not scaled or r.stats.temperature is not None]
    if scaled and len(shown) < len(ready):
        st.caption(f"Not temperature-scaled (no validation predictions to fit T on; it is never fitted on the test "
                   f"split): {ui.literal(', '.join(r.name for r in ready if r not in shown))}.")
    displays, curves = {}, {}
    for r in shown:
        with ui.card_on_error(r.name, "its stats cache"):
            if strategy == "smooth":
                curves[r.name] = smooth(r.files.key, r.name, r.stats, scaled)
            else:
                displays[r.name] = display(r.files.key, r.name, r.stats, n_bins, strategy, scaled)
    table = metrics_table(ready, displays, curves)
    st.dataframe(table, hide_index=False, width="stretch", height=35 * len(table) + 40)
    st.caption(f"Bootstrap interval: percentile bootstrap of the {N_BINS}-bin ECE ({N_BOOT:,} resamples of the "
               "test set). confidence − accuracy: mean max-softmax probability minus accuracy (the signed ECE). TS: "
               "temperature scaling, T fitted on the validation split.")
    seed_table(ready)
    if curves:
        smooth_section(ctx, curves, scaled)
    if not displays:
        return
    frame = pd.concat([d.frame(order=ctx.picked.index(name)) for name, d in displays.items()], ignore_index=True)
    kind = "equal-width" if strategy == "uniform" else "equal-mass"
    what = f"{'after temperature scaling' if scaled else 'test split'}, {n_bins} {kind} bins"
    st.markdown(f"**Reliability diagrams** ({what})")
    spec = (charts.reliability_overlay if layout == "overlaid" else charts.reliability_side_by_side)(
        frame, log_counts=log_counts)
    st.vega_lite_chart(frame, spec)
    ordered = list(displays.values())
    colors = {name: ctx.color(name) for name in displays}  # the download in the screen's colours

    def figure():
        if layout == "overlaid":
            return overlay(ordered, log_counts=log_counts, colors=colors)[0].figure
        return side_by_side(ordered, log_counts=log_counts, colors=colors)

    ui.downloads(f"reliability-{'ts-' if scaled else ''}{n_bins}{strategy}-{layout.replace(' ', '-')}", figure,
                 key="reliability")
    with st.expander("Samples per bin"):
        table = frame.pivot_table(index=["bin"], columns="run", values="count", aggfunc="first")
        first = frame[frame["order"] == frame["order"].min()]
        table.insert(0, "bin (first run's edges)", [f"({lo:.3f}, {hi:.3f}]" for lo, hi in zip(first["lower"],
                                                                                            first["upper"])])
        st.dataframe(table.reset_index(drop=True), hide_index=True)


page()
