"""Recognising the files of a run folder that has no (readable) manifest: written by cskd 0.1, or by
a cskd that lost its manifest. Such a file is cskd's only if its content is what cskd writes under
that name; nothing is unpickled on the way."""

from __future__ import annotations

import contextlib
import json
import pickle
import zipfile
from pathlib import Path

from cskd.runfolder.layout import BEST, CONFIG, LAST, METRICS, SUMMARY
from cskd.runfolder.npz import NpzFile


def looks_like_cskd(folder: Path, name: str) -> bool:
    """Whether the file `name` has the content cskd writes under that name (never unpickles)."""
    path = folder / name
    try:
        if name == CONFIG:
            data = json.loads(path.read_text())
            cfg = data.get("config") if isinstance(data, dict) else None
            return isinstance(cfg, dict) and all(isinstance(cfg.get(k), str) for k in ("dataset", "method"))
        if name == SUMMARY:
            data = json.loads(path.read_text())
            return isinstance(data, dict) and "finished" in data and "best_epoch" in data
        if name == METRICS:
            lines = path.read_text().splitlines()
            records = [json.loads(line) for line in lines[:-1]]  # a torn last line is allowed
            with contextlib.suppress(ValueError):
                records.append(json.loads(lines[-1]))
            return bool(records) and all(isinstance(r, dict) and isinstance(r.get("epoch"), int) for r in records)
        if name in (LAST, BEST):
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            return isinstance(state, dict) and {"format", "model", "config", "epoch"} <= set(state)
        with zipfile.ZipFile(path) as z:
            members = set(z.namelist())
        if name.startswith("predictions-"):
            return "logits.npy" in members and bool({"run_config.npy", "meta.npy"} & members)
        if name.startswith("tsne-"):
            return {"coords.npy", "rows.npy"} <= members
        if name.startswith("stats-"):
            return NpzFile(path).meta.get("kind") == "stats"
    except (OSError, ValueError, AttributeError, IndexError, KeyError, RuntimeError, EOFError,
            pickle.UnpicklingError, zipfile.BadZipFile):
        pass  # unreadable as what cskd writes there: not ours
    return False
