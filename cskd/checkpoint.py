"""The one module that writes and reads checkpoints and the run folder's small files.

All writes are atomic (temporary file in the same folder, then os.replace), so a run killed at any
moment leaves the previous version of every file whole. Checkpoints hold only tensors and plain
Python values and are read with `torch.load(..., weights_only=True)`: loading never runs code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from .errors import UserError, short_reason

CHECKPOINT_FORMAT = 1


def atomic_write(path: Path, write) -> None:
    """Call `write(fileobj)` on a temporary file next to `path`, then rename it over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()))


def write_metrics(folder: Path, records: list[dict]) -> None:
    """Rewrite folder/metrics.jsonl atomically with `records`, one JSON object per line."""
    atomic_write(Path(folder) / "metrics.jsonl",
                 lambda f: f.write("".join(json.dumps(r) + "\n" for r in records).encode()))


def append_metrics(folder: Path, record: dict) -> None:
    """Append one epoch's record (a torn last line from a kill is skipped by cskd.runs.read_metrics)."""
    with open(Path(folder) / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` (tensors, dicts, lists, numbers, strings) atomically to `path`."""
    state = {"format": CHECKPOINT_FORMAT, **state}
    atomic_write(path, lambda f: torch.save(state, f))


# What a checkpoint holds, by kind: every entry with its type. best.pt is a model to evaluate;
# last.pt also carries what resuming needs.
BEST_FIELDS = {"model": dict, "config": dict, "epoch": int, "best": dict}
LAST_FIELDS = {**BEST_FIELDS, "optimizer": dict, "sampler": dict, "rng": dict}


def load_checkpoint(path: Path, map_location="cpu", *, fields: dict = BEST_FIELDS) -> dict:
    """Read a checkpoint written by save_checkpoint that holds `fields` (name -> type), or fail
    with a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise UserError(f"{path} cannot be read (permission denied); fix its permissions") from None
    except Exception as e:  # truncated file, not a torch file, or a pickle that needs code
        raise UserError(f"{path} is not a readable cskd checkpoint ({short_reason(e)}); "
                        f"delete it, or start the run again with --overwrite") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a cskd checkpoint (no format field); start the run again with --overwrite")
    bad = [name for name, kind in fields.items() if not isinstance(state.get(name), kind)
           or (kind is int and isinstance(state.get(name), bool))]
    if bad:
        raise UserError(f"{path} is incomplete or damaged (missing or malformed: {', '.join(bad)}); "
                        f"start the run again with --overwrite")
    return state


def rng_state() -> dict:
    """Every RNG the training loop may touch (torch CPU and CUDA; the loop uses no numpy/random)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_model_state(model: torch.nn.Module, state: dict, path: Path) -> None:
    """model.load_state_dict(state), with a mismatch reported as a one-line UserError."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"{path} does not fit the model its config describes ({first}); "
                        f"it was written by another version of cskd — train the run again") from None
