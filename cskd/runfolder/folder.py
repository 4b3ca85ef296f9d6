"""RunFolder: names, writers and validated readers of every file of a run folder (see the package
docstring for the layout), and the rules deciding whether a file is fresh and whether it is cskd's.

Reading needs no lock: every file is replaced atomically, so a reader sees a whole old or a whole
new version. Writing happens only inside `with folder.writing():`, which holds the folder's lock,
removes temporary files a killed writer left, and refuses to replace a file cskd did not write.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from cskd.config import CONFIG_FORMAT, TrainConfig, validate
from cskd.errors import UserError, short_reason
from cskd.runfolder.arrays import DERIVED_FORMAT, PREDICTIONS_FORMAT, Predictions, open_derived, tsne_points
from cskd.runfolder.checkpoints import BEST_FIELDS, checkpoint_bytes, read_checkpoint
from cskd.runfolder.layout import (
    BEST,
    CONFIG,
    KINDS,
    LAST,
    MARKERS,
    METRICS,
    SUMMARY,
    SUMMARY_FORMAT,
    is_cskd_name,
    predictions_name,
    tsne_name,
)
from cskd.runfolder.legacy import looks_like_cskd
from cskd.runfolder.npz import NpzFile, write_npz
from cskd.runfolder.store import MANIFEST_NAME, META_DIR, FolderLock, Manifest, record_of, remove_stale_temps, sha256_of


class RunFolder:
    """One run folder. Cheap to create; every method reads the disk afresh."""

    def __init__(self, path):
        self.path = Path(path)
        self._manifest: Manifest | None = None  # set while writing
        self._created = False  # this object's writing() made the folder

    def __str__(self) -> str:
        return str(self.path)

    def file(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------------ ownership
    def cskd_names(self) -> list[str]:
        """cskd's file names present in the folder."""
        try:
            return sorted(e.name for e in os.scandir(self.path) if is_cskd_name(e.name))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def manifest(self) -> Manifest:
        return self._manifest if self._manifest is not None else Manifest(self.path)

    def owns(self, name: str, manifest: Manifest | None = None) -> bool:
        """Whether `name` is absent or a file cskd wrote here (see cskd.runfolder.store.Manifest).
        A folder written by cskd 0.1 has no manifest: its files are recognised by their content,
        and only in a folder that holds such a run (legacy_files)."""
        m = manifest or self.manifest()
        if not os.path.lexists(self.path / name):
            return True
        if m.exists and m.readable:
            return m.matching(name) is not None
        return name in self.legacy_files()

    def legacy_files(self) -> list[str]:
        """The files of a folder without a (readable) manifest that cskd 0.1 (or a cskd that lost
        its manifest) wrote, recognised by their content; none unless a config.json or checkpoint
        is among them (a lone metrics.jsonl of the user's is not a run)."""
        found = [n for n in self.cskd_names() if looks_like_cskd(self.path, n)]
        return found if {CONFIG, LAST, BEST} & set(found) else []

    def foreign_files(self) -> list[str]:
        m = self.manifest()
        return [n for n in self.cskd_names() if not self.owns(n, m)]

    def holds_run(self) -> bool:
        m = self.manifest()
        return self.path.is_dir() and any((self.path / n).exists() and self.owns(n, m) for n in MARKERS)

    # ------------------------------------------------------------------ config.json
    def read_record(self) -> dict:
        """config.json as {"format", "kind", "config" (dict), "meta" (dict)}; format 1 (cskd 0.1)
        records are returned with format 1 and kind "trained"."""
        path = self.path / CONFIG
        if not path.is_file():
            raise UserError(f"{self.path} is not a cskd run: {path} is missing")
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError) as e:  # ValueError: bad JSON, or bytes that are not UTF-8
            raise UserError(f"{path} is not a valid cskd config ({short_reason(e)}); "
                            f"the run folder is damaged") from None
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            raise UserError(f"{path} is not a cskd config (no config object); the run folder is damaged "
                            f"or the file is not cskd's")
        version = data.get("format", 1)
        kind = data.get("kind", "trained")
        if not isinstance(version, int) or isinstance(version, bool) or kind not in KINDS:
            raise UserError(f"{path} has an unknown format ({version!r}, {kind!r}); the run folder is damaged")
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        return {"format": version, "kind": kind, "config": data["config"], "meta": meta}

    def config(self) -> TrainConfig:
        """The run's TrainConfig, as its config.json's format defines it (see TrainConfig.from_record)."""
        record = self.read_record()
        if record["kind"] != "trained":
            raise UserError(f"{self.path} holds imported predictions, not a trained run: it has no model to "
                            f"evaluate or train")
        return config_from_record(record["config"], record["format"], self.path / CONFIG,
                                  fix="the run folder is damaged")

    def config_dict(self) -> dict:
        """The run's settings as a plain dict (for tables): a trained run's TrainConfig, or the
        dataset/model/method an import named."""
        record = self.read_record()
        if record["kind"] == "trained":
            return self.config().to_dict()
        cfg = record["config"]
        if not all(isinstance(cfg.get(k), str) for k in ("dataset", "model", "method")):
            raise UserError(f"{self.path / CONFIG} of an imported run lacks dataset, model or method")
        return dict(cfg)

    def run_id(self) -> str | None:
        return self.read_record()["meta"].get("run_id")

    def is_imported(self) -> bool:
        return self.read_record()["kind"] == "imported"

    # ------------------------------------------------------------------ summary.json, metrics.jsonl
    def summary(self) -> dict | None:
        """summary.json with checked types, or None when the run has none. Format 1's
        best_val_acc/best_test_acc become best_acc and selected_on."""
        path = self.path / SUMMARY
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError) as e:
            raise UserError(f"{path} is not valid JSON ({short_reason(e)}); the run folder is damaged") from None
        if not isinstance(data, dict):
            raise UserError(f"{path} does not hold a JSON object; the run folder is damaged")
        data = dict(data)
        for split in ("val", "test"):
            if f"best_{split}_acc" in data and "best_acc" not in data:
                data["best_acc"], data["selected_on"] = data.pop(f"best_{split}_acc"), split
        for key in ("best_acc", "test_acc", "test_loss", "train_seconds"):
            v = data.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise UserError(f"{path}: {key} is {v!r}, not a number; the run folder is damaged")
        for key in ("best_epoch", "test_n"):
            v = data.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise UserError(f"{path}: {key} is {v!r}, not an integer; the run folder is damaged")
        if data.get("selected_on") not in (None, "val", "test"):
            raise UserError(f"{path}: selected_on is {data['selected_on']!r}; the run folder is damaged")
        return data

    def finished_summary(self) -> dict | None:
        """summary.json of a finished run of cskd's held here, or None (no run, or not finished)."""
        summary = self.summary() if self.holds_run() else None
        return summary if summary and summary.get("finished") else None

    def metrics(self) -> list[dict]:
        """The per-epoch records of metrics.jsonl: JSON objects with an integer "epoch" (1-based).
        Other lines (damage, a torn line from cskd 0.1's appends) are skipped."""
        path = self.path / METRICS
        if not path.is_file():
            return []
        records = []
        for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("epoch"), int):
                records.append(record)
        return records

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_digest(self, kind: str) -> str | None:
        """SHA-256 of `kind`.pt as written (from the manifest), or None when unknown."""
        rec = self.manifest().matching(f"{kind}.pt")
        return rec.sha256 if rec is not None else None

    def checkpoint(self, kind: str = "best", *, fields: dict = BEST_FIELDS, map_location="cpu",
                   fix: str = "start the run again with --overwrite") -> dict:
        """`kind`.pt, checked: readable with weights_only, of this run (run_id), and with the
        content the manifest recorded for it (a flipped byte is found)."""
        path = self.path / f"{kind}.pt"
        state = read_checkpoint(path, fields=fields, map_location=map_location, fix=fix)
        try:
            run_id = self.run_id() if (self.path / CONFIG).is_file() else None
        except UserError:  # a damaged config.json: last.pt may be what repairs it
            run_id = None
        if state.get("run_id") and run_id and state["run_id"] != run_id:
            raise UserError(f"{path} belongs to another run than {self.path / CONFIG} (another run id); {fix}")
        digest = self.checkpoint_digest(kind)
        if digest is not None and sha256_of(path) != digest:
            raise UserError(f"{path} does not match the checksum recorded when it was written (damaged); {fix}")
        return state

    # ------------------------------------------------------------------ predictions and caches
    def predictions_fix(self, split: str) -> str:
        with contextlib.suppress(UserError):
            if self.is_imported():
                return "import it again with `cskd import`"
        return f"run `cskd predict {self.path} --split {split} --force`"

    def predictions(self, split: str, *, verify: bool = False) -> Predictions:
        """The run's predictions of `split`, checked to be this run's and of that split; `verify`
        also checks every byte and finite logits."""
        path = self.path / predictions_name(split)
        if not path.is_file():
            raise UserError(f"{path} is missing; run `cskd predict {self.path} --split {split}` to create it")
        p = Predictions(path, fix=self.predictions_fix(split))
        if p.split != split:
            raise UserError(f"{path} holds predictions of the {p.split} split, not of {split} (renamed or copied?); "
                            f"{p.fix}")
        # A run of cskd 0.1 has no id, nor have the predictions made for it since (the checkpoint's
        # SHA-256 still tells whose they are: predictions_status).
        if p.meta.get("run_id") != self.run_id():
            raise UserError(f"{path} was made by another run (copied from another folder?); {p.fix}")
        if verify:
            p.verify()
        return p

    def predictions_status(self, split: str, checkpoint: str = "best") -> tuple[str, str]:
        """(state, reason) of predictions-<split>.npz, the one freshness rule:
          missing  no file
          foreign  a file cskd did not write here (never replaced by cskd)
          damaged  unreadable, or not of this run or split
          stale    made from another checkpoint than the current `checkpoint`.pt
          fresh    made from the current `checkpoint`.pt (an import: as imported)
        Byte-level damage is found by `predictions(split, verify=True)`, not here."""
        name = predictions_name(split)
        if not (self.path / name).is_file():
            return "missing", f"{name} does not exist"
        if not self.owns(name):
            return "foreign", f"{name} was not written by cskd in this folder"
        try:
            p = self.predictions(split)
        except UserError as e:
            return "damaged", str(e)
        if p.meta["checkpoint"] == "imported":
            return "fresh", "imported"
        if p.meta["checkpoint"] != checkpoint:
            return "stale", f"made from {p.meta['checkpoint']}.pt, not {checkpoint}.pt"
        digest = self.checkpoint_digest(checkpoint)
        if digest is None or p.meta.get("checkpoint_sha256") != digest:
            return "stale", f"made from an earlier {checkpoint}.pt"
        return "fresh", f"made from the current {checkpoint}.pt"

    def tsne(self, split: str, predictions: Predictions, *, max_points: int | None = None):
        """(coords, rows) of the t-SNE cache made from `predictions` (with `max_points`, when given),
        or None when it must be computed; a UserError naming a damaged cache."""
        z = open_derived(self.path / tsne_name(split), kind="tsne", source_write_id=predictions.write_id)
        if z is None or (max_points is not None and z.meta.get("max_points") != max_points):
            return None
        return tsne_points(z, predictions.num_samples)

    def derived(self, name: str, *, kind: str, predictions: Predictions):
        """An opened derived cache (cskd.runfolder.npz.NpzFile) made from `predictions`, or None."""
        return open_derived(self.path / name, kind=kind, source_write_id=predictions.write_id)

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def writing(self, command: str | None = None) -> Iterator[RunFolder]:
        """Hold the folder's writer lock (creating the folder), clean up after killed writers and
        adopt the files of a cskd 0.1 folder into a manifest; every write happens in here."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path} exists and is not a folder")
        outermost = self._manifest is None
        if outermost:
            self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        had_meta = (self.path / META_DIR).exists()
        try:
            with FolderLock(self.path, command):
                yield from self._writing_in(outermost)
        finally:
            if outermost and not had_meta and not (self.path / META_DIR / MANIFEST_NAME).exists():
                with contextlib.suppress(OSError):  # nothing written: leave no bookkeeping in the user's folder
                    os.unlink(self.path / META_DIR / "lock")
                    (self.path / META_DIR).rmdir()

    def _writing_in(self, outermost: bool):
        """The body of writing() under the lock: load the manifest (adopting a cskd 0.1 folder's
        files in memory, re-recording files copied with new times), remove stale temporary files."""
        if outermost:
            m = Manifest(self.path)
            if not (m.exists and m.readable):  # cskd 0.1's files (or a lost manifest): adopted in memory,
                for name in self.legacy_files():  # saved with the first file this command writes
                    m.adopt(name, record_of(self.path / name))
            else:
                for name in self.cskd_names():  # copied with new times but the same bytes: re-record
                    rec = m.matching(name)
                    st = os.stat(self.path / name)
                    if rec is not None and (rec.size, rec.mtime_ns) != (st.st_size, st.st_mtime_ns):
                        m.record(name, record_of(self.path / name, rec.sha256))
            remove_stale_temps(self.path, is_cskd_name)
            remove_stale_temps(self.path / META_DIR, lambda name: name == MANIFEST_NAME)
            self._manifest = m
        try:
            yield self
        finally:
            if outermost:
                self._manifest = None

    def _write(self, name: str, writer):
        if self._manifest is None:
            raise RuntimeError(f"write of {name} outside RunFolder.writing()")
        return self._manifest.write(name, writer)

    def _write_json(self, name: str, record: dict) -> None:
        self._write(name, lambda f: f.write((json.dumps(record, indent=2, sort_keys=True) + "\n").encode()))

    def write_config(self, config: dict, meta: dict, *, kind: str = "trained") -> str:
        """Write config.json for a new run; returns its run id (a fresh one unless `meta` has it)."""
        meta = {**meta, "run_id": meta.get("run_id") or uuid.uuid4().hex}
        record = {"format": CONFIG_FORMAT, "kind": kind, "config": config, "meta": meta}
        self._write_json(CONFIG, record)
        return meta["run_id"]

    def write_summary(self, summary: dict) -> None:
        record = {"format": SUMMARY_FORMAT, "run_id": self.run_id(), **summary}
        self._write_json(SUMMARY, record)

    def write_metrics(self, records: list[dict]) -> None:
        """Replace metrics.jsonl with `records` (one JSON object per line), atomically: rewriting
        the whole log each epoch costs little and never leaves a torn line."""
        self._write(METRICS, lambda f: f.write("".join(json.dumps(r) + "\n" for r in records).encode()))

    def save_checkpoint(self, kind: str, state: dict) -> None:
        self._write(f"{kind}.pt", checkpoint_bytes({"run_id": self.run_id(), **state}))

    def write_predictions(self, split: str, arrays: dict, meta: dict) -> None:
        meta = {**meta, "format": PREDICTIONS_FORMAT, "kind": "predictions", "split": split,
                "run_id": self.run_id(), "write_id": uuid.uuid4().hex}
        self._write(predictions_name(split), lambda f: write_npz(f, arrays, meta))

    def write_derived(self, name: str, arrays: dict, *, kind: str, predictions: Predictions, **meta) -> None:
        meta = _derived_meta(kind, predictions, meta)
        self._write(name, lambda f: write_npz(f, arrays, meta))

    @staticmethod
    def unsaved_derived(name: str, arrays: dict, *, kind: str, predictions: Predictions, **meta) -> NpzFile:
        """What write_derived would write, for a folder cskd may not write to: written to a
        temporary file outside it, opened (memory-mapped) and deleted — the mapping keeps the bytes."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="cskd-") as tmp:
            path = Path(tmp) / name
            with open(path, "wb") as f:
                write_npz(f, arrays, _derived_meta(kind, predictions, meta))
            return NpzFile(path)

    def writable(self) -> bool:
        """Whether cskd may write here (False for a read-only mount or folder)."""
        return not self.path.is_dir() or os.access(self.path, os.W_OK)

    def remove(self, name: str) -> None:
        """Delete cskd's file `name` (refused for a foreign one)."""
        if self._manifest is None:
            raise RuntimeError(f"removal of {name} outside RunFolder.writing()")
        if not self._manifest.owns(name):
            raise UserError(f"{self.path / name} was not written by cskd; cskd never deletes such a file: move it away")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path / name)
        self._manifest.forget(name)

    def clear(self) -> list[str]:
        """Delete every file cskd wrote here; returns the foreign files left in place."""
        foreign = [n for n in self.cskd_names() if not self._manifest.owns(n)]
        for name in self.cskd_names():
            if name not in foreign:
                self.remove(name)
        return foreign

    def discard_if_empty(self) -> None:
        """When nothing but cskd's bookkeeping is left in the folder, remove the bookkeeping, and
        the folder itself if this object's writing() created it (a folder the user made stays)."""
        meta = self.path / META_DIR
        try:
            if any(e.name != META_DIR for e in os.scandir(self.path)):
                return
            for name in os.listdir(meta):
                os.unlink(meta / name)
            meta.rmdir()
            if self._created:
                self.path.rmdir()
        except OSError:
            pass


def config_from_record(record, version: int, path: Path, *, fix: str) -> TrainConfig:
    """The validated TrainConfig of a saved config dict of format `version` (config.json's, or a
    checkpoint's); anything else is a UserError naming `path`, with `fix` saying what to do."""
    try:
        cfg = TrainConfig.from_record(record, version=version)
        validate(cfg)
    except (UserError, TypeError, ValueError, KeyError, AttributeError) as e:
        raise UserError(f"{path} holds an invalid config ({short_reason(e)}); {fix}") from None
    return cfg


def _derived_meta(kind: str, predictions: Predictions, meta: dict) -> dict:
    """A derived cache's meta: its own fields and what it was made from."""
    return {**meta, "format": DERIVED_FORMAT, "kind": kind, "source": predictions.write_id}
