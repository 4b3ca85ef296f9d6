"""Cached reading of run folders, through cskd.runfolder and cskd.evaluation.stats_cache only.

Every reader takes the run's `RunFiles` (app.paths): it first refuses a file with a problem
(symlink loop, outside the runs folder, ...) with that problem as a UserError, then calls a cached
function keyed by `RunFiles.key`, the stamps of the run's files, so a rewritten file is read
again and anything else comes from the cache.

Two caches, on purpose:
- `st.cache_resource` holds opened Predictions and Stats: small objects whose arrays are
  read-only memory maps (cskd.runfolder.npz), so the server holds only the pages of the arrays
  a view touches, shared by every session, never a copied array;
- `st.cache_data` holds small plain values (configs, summaries, curves, freshness).
Which predictions are fresh is decided by cskd.runfolder.predictions_status alone.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from cskd.analysis.embedding import TSNE_MAX_POINTS  # points of a t-SNE cache (it records them)
from cskd.app.paths import RunFiles
from cskd.errors import UserError, short_reason
from cskd.runfolder import (
    CONFIG,
    METRICS,
    SUMMARY,
    RunFolder,
    predictions_name,
    predictions_status,
    read_config_dict,
    read_metrics,
    read_predictions,
    read_record,
    read_summary,
    read_tsne,
    stats_name,
    tsne_name,
)
from cskd.runfolder.layout import DEFAULT_SPLIT


def _guard(files: RunFiles, *names: str) -> None:
    for name in names:
        files.check(name)


def _unexpected(files: RunFiles, what: str, e: Exception) -> UserError:
    """An error no reader anticipated (an OSError mid-read, a malformed value) as a UserError
    naming the run's file, so the page shows a card and goes on."""
    return UserError(f"{files.path / what} cannot be read ({type(e).__name__}: {short_reason(e)})")


@st.cache_data(show_spinner=False, max_entries=4096)
def _record(path: str, key) -> dict:
    folder = RunFolder(path)
    record = read_record(folder)
    cfg = read_config_dict(folder)
    return {"kind": record["kind"], "config": cfg, "run_id": record["meta"].get("run_id")}


def record(files: RunFiles) -> dict:
    """{"kind": "trained" | "imported", "config": the run's settings as a dict, "run_id"}."""
    _guard(files, CONFIG)
    try:
        return _record(str(files.path), files.key)
    except UserError:
        raise
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as e:
        raise _unexpected(files, CONFIG, e) from None


@st.cache_data(show_spinner=False, max_entries=4096)
def _summary(path: str, key) -> dict | None:
    return read_summary(RunFolder(path))


def summary(files: RunFiles) -> dict | None:
    """summary.json with checked types (None when absent)."""
    _guard(files, SUMMARY)
    try:
        return _summary(str(files.path), files.key)
    except UserError:
        raise
    except (OSError, ValueError, TypeError) as e:
        raise _unexpected(files, SUMMARY, e) from None


@st.cache_data(show_spinner=False, max_entries=1024)
def _curves(path: str, key) -> list:
    return read_metrics(RunFolder(path))


def curves(files: RunFiles) -> list[dict]:
    """The per-epoch records of metrics.jsonl ([] when absent)."""
    _guard(files, METRICS)
    try:
        return _curves(str(files.path), files.key)
    except (OSError, ValueError) as e:
        raise _unexpected(files, METRICS, e) from None


@st.cache_data(show_spinner=False, max_entries=4096)
def _status(path: str, split: str, key) -> tuple[str, str]:
    return predictions_status(RunFolder(path), split)


def status(files: RunFiles, split: str = DEFAULT_SPLIT) -> tuple[str, str]:
    """cskd.runfolder.predictions_status: (missing|foreign|damaged|stale|fresh, reason). A file the
    dashboard must not read counts as damaged, with its problem as the reason."""
    for name in (predictions_name(split), CONFIG, "best.pt", ".cskd/manifest.json"):
        if name in files.problems:
            return "damaged", files.problems[name]
    try:
        return _status(str(files.path), split, files.key)
    except UserError as e:
        return "damaged", str(e)
    except (OSError, ValueError, TypeError, KeyError) as e:
        return "damaged", str(_unexpected(files, predictions_name(split), e))


@st.cache_resource(show_spinner=False, max_entries=64)
def _predictions(path: str, split: str, key):
    return read_predictions(RunFolder(path), split)


def predictions(files: RunFiles, split: str = DEFAULT_SPLIT):
    """The run's Predictions of `split` (lazy, read-only memory maps); call when status() is fresh."""
    _guard(files, predictions_name(split))
    try:
        return _predictions(str(files.path), split, files.key)
    except UserError:
        raise
    except (OSError, ValueError) as e:
        raise _unexpected(files, predictions_name(split), e) from None


@st.cache_resource(show_spinner=False, max_entries=64)
def _stats(path: str, split: str, key):
    from cskd.evaluation.stats_cache import read_stats

    return read_stats(path, split)


def stats(files: RunFiles, split: str = DEFAULT_SPLIT):
    """cskd.evaluation.stats_cache.read_stats: the run's fresh stats cache, or None (to be computed)."""
    _guard(files, stats_name(split), predictions_name(split), predictions_name("val"))
    try:
        return _stats(str(files.path), split, files.key)
    except UserError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise _unexpected(files, stats_name(split), e) from None


@st.cache_resource(show_spinner=False, max_entries=64)
def _tsne(path: str, key):
    folder = RunFolder(path)
    return read_tsne(folder, "test", read_predictions(folder, "test"), max_points=TSNE_MAX_POINTS)


def tsne(files: RunFiles):
    """(coords, rows) of the run's t-SNE cache made from its current test predictions, or None."""
    _guard(files, tsne_name("test"), predictions_name("test"))
    try:
        return _tsne(str(files.path), files.key)
    except UserError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise _unexpected(files, tsne_name("test"), e) from None


def same_samples(runs) -> None:
    """UserError unless every run's test predictions cover the same samples in the same order."""
    first = runs[0]
    for r in runs[1:]:
        a, b = first.preds, r.preds
        if a.dataset != b.dataset or a.num_samples != b.num_samples or a.num_classes != b.num_classes \
                or not _same_rows(first.files.key, r.files.key, a, b):
            raise UserError(f"{r.name} and {first.name} hold predictions on different samples "
                            f"({b.dataset}, {b.num_samples} samples, {b.num_classes} classes vs {a.dataset}, "
                            f"{a.num_samples}, {a.num_classes}); pick runs of one data set and split")


@st.cache_data(show_spinner=False, max_entries=256)
def _same_rows(key_a, key_b, _a, _b) -> bool:
    """Whether predictions `_a` and `_b` (not hashed: the run keys stand for them) have the same
    labels and data-set indices."""
    return bool(np.array_equal(_a.labels, _b.labels) and np.array_equal(_a.indices, _b.indices))
