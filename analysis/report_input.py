"""What the report (analysis.report.analyze_runs) reads of one run: a typed record, and the check
that several runs can be compared (same data set, split and samples)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

REQUIRED_KEYS = ("logits", "features", "labels", "indices", "class_names", "dataset", "split", "config")


@dataclass(frozen=True, eq=False)
class RunData:
    """One run's predictions on one split, as the report reads them. Arrays are only read (read-only
    memory maps are fine).

    name: the run's name in tables and file names. logits (N, C) raw scores; features (N, D) or
    None (imported predictions may lack them: no Recall@1, no t-SNE); labels (N,) class ids;
    indices (N,) data-set index of each row; class_names (C,); dataset, split: what was predicted;
    config: the run's settings (tables group runs by it). Optional: val_logits / val_labels (the
    validation predictions temperature scaling is fitted on, never the test split), fine_to_coarse
    (C,) coarse group of each class and coarse_names, images (data-set index -> H x W x C image),
    tsne = (coords (M, 2), rows (M,)) a precomputed embedding, metrics = run_metrics' result
    computed earlier (e.g. cskd's stats cache) with metrics_settings = the {n_bins, n_boot,
    ci_level} it was computed with: used as it is when they are the report's.
    """

    name: str
    logits: Any
    features: Any
    labels: Any
    indices: Any
    class_names: Any
    dataset: str
    split: str
    config: dict
    val_logits: Any = None
    val_labels: Any = None
    fine_to_coarse: Any = None
    coarse_names: Any = None
    images: Callable | None = None
    tsne: tuple | None = None
    metrics: dict | None = None
    metrics_settings: dict | None = None

    @classmethod
    def from_mapping(cls, name: str, run) -> RunData:
        """A RunData from a {field: value} mapping (the fields above but name); a ValueError names
        the required keys that are missing and refuses unknown ones."""
        missing = [k for k in REQUIRED_KEYS if k not in run]
        if missing:
            raise ValueError(f"run {name!r} lacks the keys {missing}")
        known = {f.name for f in dataclasses.fields(cls)} - {"name"}
        unknown = sorted(set(run) - known)
        if unknown:
            raise ValueError(f"run {name!r} has unknown keys {unknown}; known: {sorted(known)}")
        return cls(name=name, **run)


def as_runs(runs) -> dict[str, RunData]:
    """{name: RunData} from a non-empty {name: RunData or mapping} dict or a sequence of RunData
    (a RunData under another name in a dict takes the dict's name)."""
    if isinstance(runs, dict):
        items = list(runs.items())
    elif isinstance(runs, (list, tuple)) and all(isinstance(r, RunData) for r in runs):
        items = [(r.name, r) for r in runs]
        if len({n for n, _ in items}) != len(items):
            raise ValueError("two runs share a name; give runs with distinct names")
    else:
        items = []
    if not items:
        raise ValueError("runs must be a non-empty dict of run name -> run data")
    return {n: (dataclasses.replace(r, name=n) if isinstance(r, RunData) and r.name != n else
                r if isinstance(r, RunData) else RunData.from_mapping(n, r)) for n, r in items}


def check_runs(runs: dict[str, RunData]) -> None:
    """Raise ValueError unless all runs were evaluated on the same samples: same dataset, split,
    labels, indices and number of classes, and consistent shapes."""
    for key in ("dataset", "split"):
        values = {name: getattr(r, key) for name, r in runs.items()}
        if len(set(values.values())) > 1:
            shown = ", ".join(f"{n!r}: {v!r}" for n, v in values.items())
            raise ValueError(f"runs differ in {key} ({shown}); analyse one data set and split at a time")
    first_name, first = next(iter(runs.items()))
    for name, r in runs.items():
        for key in ("labels", "indices"):
            if not np.array_equal(np.asarray(getattr(r, key)), np.asarray(getattr(first, key))):
                raise ValueError(f"runs {first_name!r} and {name!r} differ in {key}; evaluate "
                                 "every run on the same samples in the same order")
        n, c = np.shape(r.logits) if np.ndim(r.logits) == 2 else (None, None)
        if n != len(first.labels) or c != np.shape(first.logits)[1]:
            raise ValueError(f"run {name!r}: logits have shape {np.shape(r.logits)}; expected "
                             f"({len(first.labels)}, C) with the same C in every run")
        if len(r.class_names) != c:
            raise ValueError(f"run {name!r}: {len(r.class_names)} class_names for {c} classes")
        if r.features is not None and np.shape(r.features)[:1] != (n,):
            raise ValueError(f"run {name!r}: features have shape {np.shape(r.features)}; expected ({n}, D)")
        if (r.val_logits is None) != (r.val_labels is None):
            raise ValueError(f"run {name!r}: give both val_logits and val_labels, or neither")
