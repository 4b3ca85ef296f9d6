"""The caches derived from a run's predictions — tsne-<split>.npz and stats-<split>.npz (whose
content cskd.evaluation.stats_cache defines) — their writers and readers, and the one rule
deciding whether a cache is fresh: it records the write_id of the predictions it was computed from
(`source`) and is stale as soon as the predictions file is rewritten. `folder` is a
cskd.runfolder.folder.RunFolder, `predictions` a cskd.runfolder.predictions.Predictions (neither
module imported: this one sits below them in the import graph).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from cskd.errors import UserError
from cskd.runfolder.formats import DERIVED_FORMAT, format_problem
from cskd.runfolder.layout import tsne_name
from cskd.runfolder.npz import NpzError, NpzFile, write_npz

RECOMPUTE = "it is a cache: recompute it"


def read_derived(folder, name: str, *, kind: str, predictions) -> NpzFile | None:
    """The derived cache `name` (`kind` "tsne" or "stats") computed from `predictions`: None when
    it is absent or stale (made from other predictions); a UserError naming the file when it cannot
    be read at all or is of another format."""
    path = folder.file(name)
    if not path.is_file():
        return None
    try:
        z = NpzFile(path)
    except NpzError as e:
        raise UserError(f"{path} is damaged ({e}); {RECOMPUTE}") from None
    m = z.meta
    problem = format_problem(path, m.get("format"), DERIVED_FORMAT, fix=RECOMPUTE, newer_fix=RECOMPUTE)
    if problem:
        raise UserError(problem)
    if m.get("kind") != kind or predictions.write_id is None or m.get("source") != predictions.write_id:
        return None
    return z


def read_tsne(folder, split: str, predictions, *, max_points: int | None = None):
    """(coords float32 (M, 2), rows int64 (M,) into the predictions) of the t-SNE cache made from
    `predictions` (with `max_points`, when given), or None when it must be computed; a UserError
    naming a damaged cache."""
    z = read_derived(folder, tsne_name(split), kind="tsne", predictions=predictions)
    if z is None or (max_points is not None and z.meta.get("max_points") != max_points):
        return None
    try:
        coords = np.asarray(z.array("coords"), dtype=np.float32)
        rows = np.asarray(z.array("rows"), dtype=np.int64)
    except KeyError as e:
        raise UserError(f"{z.path} lacks {e}; {RECOMPUTE}") from None
    if coords.ndim != 2 or coords.shape[1] != 2 or rows.shape != (len(coords),) or \
            (rows.size and (rows.min() < 0 or rows.max() >= predictions.num_samples)):
        raise UserError(f"{z.path} does not match its predictions; {RECOMPUTE}")
    return coords, rows


def write_derived(folder, name: str, arrays: dict, *, kind: str, predictions,
                  **meta) -> None:
    """Write the derived cache `name` from `arrays` and its own `meta`, marked as made from `predictions`."""
    meta = _derived_meta(kind, predictions, meta)
    folder.write(name, lambda f: write_npz(f, arrays, meta))


def unsaved_derived(name: str, arrays: dict, *, kind: str, predictions, **meta) -> NpzFile:
    """What write_derived would write, for a folder cskd may not write to: written to a temporary
    file outside it, opened (memory-mapped) and deleted — the mapping keeps the bytes."""
    with tempfile.TemporaryDirectory(prefix="cskd-") as tmp:
        path = Path(tmp) / name
        with open(path, "wb") as f:
            write_npz(f, arrays, _derived_meta(kind, predictions, meta))
        return NpzFile(path)


def _derived_meta(kind: str, predictions, meta: dict) -> dict:
    """A derived cache's meta: its own fields and what it was made from."""
    return {**meta, "format": DERIVED_FORMAT, "kind": kind, "source": predictions.write_id}
