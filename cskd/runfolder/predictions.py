"""predictions-<split>.npz: a run's predictions of one split (written by `cskd predict` or
`cskd import`), their writer, their checked lazy reader `Predictions`, and the one rule deciding
whether they are fresh (`predictions_status`).

For N samples and C classes a file holds at least logits (N, C), labels (N,) in [0, C) and
indices (N,) (each sample's position in its data set's source list); meta's write_id is new for
every file written, and derived caches record it. `folder` is a cskd.runfolder.folder.RunFolder.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import numpy as np

from cskd.errors import UserError
from cskd.runfolder.config_file import REIMPORT, is_imported, read_run_id
from cskd.runfolder.formats import PREDICTIONS_FORMAT, format_problem
from cskd.runfolder.layout import predictions_name
from cskd.runfolder.npz import NpzError, NpzFile, write_npz


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
        problem = format_problem(self.path, self.meta.get("format"), PREDICTIONS_FORMAT, fix=fix)
        if problem:
            raise UserError(problem)
        if self.meta.get("kind") != "predictions":
            raise self._error(f"it holds {self.meta.get('kind')!r}, not predictions")
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


def predictions_fix(folder, split: str) -> str:
    """What the user does about unusable predictions of `split`: import or predict them again."""
    with contextlib.suppress(UserError):
        if is_imported(folder):
            return REIMPORT
    return f"run `cskd predict {folder.path} --split {split} --force`"


def read_predictions(folder, split: str, *, verify: bool = False) -> Predictions:
    """The run's predictions of `split`, checked to be this run's and of that split; `verify`
    also checks every byte and finite logits."""
    path = folder.file(predictions_name(split))
    if not path.is_file():
        raise UserError(f"{path} is missing; run `cskd predict {folder.path} --split {split}` to create it")
    p = Predictions(path, fix=predictions_fix(folder, split))
    if p.split != split:
        raise UserError(f"{path} holds predictions of the {p.split} split, not of {split} (renamed or copied?); "
                        f"{p.fix}")
    if p.meta.get("run_id") != read_run_id(folder):
        raise UserError(f"{path} was made by another run (copied from another folder?); {p.fix}")
    if verify:
        p.verify()
    return p


def predictions_status(folder, split: str, checkpoint: str = "best") -> tuple[str, str]:
    """(state, reason) of predictions-<split>.npz, the one freshness rule:
      missing  no file
      foreign  a file cskd did not write here (never replaced by cskd)
      damaged  unreadable, of another format, or not of this run or split
      stale    made from another checkpoint than the current `checkpoint`.pt
      fresh    made from the current `checkpoint`.pt (an import: as imported)
    Byte-level damage is found by `read_predictions(folder, split, verify=True)`, not here."""
    name = predictions_name(split)
    if not folder.file(name).is_file():
        return "missing", f"{name} does not exist"
    if not folder.owns(name):
        return "foreign", f"{name} was not written by cskd in this folder"
    try:
        p = read_predictions(folder, split)
    except UserError as e:
        return "damaged", str(e)
    if p.meta["checkpoint"] == "imported":
        return "fresh", "imported"
    if p.meta["checkpoint"] != checkpoint:
        return "stale", f"made from {p.meta['checkpoint']}.pt, not {checkpoint}.pt"
    digest = folder.recorded_sha256(f"{checkpoint}.pt")
    if digest is None or p.meta.get("checkpoint_sha256") != digest:
        return "stale", f"made from an earlier {checkpoint}.pt"
    return "fresh", f"made from the current {checkpoint}.pt"


def write_predictions(folder, split: str, arrays: dict, meta: dict) -> None:
    """Write predictions-<split>.npz: `arrays` and `meta` (checkpoint, checkpoint_sha256, epoch,
    dataset, class names...) with the format, split, run id and a new write_id added."""
    meta = {**meta, "format": PREDICTIONS_FORMAT, "kind": "predictions", "split": split,
            "run_id": read_run_id(folder), "write_id": uuid.uuid4().hex}
    folder.write(predictions_name(split), lambda f: write_npz(f, arrays, meta))
