"""Which samples a page shows, from the runs' stats caches (per-sample predicted class, confidence,
probability and rank of the true class, entropy): the sets of the Misclassified page, their
filters and orders, per-run summaries of a set, and one sample's predictive distributions.
Nothing here takes a softmax over a whole logits array."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from cskd.analysis.displays import LogProbDisplay, PredictiveDistributionDisplay

SETS = {"every run wrong": "misclassified by every picked run",
        "one wrong, one right": "misclassified by one run but not by another",
        "any run wrong": "misclassified by at least one picked run",
        "runs disagree": "on which the picked runs predict different classes"}
ORDERS = ("confidence, highest first", "confidence, lowest first", "probability of the true class, lowest first",
          "rank of the true class, worst first", "entropy, highest first", "data-set index")


def base_rows(ready, mode: str, a: int = 0, b: int = 1) -> np.ndarray:
    """Sorted int64 rows of the set `mode` (a key of SETS); `a`, `b`: the runs of "one wrong, one
    right" (wrong in ready[a], right in ready[b])."""
    wrong = [~np.asarray(r.stats.correct) for r in ready]
    if mode == "every run wrong":
        mask = np.logical_and.reduce(wrong)
    elif mode == "one wrong, one right":
        mask = wrong[a] & ~wrong[b]
    elif mode == "any run wrong":
        mask = np.logical_or.reduce(wrong)
    elif mode == "runs disagree":
        preds = np.stack([np.asarray(r.stats.pred) for r in ready])
        mask = (preds != preds[:1]).any(axis=0)
    else:
        raise ValueError(f"unknown set {mode!r}")
    return np.flatnonzero(mask).astype(np.int64)


def filtered(ready, rows: np.ndarray, labels: np.ndarray, *, ref: int, true_classes=(), predicted=(),
             confidence=(0.0, 1.0), ranks=None, disagree: bool = False, order: str = ORDERS[0]) -> np.ndarray:
    """`rows` kept by the filters (on run ready[ref]: its predicted class, confidence range and
    rank-of-the-true-class range `ranks`, 0-based like `true_rank`; the true class; runs
    disagreeing) and sorted by `order`
    (ties: data-set order)."""
    s = ready[ref].stats
    keep = np.ones(rows.size, bool)
    if true_classes:
        keep &= np.isin(labels[rows], list(true_classes))
    if predicted:
        keep &= np.isin(np.asarray(s.pred)[rows], list(predicted))
    conf = np.asarray(s.confidence)[rows]
    keep &= (conf >= confidence[0]) & (conf <= confidence[1])
    rank = np.asarray(s.true_rank)[rows]
    if ranks is not None:
        keep &= (rank >= ranks[0]) & (rank <= ranks[1])
    if disagree and len(ready) > 1:
        preds = np.stack([np.asarray(r.stats.pred)[rows] for r in ready])
        keep &= (preds != preds[:1]).any(axis=0)
    rows, conf, rank = rows[keep], conf[keep], rank[keep]
    key = {ORDERS[0]: -conf, ORDERS[1]: conf, ORDERS[2]: np.asarray(s.true_logprob)[rows], ORDERS[3]: -rank,
           ORDERS[4]: -np.asarray(s.entropy)[rows].astype(np.float64), ORDERS[5]: rows}[order]
    return rows[np.argsort(key, kind="stable")]


def rank_text(rank: int, n_classes: int) -> str:
    """A 0-based rank (as the stats cache stores `true_rank`: 0 = the top-1 class) as the page shows
    every rank: 1-based, out of the classes, e.g. "rank 2 of 10" for the second most probable class."""
    return f"rank {int(rank) + 1} of {n_classes}"


def summary(ready, rows: np.ndarray) -> pd.DataFrame:
    """Per run, on `rows`: samples, share it gets wrong, mean confidence, mean entropy, mean
    probability and median rank of the true class (1-based: 1 = the top-1 class, as every rank the
    pages show)."""
    out = []
    for r in ready:
        s = r.stats
        take = (lambda name, s=s: np.asarray(s.array(name))[rows]) if rows.size else (lambda name: np.empty(0))
        out.append({"run": r.name, "samples": int(rows.size),
                    "wrong %": 100 * float(np.mean(~take("correct").astype(bool))) if rows.size else None,
                    "mean confidence": _mean(take("confidence")), "mean entropy (nats)": _mean(take("entropy")),
                    "mean p(true class)": _mean(np.exp(take("true_logprob"))),
                    "median rank of the true class (1 = top-1)": float(np.median(take("true_rank"))) + 1
                    if rows.size else None})
    return pd.DataFrame(out)


def _mean(a):
    return float(np.mean(a)) if a.size else None


def agreement(ready, rows: np.ndarray) -> float | None:
    """Share of `rows` on which every run predicts the same class (None for one run or no row)."""
    if len(ready) < 2 or rows.size == 0:
        return None
    preds = np.stack([np.asarray(r.stats.pred)[rows] for r in ready])
    return float(np.mean((preds == preds[:1]).all(axis=0)))


@st.cache_data(show_spinner=False, max_entries=128)
def logprob_display(keys: tuple, _ready, rows_key: tuple, _rows, description: str) -> LogProbDisplay:
    """Paper Fig. 2 on `_rows` from each run's cached log-probabilities of the predicted and true class."""
    lp = {r.name: {"predicted": np.asarray(r.stats.pred_logprob)[_rows],
                   "true": np.asarray(r.stats.true_logprob)[_rows]} for r in _ready}
    return LogProbDisplay.from_log_probs(lp, _rows, description=description)


def distribution(ready, row: int, *, shared_axis: bool, index: int | None = None, k: int = 5):
    """PredictiveDistributionDisplay of one sample: only that row of each run's logits is read."""
    first = ready[0].preds
    labels = np.asarray(first.labels[row:row + 1])
    logits = {r.name: np.asarray(r.preds.logits[row:row + 1]) for r in ready}
    return PredictiveDistributionDisplay.from_logits(logits, labels, 0, k=k, class_names=first.class_names,
                                                     shared_axis=shared_axis, index=index)


def distribution_frame(display, ctx) -> pd.DataFrame:
    """The display's frame (its colours: the runs' dashboard colours), ordered as the picks."""
    frame = display.frame()
    frame["order"] = frame["run"].map(lambda n: ctx.picked.index(n) if n in ctx.picked else 99)
    return frame
