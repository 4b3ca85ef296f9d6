"""The array files of a run folder: predictions and the caches derived from them.

`predictions-<split>.npz` (PREDICTIONS_FORMAT), for N samples of the split, C classes, D feature
dimensions, written by `cskd predict` (or `cskd import`):
  logits          float32 (N, C)  the model's logits (plain cosines for AdaCos under --protocol authors)
  features        float16 (N, D)  pooled penultimate features (absent for imports without them)
  labels          int64   (N,)    ground-truth class in [0, C)
  indices         int64   (N,)    position of each sample in its data set's source list
  images          uint8   (N, H, W, 1|3)  the samples as stored (in-memory sets) or 64-px
                                  thumbnails (file sets of at most 20,000 images); optional
  fine_to_coarse  int64   (C,)    coarse group of each class, when the data set has one
  meta (JSON)     format, kind "predictions", run_id, split, checkpoint ("best", "last" or
                  "imported"), checkpoint_sha256, epoch, dataset, class_names, coarse_names,
                  config (the run's config dict), write_id (new for every file written)

Derived caches record the write_id of the predictions they were computed from (`source`) and are
stale as soon as the predictions file is rewritten:
  tsne-<split>.npz    coords float32 (M, 2), rows int64 (M,) into the predictions; meta max_points
  stats-<split>.npz   the dashboard's per-run metrics and per-sample summaries (see cskd.evaluation.stats_cache)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cskd.errors import UserError
from cskd.runfolder.npz import NpzError, NpzFile

PREDICTIONS_FORMAT = 2
DERIVED_FORMAT = 1


class Predictions:
    """A predictions file opened lazily: arrays are memory-mapped on first use, read-only.

    Opening checks the metadata and the arrays' shapes, dtypes and label range (`fix` ends every
    error: what the user should do). `verify()` also checks every byte against the file's
    checksums and that the logits are finite."""

    def __init__(self, path: Path, *, fix: str):
        self.path, self.fix = Path(path), fix
        try:
            self.npz = NpzFile(self.path)
        except NpzError as e:
            raise self._error(str(e)) from None
        self.meta = self.npz.meta
        if self.meta.get("format") != PREDICTIONS_FORMAT or self.meta.get("kind") != "predictions":
            found = self.meta.get("format", "1 (cskd 0.1)") if self.meta else "1 (cskd 0.1)"
            raise self._error(f"it is in predictions format {found}, not {PREDICTIONS_FORMAT}")
        self._check()

    def _error(self, problem: str) -> UserError:
        return UserError(f"{self.path} is not usable: {problem}; {self.fix}")

    def _check(self) -> None:
        m, z = self.meta, self.npz
        for key in ("logits", "labels", "indices"):
            if key not in z:
                raise self._error(f"it lacks the {key} array")
        names = m.get("class_names")
        if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
            raise self._error("its class names are missing")
        for key in ("split", "dataset", "checkpoint"):
            if not isinstance(m.get(key), str):
                raise self._error(f"its metadata lacks {key}")
        n, c = (z.shape("logits") + (None, None))[:2]
        problem = (
            f"its logits have shape {z.shape('logits')}" if len(z.shape("logits")) != 2 or z.dtype("logits").kind != "f"
            else "it holds no samples" if n == 0
            else f"{c} logit columns but {len(names)} class names" if c != len(names)
            else "its labels are not integers of shape (N,)" if not _int_vector(z, "labels", n)
            else "its indices are not integers of shape (N,)" if not _int_vector(z, "indices", n)
            else f"its features have shape {z.shape('features')}" if "features" in z and (
                len(z.shape("features")) != 2 or z.shape("features")[0] != n or z.shape("features")[1] == 0)
            else f"it has {z.shape('images')[0]} images for {n} samples" if "images" in z and (
                z.shape("images")[:1] != (n,) or z.dtype("images") != np.uint8)
            else f"its coarse grouping has shape {z.shape('fine_to_coarse')}" if "fine_to_coarse" in z and (
                z.shape("fine_to_coarse") != (c,))
            else None)
        if problem is None:
            labels = self.labels
            if labels.min() < 0 or labels.max() >= c:
                problem = f"its labels fall outside 0..{c - 1}"
        if problem:
            raise self._error(problem)

    def verify(self) -> None:
        """Every byte against the zip checksums, and finite logits (a diverged model)."""
        try:
            self.npz.verify()
        except NpzError as e:
            raise self._error(str(e)) from None
        logits = self.logits
        for start in range(0, len(logits), 8192):
            if not np.isfinite(logits[start:start + 8192]).all():
                raise self._error("its logits are not all finite (did the model diverge?)")

    # -- the arrays (read-only memory maps) and metadata
    @property
    def logits(self) -> np.ndarray:
        return self.npz.array("logits")

    @property
    def labels(self) -> np.ndarray:
        return self.npz.array("labels")

    @property
    def indices(self) -> np.ndarray:
        return self.npz.array("indices")

    @property
    def features(self) -> np.ndarray | None:
        return self.npz.array("features") if "features" in self.npz else None

    @property
    def images(self) -> np.ndarray | None:
        return self.npz.array("images") if "images" in self.npz else None

    @property
    def fine_to_coarse(self) -> np.ndarray | None:
        return self.npz.array("fine_to_coarse") if "fine_to_coarse" in self.npz else None

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def coarse_names(self) -> list[str] | None:
        names = self.meta.get("coarse_names")
        return list(names) if names is not None else None

    @property
    def num_samples(self) -> int:
        return self.npz.shape("logits")[0]

    @property
    def num_classes(self) -> int:
        return self.npz.shape("logits")[1]

    @property
    def split(self) -> str:
        return self.meta["split"]

    @property
    def dataset(self) -> str:
        return self.meta["dataset"]

    @property
    def write_id(self) -> str | None:
        return self.meta.get("write_id")


def _int_vector(z: NpzFile, name: str, n: int) -> bool:
    return z.shape(name) == (n,) and z.dtype(name).kind in "iu"


def open_derived(path: Path, *, kind: str, source_write_id: str | None) -> NpzFile | None:
    """A derived cache (`kind` "tsne" or "stats") computed from the predictions whose write_id is
    `source_write_id`: None when it is absent or stale (made from other predictions, another
    format); a UserError naming the file when it cannot be read at all."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        z = NpzFile(path)
    except NpzError as e:
        raise UserError(f"{path} is damaged ({e}); it is a cache: recompute it") from None
    m = z.meta
    if m.get("format") != DERIVED_FORMAT or m.get("kind") != kind or source_write_id is None \
            or m.get("source") != source_write_id:
        return None
    return z


def tsne_points(z: NpzFile, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(coords float32 (M, 2), rows int64 (M,)) of an opened t-SNE cache, checked against the
    predictions' sample count."""
    try:
        coords = np.asarray(z.array("coords"), dtype=np.float32)
        rows = np.asarray(z.array("rows"), dtype=np.int64)
    except KeyError as e:
        raise UserError(f"{z.path} lacks {e}; it is a cache: recompute it") from None
    if coords.ndim != 2 or coords.shape[1] != 2 or rows.shape != (len(coords),) or \
            (rows.size and (rows.min() < 0 or rows.max() >= num_samples)):
        raise UserError(f"{z.path} does not match its predictions; it is a cache: recompute it")
    return coords, rows
