"""The dashboard's Calibration, Misclassified, Confusion, Embeddings and Hierarchy pages through
AppTest, each number checked against an independent computation on the predictions."""

from __future__ import annotations

import re

import numpy as np
import pytest
from app_helpers import CE, CSKD0, FLAT, app, charts, open_page, preds, texts
from streamlit import dataframe_util


@pytest.fixture
def runs(tiny_app_runs):
    return tiny_app_runs


def chart_frames(at) -> list:
    return [dataframe_util.convert_arrow_bytes_to_pandas_df(c.proto.data.data) for c in charts(at)]


def metric(table, name, run):
    return table.loc[name, run]  # metric names are the index


# the misclassified page's count: "**N** of M test samples are ..." (texts() drops the bold)
SHOWN = re.compile(r"(?P<shown>\d+) of (?P<total>\d+) test samples are")


def shown_samples(at) -> int:
    m = SHOWN.search(texts(at.markdown))
    assert m, texts(at.markdown)
    return int(m["shown"])


# ------------------------------------------------------------------------------------ calibration

def test_calibration_numbers_follow_bins_strategy_and_temperature(monkeypatch, runs):
    from cskd.analysis import calibration as cal
    from cskd.analysis.metrics import nll, softmax

    at = open_page(app(monkeypatch, runs, [CE, CSKD0]), "calibration")
    p, v = preds(runs, CE), preds(runs, CE, "val")
    probs = softmax(p.logits)
    table = at.dataframe[0].value
    assert metric(table, "ECE (shown bins)", CE) == f"{100 * cal.ece(probs, p.labels, n_bins=20):.2f} %"
    assert metric(table, "MCE (shown bins)", CE) == f"{100 * cal.mce(probs, p.labels, n_bins=20):.2f} %"
    assert metric(table, "adaptive ECE (20 equal-mass bins)", CE) == f"{100 * cal.adaptive_ece(probs, p.labels):.2f} %"
    assert metric(table, "class-wise ECE", CE) == f"{100 * cal.classwise_ece(probs, p.labels):.2f} %"
    assert metric(table, "Brier score", CE) == f"{cal.brier_score(probs, p.labels):.3f}"
    assert metric(table, "NLL (nats)", CE) == f"{nll(p.logits, p.labels):.3f}"
    low, high = cal.ece_bootstrap_ci(probs, p.labels)
    assert metric(table, "ECE 95% bootstrap interval", CE) == f"{100 * low:.2f}–{100 * high:.2f} %"
    over = cal.overconfidence(probs, p.labels)
    assert metric(table, "confidence − accuracy", CE) == f"over-confident by {100 * over:.2f} %"
    t = cal.fit_temperature(v.logits, v.labels)
    assert metric(table, "temperature T (fit on val)", CE) == f"{t:.3f}"
    scaled = softmax(p.logits / t)
    assert metric(table, "ECE after TS", CE) == f"{100 * cal.ece(scaled, p.labels):.2f} %"
    frame = chart_frames(at)[0]
    assert set(frame["run"]) == {CE, CSKD0} and (frame.groupby("run")["count"].sum() == len(p.labels)).all()
    assert set(frame["color"]) == {"#1f77b4", "#ff7f0e"}  # the runs' colours by their place among the picks
    assert len(at.get("download_button")) == 2

    at.number_input(key="n_bins").set_value(5).run()
    assert metric(at.dataframe[0].value, "ECE (shown bins)", CE) == f"{100 * cal.ece(probs, p.labels, n_bins=5):.2f} %"
    assert len(chart_frames(at)[0]) == 2 * 5
    at.segmented_control(key="cal_strategy").set_value("equal-mass").run()
    bins = cal.reliability_bins(probs, p.labels, n_bins=5, strategy="quantile")
    assert metric(at.dataframe[0].value, "ECE (shown bins)", CE) == f"{100 * cal.ece_from_bins(bins):.2f} %"
    at.toggle(key="cal_scaled").set_value(True).run()
    bins = cal.reliability_bins(scaled, p.labels, n_bins=5, strategy="quantile")
    assert metric(at.dataframe[0].value, "ECE (shown bins)", CE) == f"{100 * cal.ece_from_bins(bins):.2f} %"
    at.segmented_control(key="cal_layout").set_value("side by side").run()
    assert not at.exception and len(charts(at)) == 1
    at.switch_page("views/runs.py").run()
    at.switch_page("views/calibration.py").run()
    assert at.number_input(key="n_bins").value == 5 and at.toggle(key="cal_scaled").value  # kept across pages


def test_calibration_groups_seeds(monkeypatch, runs):
    from app_helpers import CSKD1

    at = open_page(app(monkeypatch, runs, [CSKD0, CSKD1]), "calibration")
    groups = at.dataframe[1].value
    assert groups["n"].tolist() == [2] and " ± " in groups["ECE (20 bins) %"].iloc[0]


# ---------------------------------------------------------------------------------- misclassified

def test_misclassified_sets_filters_pages_and_inspection(monkeypatch, runs):
    from cskd.analysis.misclassified import misclassified_by_all, misclassified_by_first_not_second

    at = open_page(app(monkeypatch, runs, [CE, CSKD0]), "misclassified")
    a, b = preds(runs, CE), preds(runs, CSKD0)
    both = misclassified_by_all({"a": a.logits, "b": b.logits}, a.labels)
    assert f"{len(both)} of {len(a.labels)} test samples are misclassified by every picked run" in texts(at.markdown)
    summary = at.dataframe[0].value
    assert summary["samples"].tolist() == [len(both)] * 2 and summary["wrong %"].tolist() == [100.0, 100.0]
    gallery = at.dataframe[1].value
    assert sorted(gallery["index"]) == sorted(np.asarray(a.indices)[both][:48]) or len(both) > 48
    assert gallery["image"].str.startswith("data:image/png;base64,").all()
    assert "Sample #" in texts(at.markdown)  # the first sample is inspected beside the gallery
    assert len(charts(at)) == 1 + (len(both) >= 10)  # its distributions, and Fig. 2 unless too few samples
    if len(both) < 10:
        assert f"Only {len(both)} sample(s) qualify" in texts(at.info)

    third = 2
    at.session_state["mis_gallery"] = {"selection": {"rows": [third], "columns": [], "cells": []}}
    at.run()
    index = int(at.dataframe[1].value["index"].iloc[third])
    assert f"Sample #{index}" in texts(at.markdown)
    shown = texts(at.text)
    assert f"{CE}: predicts" in shown and f"{CSKD0}: predicts" in shown
    dist = chart_frames(at)[0]
    assert set(dist["run"]) == {CE, CSKD0}
    assert (dist.groupby("run")["class"].apply(list).iloc[0] == dist.groupby("run")["class"].apply(list).iloc[1])

    at.segmented_control(key="mis_mode").set_value("one wrong, one right").run()
    only_a = misclassified_by_first_not_second(a.logits, b.logits, a.labels)
    assert f"{len(only_a)} of {len(a.labels)} test samples are misclassified by {CE} but not by {CSKD0}" \
        in texts(at.markdown)

    at.segmented_control(key="mis_mode").set_value("any run wrong").run()
    wrong = np.flatnonzero((a.logits.argmax(1) != a.labels) | (b.logits.argmax(1) != b.labels))
    label = int(a.labels[wrong[0]])
    at.multiselect(key="mis_true").set_value([label]).run()
    kept = wrong[np.asarray(a.labels)[wrong] == label]
    assert f"{len(kept)} of {len(a.labels)}" in texts(at.markdown) and "after the filters" in texts(at.markdown)
    at.selectbox(key="mis_order").set_value("data-set index").run()
    assert at.dataframe[1].value["index"].tolist() == list(np.asarray(a.indices)[kept])[:48]


def test_every_rank_on_the_misclassified_page_is_1_based_and_says_so(monkeypatch, runs):
    """The true class ranked second is "rank 2 of C" in the sample panel, 2 in the table, and the
    rank filter counts from 1 (it once said "rank 1" for it, 0-based, without saying so)."""
    at = open_page(app(monkeypatch, runs, [CE]), "misclassified")
    a = preds(runs, CE)
    logits, labels = np.asarray(a.logits), np.asarray(a.labels)
    n_classes = logits.shape[1]
    gallery = at.dataframe[1].value
    row = int(np.flatnonzero(np.asarray(a.indices) == gallery["index"].iloc[0])[0])
    rank0 = int((logits[row] > logits[row, labels[row]]).sum())  # classes scoring above the true one
    assert rank0 >= 1  # misclassified: never the top-1
    assert int(gallery["rank of true class"].iloc[0]) == rank0 + 1
    assert f"rank {rank0 + 1} of {n_classes}" in texts(at.text)
    assert at.slider(key="mis_rank_1based").value == (1, n_classes)
    at.slider(key="mis_rank_1based").set_value((1, 1)).run()  # top-1 only: no misclassified sample
    assert texts(at.markdown).count(f"0 of {len(labels)}") >= 1
    from cskd.app.selection import rank_text

    assert rank_text(1, 10) == "rank 2 of 10"  # 0-based as stored, 1-based as shown


def test_misclassified_pages_through_the_whole_set(monkeypatch, runs):
    at = open_page(app(monkeypatch, runs, [CE]), "misclassified")
    at.segmented_control(key="mis_mode").set_value("any run wrong").run()
    at.segmented_control(key="mis_page_size").set_value(24).run()
    n = shown_samples(at)
    assert n > 24
    first = at.dataframe[1].value["index"].tolist()
    at.number_input(key="mis_page").set_value(2).run()
    second = at.dataframe[1].value["index"].tolist()
    assert len(first) == 24 and second and not set(first) & set(second)
    assert "samples 25–" in texts(at.caption)


def test_too_few_samples_get_a_note_instead_of_a_histogram(monkeypatch, runs):
    at = open_page(app(monkeypatch, runs, [CE, CSKD0]), "misclassified")
    at.slider(key="mis_conf").set_value((0.99, 1.0)).run()  # almost nothing that confident and wrong in both
    n = shown_samples(at)
    if n < 10:
        assert "too few for a histogram" in texts(at.info)


def test_misclassified_refuses_runs_on_different_samples(monkeypatch, runs):
    at = open_page(app(monkeypatch, runs, [CE, FLAT]), "misclassified")
    assert "predictions on different samples" in texts(at.error)


# -------------------------------------------------------------------------------------- confusion

def test_confusion_pairs_matrix_and_drill_down(monkeypatch, runs):
    from cskd.analysis.confusion import confusion_matrix, most_confused_pairs, per_class_accuracy

    at = open_page(app(monkeypatch, runs, [CE, CSKD0]), "confusion")
    p = preds(runs, CE)
    pred = np.asarray(p.logits).argmax(1)
    m = confusion_matrix(pred, p.labels, n_classes=10)
    pairs = at.dataframe[0].value
    top = most_confused_pairs(m, k=3)
    names = p.class_names
    assert [(r["true"], r["predicted as"], r["samples"]) for _, r in pairs.head(3).iterrows()] == \
        [(names[t], names[q], n) for t, q, n in top]
    assert len(charts(at)) == 1
    per_class = at.dataframe[1].value
    assert per_class[f"{CE} %"].tolist() == pytest.approx(list(100 * per_class_accuracy(pred, p.labels)))

    at.session_state["conf_pairs"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    t, q, n = top[0]
    assert f"{n} sample(s)" in texts(at.markdown)
    samples = at.dataframe[1].value
    expected = np.asarray(p.indices)[(np.asarray(p.labels) == t) & (pred == q)]
    assert sorted(samples["index"]) == sorted(expected)
    dist = chart_frames(at)[-1]
    assert set(dist["run"]) == {CE, CSKD0}


# ------------------------------------------------------------------------------------- embeddings

def test_embeddings_scatter_and_neighbours(monkeypatch, runs):
    from cskd.analysis.retrieval import recall_at_k

    at = open_page(app(monkeypatch, runs, [CE, CSKD0]), "embeddings")
    assert len(charts(at)) == 2
    p = preds(runs, CE)
    assert f"Recall@1 {100 * recall_at_k(p.features, p.labels):.2f}%" in texts(at.caption)
    frame = chart_frames(at)[0]
    assert frame["image"].str.startswith("data:image/webp;base64,").all()  # the hover thumbnails
    at.session_state[f"tsne-chart:{CE}"] = {"selection": {"point": [{"row": 7}]}}
    at.run()
    table = at.dataframe[0].value
    x = np.asarray(p.features, dtype=np.float64)
    d = ((x - x[7]) ** 2).sum(1)
    d[7] = np.inf
    assert table["index"].iloc[0] == np.asarray(p.indices)[np.argmin(d)]
    assert table["squared L2 distance"].iloc[0] == pytest.approx(d.min(), rel=1e-3)
    assert f"sample #{int(np.asarray(p.indices)[7])}" in texts(at.text)

    at.segmented_control(key="emb_color").set_value("coarse group").run()
    assert set(chart_frames(at)[0]["category"]) <= {f"group{g}" for g in range(2)}


@pytest.mark.slow
def test_embeddings_compute_a_missing_tsne(monkeypatch, tmp_path):
    from app_helpers import jobs_held, settle
    from synthetic_runs import write_synthetic_run

    run = write_synthetic_run(tmp_path / "r", n=120, tsne=False, stats=True)
    with jobs_held(monkeypatch):
        at = open_page(app(monkeypatch, tmp_path, ["r"]), "embeddings")
        assert not charts(at) and "computing its t-SNE" in texts(at.caption)
    settle(at)
    assert (run / "tsne-test.npz").is_file() and len(charts(at)) == 1


# -------------------------------------------------------------------------------------- hierarchy

def test_hierarchy_for_coarse_runs_and_a_note_otherwise(monkeypatch, runs):
    from cskd.analysis.hierarchy import hierarchical_accuracy

    at = open_page(app(monkeypatch, runs, [CE, FLAT]), "hierarchy")
    p = preds(runs, CE)
    acc = hierarchical_accuracy(np.asarray(p.logits).argmax(1), p.labels, p.fine_to_coarse)
    assert f"hierarchical accuracy {100 * acc:.2f}%" in texts(at.markdown)
    assert FLAT in texts(at.info) and "no coarse grouping" in texts(at.info)
    assert len(charts(at)) == 2  # the coarse confusion and the per-group error
