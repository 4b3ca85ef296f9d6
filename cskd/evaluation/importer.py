"""`cskd import RUN_DIR --logits F|--probs F --labels F [--features F] [--images F] [--class-names F]
[--split test|val] [--dataset NAME] [--model NAME] [--method NAME] [--force]`: predictions of a
model trained anywhere, as a run folder that `cskd analyze` and every dashboard page read like a
trained run's.

Inputs: numpy `.npy` / `.npz` (read with allow_pickle=False: no pickle is ever loaded; an `.npz`
holds one array or one named after its option, e.g. `logits`) or torch `.pt` / `.pth` tensors
(read with torch.load(weights_only=True): a file that needs code to load is refused).
  logits    (N, C) real numbers, all finite, also as float32 (in which they are stored); rows that
            are all in [0, 1] and sum to 1 are probabilities, refused here (softmax would flatten them)
  probs     instead of logits: (N, C) probabilities (rows sum to 1 within 1e-3), e.g. predict_proba;
            stored as float32 log-probabilities (softmax of them gives the probabilities back)
  labels    (N,) integers in [0, C)
  features  (N, D) real numbers, all finite, within float16's range; stored as float16, as
            `cskd predict` stores them (needed for Recall@1, neighbours and the t-SNE)
  images    (N, H, W), (N, H, W, 1|3) or (N, 1|3, H, W) uint8 (shown next to the samples)
  class names: a text file with one name per line, or a JSON list of strings; default "0".."C-1"
Every problem is a one-line UserError naming the file.

The run folder is created, or gets another split: config.json marks it as imported
(cskd.runfolder.write_config(..., kind="imported"), config {dataset, model, method, seed: 0}) and the split is
written as predictions-<split>.npz with checkpoint "imported". A second call adds the other split
(`--split val`: temperature scaling is fitted on validation predictions, never on the test split)
and must agree with the first on the data set, model, method, class count and names. A split the
run already holds is replaced only with --force (the refusal says what would be lost). A folder
holding a trained run, or files under cskd's names that cskd did not write, is refused.
"""

from __future__ import annotations

import argparse
import datetime
import json
import zipfile
from pathlib import Path

import numpy as np

from cskd import __version__
from cskd.errors import UserError, short_reason
from cskd.runfolder.config_file import read_record, write_config
from cskd.runfolder.folder import RunFolder
from cskd.runfolder.layout import CONFIG, DEFAULT_SPLIT, SPLITS, predictions_name
from cskd.runfolder.predictions import read_predictions, write_predictions

CHUNK_ROWS = 8192
FLOAT16_MAX = 65504.0
MAX_NAME = 200  # characters of a class name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `cskd import`."""
    parser.add_argument("run", metavar="RUN_DIR", help="run folder to create (or to add a split to)")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--logits", metavar="F", help="(N, C) logits: .npy, .npz or .pt")
    given.add_argument("--probs", metavar="F", help="(N, C) probabilities (rows sum to 1), for a model that only "
                                                    "has predict_proba; stored as log-probabilities")
    parser.add_argument("--labels", required=True, metavar="F", help="(N,) integer labels in [0, C)")
    parser.add_argument("--features", metavar="F", help="(N, D) penultimate features (Recall@1, t-SNE, neighbours)")
    parser.add_argument("--images", metavar="F", help="(N, H, W[, 1|3]) uint8 images or thumbnails")
    parser.add_argument("--class-names", metavar="F", help="one class name per line, or a JSON list (default 0..C-1)")
    parser.add_argument("--split", choices=SPLITS, default=DEFAULT_SPLIT,
                        help="test (default), or val: validation predictions, for temperature scaling")
    parser.add_argument("--dataset", help="data set name (default: imported)")
    parser.add_argument("--model", help="model name (default: imported)")
    parser.add_argument("--method", help="training method (default: imported)")
    parser.add_argument("--force", action="store_true",
                        help="replace the split's predictions when the run already has them")


def cmd_import(args) -> int:
    """`cskd import`: write the split, then say what was imported and what to run next."""
    result = import_predictions(args.run, logits=args.logits, probs=args.probs, labels=args.labels,
                                features=args.features, images=args.images, class_names=args.class_names,
                                split=args.split, dataset=args.dataset, model=args.model, method=args.method,
                                force=args.force)
    print(result)
    return 0


# ----------------------------------------------------------------------------------------- reading

def read_array(path, option: str) -> np.ndarray:
    """The array in `path` (see the module docstring), or a one-line UserError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--{option} {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            a = np.load(path, allow_pickle=False, mmap_mode="r")
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = list(z.files)
                key = option.replace("-", "_")
                if key not in names and len(names) != 1:
                    raise UserError(f"--{option} {path} holds {len(names)} arrays ({', '.join(names[:8])}); name one "
                                    f"'{key}' or keep a single array in the file")
                a = z[key if key in names else names[0]]
        elif suffix in (".pt", ".pth"):
            a = _torch_array(path, option)
        else:
            raise UserError(f"--{option} {path}: unknown file type {suffix or '(none)'}; use .npy, .npz or .pt")
    except UserError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # pickled or object data, a truncated file
        raise UserError(f"--{option} {path} cannot be read as an array without running code "
                        f"({short_reason(e)}); save it with numpy.save or torch.save of a tensor") from None
    if not isinstance(a, np.ndarray) or a.dtype.hasobject or a.dtype.kind not in "biuf":
        raise UserError(f"--{option} {path} holds {getattr(a, 'dtype', type(a).__name__)} data, not numbers")
    return a


def _torch_array(path: Path, option: str) -> np.ndarray:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- an unpickling error, a truncated file: all "cannot be read safely"
        raise UserError(f"--{option} {path} cannot be read with torch.load(weights_only=True) ({short_reason(e)}); "
                        f"save a plain tensor with torch.save") from None
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        key = option.replace("-", "_")
        if key not in tensors and len(tensors) != 1:
            raise UserError(f"--{option} {path} holds a dict without a single tensor or one named '{key}'")
        obj = tensors[key] if key in tensors else next(iter(tensors.values()))
    if not isinstance(obj, torch.Tensor):
        raise UserError(f"--{option} {path} holds a {type(obj).__name__}, not a tensor")
    if obj.is_complex():
        raise UserError(f"--{option} {path} holds complex numbers")
    if obj.layout != torch.strided:  # sparse or nested: .numpy() cannot convert it
        raise UserError(f"--{option} {path} holds a {str(obj.layout).removeprefix('torch.')} tensor; save a dense one "
                        f"(tensor.to_dense())")
    return (obj.float() if obj.dtype == torch.bfloat16 else obj).detach().cpu().numpy()


def _finite(a: np.ndarray, option: str, path, *, after: str = "") -> None:
    for s in range(0, len(a), CHUNK_ROWS):
        block = np.asarray(a[s:s + CHUNK_ROWS], dtype=np.float64)
        bad = ~np.isfinite(block)
        if bad.any():
            row = s + int(np.argwhere(bad)[0][0])
            when = f" after {after}" if after else ""
            raise UserError(f"--{option} {path} holds NaN or infinite values{when} (first in row {row})")


def check_logits(a: np.ndarray, path) -> np.ndarray:
    """(N, C) float32 logits: finite after the cast to float32 (float64 logits beyond its range
    would become inf), and not probabilities (rows in [0, 1] summing to 1: softmax would flatten
    them; --probs takes those)."""
    _shape(a, "logits", path)
    _finite(a, "logits", path)
    with np.errstate(over="ignore"):  # an overflow is reported by the check below, in one line
        z = np.ascontiguousarray(a, dtype=np.float32)
    _finite(z, "logits", path, after="the conversion to float32 (their magnitude exceeds 3.4e38)")
    if all(_probability_rows(z[s:s + CHUNK_ROWS]) for s in range(0, len(z), CHUNK_ROWS)):
        raise UserError(f"--logits {path} looks like probabilities (every row is in [0, 1] and sums to 1); pass it "
                        f"with --probs, which stores log-probabilities, or give the model's logits")
    return z


def check_probs(a: np.ndarray, path) -> np.ndarray:
    """(N, C) probabilities as float32 log-probabilities (0 becomes log of float32's smallest
    normal number, about -87.3): softmax gives the same probabilities back."""
    _shape(a, "probs", path)
    _finite(a, "probs", path)
    for s in range(0, len(a), CHUNK_ROWS):
        block = np.asarray(a[s:s + CHUNK_ROWS], dtype=np.float64)
        if block.min() < 0 or block.max() > 1:
            raise UserError(f"--probs {path} holds values outside [0, 1] (from {block.min():g} to {block.max():g}); "
                            f"pass logits with --logits")
        worst = float(np.abs(block.sum(axis=1) - 1).max())
        if worst > 1e-3:
            raise UserError(f"--probs {path}: a row's sum differs from 1 by {worst:.3g}; each row must sum to 1 "
                            f"(pass softmax outputs, or logits with --logits)")
    tiny = np.finfo(np.float32).tiny
    return np.log(np.clip(np.asarray(a, dtype=np.float32), tiny, 1.0))


def _shape(a: np.ndarray, option: str, path) -> None:
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] < 2 or a.dtype.kind == "b":
        raise UserError(f"--{option} {path} has shape {a.shape} ({a.dtype}); expected (N, C) numbers with N >= 1, "
                        f"C >= 2")


def _probability_rows(block: np.ndarray) -> bool:
    """Every row of `block` is in [0, 1] and sums to 1 (within 1e-4)."""
    b = np.asarray(block, dtype=np.float64)
    return bool(b.size) and b.min() >= 0 and b.max() <= 1 and np.abs(b.sum(axis=1) - 1).max() <= 1e-4


def check_labels(a: np.ndarray, path, n: int, c: int) -> np.ndarray:
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1 or a.shape[0] != n:
        raise UserError(f"--labels {path} has shape {a.shape}; expected ({n},), one label per row of the logits")
    if a.dtype.kind == "b" or (a.dtype.kind == "f" and not np.all(np.mod(a, 1) == 0)):
        raise UserError(f"--labels {path} holds {a.dtype} values that are not integer class ids")
    y = np.asarray(a, dtype=np.int64)
    if y.min() < 0 or y.max() >= c:
        raise UserError(f"--labels {path} holds labels from {y.min()} to {y.max()}, outside 0..{c - 1} "
                        f"(the logits have {c} columns)")
    return y


def check_features(a: np.ndarray, path, n: int) -> np.ndarray:
    if a.ndim != 2 or a.shape[0] != n or a.shape[1] == 0 or a.dtype.kind == "b":
        raise UserError(f"--features {path} has shape {a.shape}; expected ({n}, D) numbers")
    _finite(a, "features", path)
    out = np.empty(a.shape, np.float16)
    for s in range(0, n, CHUNK_ROWS):
        block = np.asarray(a[s:s + CHUNK_ROWS], dtype=np.float32)
        if np.abs(block).max(initial=0.0) > FLOAT16_MAX:
            raise UserError(f"--features {path} holds values beyond float16's range (±{FLOAT16_MAX:g}), in which "
                            f"cskd stores features; scale them down first")
        out[s:s + CHUNK_ROWS] = block
    return out


def check_images(a: np.ndarray, path, n: int) -> np.ndarray:
    if a.dtype != np.uint8:
        raise UserError(f"--images {path} holds {a.dtype}; expected uint8 pixels (0..255)")
    if a.ndim == 4 and a.shape[1] in (1, 3) and a.shape[3] not in (1, 3):
        a = a.transpose(0, 2, 3, 1)  # N, C, H, W as torch keeps them
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[0] != n or a.shape[3] not in (1, 3) or min(a.shape[1:3]) == 0:
        raise UserError(f"--images {path} has shape {a.shape}; expected ({n}, H, W), ({n}, H, W, 1|3) "
                        f"or ({n}, 1|3, H, W)")
    return np.ascontiguousarray(a)


def read_class_names(path, c: int) -> list[str]:
    if path is None:
        return [str(i) for i in range(c)]
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--class-names {path} cannot be read as UTF-8 text ({short_reason(e)})") from None
    if path.suffix.lower() == ".json":
        try:
            names = json.loads(text)
        except ValueError as e:
            raise UserError(f"--class-names {path} is not valid JSON ({short_reason(e)})") from None
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            raise UserError(f"--class-names {path} must hold a JSON list of strings")
    else:
        names = text.splitlines()
        while names and not names[-1].strip():  # a trailing blank line is no class
            names.pop()
    names = [x.strip() for x in names]
    if len(names) != c:
        raise UserError(f"--class-names {path} lists {len(names)} names for {c} classes (logit columns)")
    if any(not x or len(x) > MAX_NAME for x in names) or len(set(names)) != c:
        raise UserError(f"--class-names {path}: names must be distinct, non-empty and at most {MAX_NAME} characters")
    return names


# ----------------------------------------------------------------------------------------- writing

def _target(run: Path, config: dict) -> tuple[RunFolder, dict | None]:
    """The folder to write into, and its existing record (None for a new run); refuses a trained
    run, foreign files, or an import that disagrees with the run's config."""
    folder = RunFolder(run)
    if run.exists() and not run.is_dir():
        raise UserError(f"{run} exists and is not a folder")
    foreign = folder.foreign_files()
    if foreign:
        raise UserError(f"{run} holds files cskd did not write ({', '.join(foreign)}); import into a new folder")
    if not folder.file(CONFIG).exists():
        if folder.holds_run():
            raise UserError(f"{run} holds a trained run's files; import into a new folder")
        return folder, None
    record = read_record(folder)
    if record["kind"] != "imported":
        raise UserError(f"{run} holds a trained run; import into a new folder (cskd never mixes the two)")
    old = record["config"]
    clash = [k for k in ("dataset", "model", "method") if config[k] is not None and old.get(k) != config[k]]
    if clash:
        raise UserError(f"{run} was imported with {', '.join(f'{k} {old.get(k)!r}' for k in clash)}; give the same "
                        f"--{' --'.join(clash)}, or import into another folder")
    return folder, record


def import_predictions(run, *, labels, logits=None, probs=None, features=None, images=None, class_names=None,
                       split: str = DEFAULT_SPLIT, dataset=None, model=None, method=None, force: bool = False) -> str:
    """Import one split (see the module docstring) from `logits` or `probs` (exactly one); returns
    the line `cskd import` prints. A split the run already holds is replaced only with `force`."""
    if (logits is None) == (probs is None):
        raise UserError("give the predictions as exactly one of --logits and --probs")
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}; got {split!r}")
    for option, value in (("dataset", dataset), ("model", model), ("method", method)):
        if value is not None and (not value.strip() or len(value) > MAX_NAME):
            raise UserError(f"--{option} must be a non-empty name of at most {MAX_NAME} characters")
    run = Path(run)
    folder, record = _target(run, {"dataset": dataset, "model": model, "method": method})
    if not force and folder.file(predictions_name(split)).is_file():
        raise UserError(_would_replace(folder, split))
    z = check_logits(read_array(logits, "logits"), logits) if probs is None else \
        check_probs(read_array(probs, "probs"), probs)
    n, c = z.shape
    arrays = {"logits": z, "labels": check_labels(read_array(labels, "labels"), labels, n, c),
              "indices": np.arange(n, dtype=np.int64)}
    if features is not None:
        arrays["features"] = check_features(read_array(features, "features"), features, n)
    if images is not None:
        arrays["images"] = check_images(read_array(images, "images"), images, n)
    names = read_class_names(class_names, c)
    if record is not None:
        names = _agree_with_run(folder, record, split, names, class_names)
        config = record["config"]
    else:
        config = {"dataset": dataset or "imported", "model": model or "imported", "method": method or "imported",
                  "seed": 0}
    with folder.writing(command=f"cskd import {run} --split {split}"):
        if record is None:
            write_config(folder, config, {"cskd_version": __version__, "class_names": names, "num_classes": c,
                                          "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                                              timespec="seconds")}, kind="imported")
        write_predictions(folder, split, arrays, {"checkpoint": "imported", "dataset": config["dataset"],
                                                  "class_names": names, "coarse_names": None, "config": config,
                                                  "sources": {k: str(Path(v).resolve()) for k, v in (
                                                      ("logits", logits), ("probs", probs), ("labels", labels),
                                                      ("features", features),
                                                      ("images", images)) if v is not None}})
    extra = [f"{arrays['features'].shape[1]}-d features" if features is not None else "no features",
             "images" if images is not None else "no images"]
    hint = " (add validation predictions with --split val for temperature scaling)" if split == "test" else ""
    return (f"imported {n:,} {split} predictions ({c} classes, {', '.join(extra)}) into {run / predictions_name(split)}"
            f"{hint}; next: `cskd analyze {run} --out REPORT` or `cskd dashboard --runs {run.parent}`")


def _would_replace(folder: RunFolder, split: str) -> str:
    """The refusal of a second import of `split`, saying what replacing it would lose."""
    path = folder.file(predictions_name(split))
    try:
        old = read_predictions(folder, split)
        kept = [what for what, present in (("features", old.features is not None), ("images", old.images is not None))
                if present]
        what = f"{len(old.labels):,} predictions" + (f" with their {' and '.join(kept)}" if kept else "")
    except UserError:
        what = "predictions"
    return (f"{path} already holds {what}; importing again replaces it (and the caches made from it): add --force, "
            f"or import into another folder")


def _agree_with_run(folder: RunFolder, record: dict, split: str, names: list, given) -> list:
    """The class names of the new split: those given (which must equal the run's), else the run's."""
    theirs = record["meta"].get("class_names")
    if not (isinstance(theirs, list) and all(isinstance(x, str) for x in theirs)):
        theirs = None
    for other in SPLITS:
        if theirs is None and other != split and folder.file(predictions_name(other)).is_file():
            try:
                theirs = read_predictions(folder, other).class_names
            except UserError:
                pass  # damaged: the new split does not depend on it
    if theirs is None:
        return names
    if len(theirs) != len(names):
        raise UserError(f"{folder.path} holds predictions of {len(theirs)} classes; these logits have {len(names)}")
    if given is not None and theirs != names:
        raise UserError(f"--class-names {given} differ from the class names of {folder.path}")
    return list(theirs)
