"""Run folders: naming, the checks made before anything is written, and reading a run back.

A run folder holds `config.json`, `metrics.jsonl`, `summary.json`, `last.pt`, `best.pt` and,
after `cskd predict`, `predictions-<split>.npz`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from .config import TrainConfig, validate
from .errors import UserError, short_reason

RUN_MARKERS = ("config.json", "last.pt", "best.pt", "metrics.jsonl")
# Everything cskd writes into a run folder; --overwrite deletes these and nothing else.
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "last.pt", "best.pt", "predictions-*.npz", "tsne-*.npz")


def default_run_name(cfg: TrainConfig) -> str:
    """A readable name from the fields that distinguish runs, e.g. digits-small-cskd-T4-L1-s0."""
    name = f"{cfg.dataset}-{cfg.model}-{cfg.method}"
    if cfg.method != "ce":
        name += f"-T{cfg.temperature:g}-L{cfg.lambda_cls:g}"
    return f"{name}-e{cfg.epochs}-s{cfg.seed}"


def holds_run(folder: Path) -> bool:
    return folder.is_dir() and any((folder / m).exists() for m in RUN_MARKERS)


def clear_run(folder: Path) -> None:
    """Delete the files cskd wrote into a run folder (RUN_FILES); anything else in it stays."""
    for pattern in RUN_FILES:
        for path in folder.glob(pattern):
            path.unlink()


def choose_out_dir(cfg: TrainConfig, *, runs_root: str = "checkpoints", existing: bool = False) -> Path:
    """`--out` if given; otherwise checkpoints/<readable name>, suffixed -2, -3, ... if taken.

    With `existing` (resuming), the last folder of that series that holds a run instead.
    """
    if cfg.out:
        return Path(cfg.out)
    base = Path(runs_root) / default_run_name(cfg)
    folder, n, last = base, 1, base
    while holds_run(folder):
        last = folder
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return last if existing else folder


def git_commit() -> str | None:
    """The commit of the source tree cskd runs from, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def read_config(run: Path) -> TrainConfig:
    path = Path(run) / "config.json"
    if not path.is_file():
        raise UserError(f"{run} is not a cskd run: {path} is missing")
    try:
        record = json.loads(path.read_text())["config"]
    except (ValueError, KeyError, TypeError) as e:  # ValueError covers bad JSON and bytes that are not UTF-8
        raise UserError(f"{path} is not a valid cskd config ({type(e).__name__}); the run folder is damaged") from None
    return config_from_record(record, path, fix="the run folder is damaged")


def config_from_record(record, path: Path, *, fix: str) -> TrainConfig:
    """The validated TrainConfig of a saved config dict (config.json's, or a checkpoint's); anything
    else is a UserError naming `path`, with `fix` saying what to do."""
    try:
        cfg = TrainConfig.from_dict(record)
        validate(cfg)
    except (UserError, TypeError, ValueError, KeyError, AttributeError) as e:
        raise UserError(f"{path} holds an invalid config ({short_reason(e)}); {fix}") from None
    return cfg


def read_metrics(run: Path) -> list[dict]:
    """The per-epoch records of metrics.jsonl: JSON objects with an integer "epoch". Other lines (a
    torn last line from a kill, damage) are skipped."""
    path = Path(run) / "metrics.jsonl"
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


PREDICTION_KEYS = ("logits", "features", "labels", "indices", "class_names", "dataset", "split")


def load_predictions(path: Path) -> dict:
    """Read a predictions-<split>.npz written by `cskd predict` into a dict of arrays and strings.

    Fails with a one-line UserError naming the file when it is missing, unreadable, lacks a key,
    or its arrays disagree in length. Never unpickles (allow_pickle=False).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is missing; run `cskd predict {path.parent}` to create it")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # truncated zip, not an npz, object arrays
        raise UserError(f"{path} is not a readable predictions file ({type(e).__name__}); "
                        f"delete it and run `cskd predict {path.parent}` again") from None
    missing = [k for k in PREDICTION_KEYS if k not in data]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}; run `cskd predict {path.parent} --force`")
    n = len(data["labels"])
    logits = data["logits"]
    if logits.ndim != 2 or len(logits) != n or len(data["features"]) != n or len(data["indices"]) != n:
        raise UserError(f"{path}: logits {logits.shape}, features {data['features'].shape} and labels ({n},) "
                        f"disagree; run `cskd predict {path.parent} --force`")
    if logits.shape[1] != len(data["class_names"]):
        raise UserError(f"{path}: {logits.shape[1]} logit columns but {len(data['class_names'])} class names")
    labels, features = data["labels"], data["features"]
    problem = ("it holds no samples" if n == 0
               else "its labels are not integers" if labels.ndim != 1 or labels.dtype.kind not in "iu"
               else f"its labels fall outside 0..{logits.shape[1] - 1}" if labels.min() < 0 or labels.max() >= logits.shape[1]
               else "its indices are not integers" if data["indices"].dtype.kind not in "iu"
               else f"its features have shape {features.shape}" if features.ndim != 2 or features.shape[1] == 0
               else "its logits are not all finite (did the model diverge?)" if not np.isfinite(logits).all()
               else f"it has {len(data['images'])} thumbnails for {n} samples" if "images" in data and len(data["images"]) != n
               else None)
    if problem:
        raise UserError(f"{path} is damaged: {problem}; run `cskd predict {path.parent} --force`")
    for key in ("dataset", "split", "checkpoint", "run_config"):
        if key in data:
            data[key] = str(data[key])
    data["class_names"] = [str(c) for c in data["class_names"]]
    if "coarse_names" in data:
        data["coarse_names"] = [str(c) for c in data["coarse_names"]]
    return data


def read_tsne_cache(path: Path, source: Path, n: int, *, max_points: int | None = None):
    """(coords float32 (M, 2), rows int64 (M,)) of the t-SNE cache `path` of the predictions file
    `source` (n samples); None when it was made with another `max_points` (None: any). A cache that
    cannot be read or does not fit the predictions (shape, rows outside [0, n)) is a UserError."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if max_points is not None and int(z["max_points"]) != max_points:
                return None
            coords, rows = np.asarray(z["coords"], dtype=np.float32), np.asarray(z["rows"], dtype=np.int64)
    except Exception as e:  # truncated zip, wrong keys, object arrays
        raise UserError(f"{path} is not a readable t-SNE cache ({type(e).__name__}); recompute it") from None
    if coords.ndim != 2 or coords.shape[1] != 2 or len(rows) != len(coords) or \
            (rows.size and (rows.min() < 0 or rows.max() >= n)):
        raise UserError(f"{path} does not match {source}; recompute the t-SNE cache")
    return coords, rows


def made_by_run(path: Path, run: Path, checkpoint: str = "best") -> bool:
    """True when the predictions file `path` records that it was made from `checkpoint` of the run
    whose config.json is in `run` (a file copied from another run, or written before the run was
    trained again, records another config: seed, method, folder...). Any unreadable part: False."""
    try:
        with np.load(path, allow_pickle=False) as z:  # reads only the small string entries
            made_from, config = str(z["checkpoint"]), json.loads(str(z["run_config"]))
        return made_from == checkpoint and config == read_config(run).to_dict()
    except Exception:  # unreadable, from another version, or a damaged run
        return False
