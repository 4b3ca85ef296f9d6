"""Checkpoints (`last.pt`, `best.pt`): writing them into a run folder and reading them back
safely. A checkpoint is a dict saved with `torch.save` and read with
`torch.load(..., weights_only=True)`, so loading never runs code; BEST_FIELDS and LAST_FIELDS
name what each kind must hold (`epoch`: 0-based index of the last epoch the weights have seen in
full; `step`: steps already taken in the epoch after it, > 0 with `partial` when a preempted run
saved mid-epoch). `folder` is a cskd.runfolder.folder.RunFolder.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

from cskd.errors import UserError, short_reason
from cskd.runfolder.config_file import read_run_id
from cskd.runfolder.formats import CHECKPOINT_FORMAT, format_problem
from cskd.runfolder.layout import CONFIG
from cskd.runfolder.store import sha256_of

# Fields by kind: name -> type. best.pt is a model to evaluate; last.pt also carries what resuming needs.
BEST_FIELDS = {"model": dict, "config": dict, "epoch": int, "best": dict}
LAST_FIELDS = {**BEST_FIELDS, "optimizer": dict, "sampler": dict, "rng": dict, "step": int}


def save_checkpoint(folder, kind: str, state: dict) -> None:
    """Write `kind`.pt ("last" or "best") of the run: `state` with the format and the run's id."""
    import torch  # here, not at import: the dashboard reads run folders without torch

    state = {"format": CHECKPOINT_FORMAT, "run_id": read_run_id(folder), **state}
    folder.write(f"{kind}.pt", lambda f: torch.save(state, f))


def read_checkpoint(folder, kind: str = "best", *, fields: dict = BEST_FIELDS, map_location="cpu",
                    fix: str = "start the run again with --overwrite") -> dict:
    """`kind`.pt, checked: readable with weights_only, holding `fields`, of this run (run_id), and
    with the content the manifest recorded for it (a flipped byte is found)."""
    path = folder.file(f"{kind}.pt")
    state = read_checkpoint_file(path, fields=fields, map_location=map_location, fix=fix)
    try:
        run_id = read_run_id(folder) if folder.file(CONFIG).is_file() else None
    except UserError:  # a damaged config.json: last.pt may be what repairs it
        run_id = None
    if state.get("run_id") and run_id and state["run_id"] != run_id:
        raise UserError(f"{path} belongs to another run than {folder.file(CONFIG)} (another run id); {fix}")
    digest = folder.recorded_sha256(f"{kind}.pt")
    if digest is not None and sha256_of(path) != digest:
        raise UserError(f"{path} does not match the checksum recorded when it was written (damaged); {fix}")
    return state


def read_checkpoint_file(path: Path, *, fields: dict = BEST_FIELDS, map_location="cpu", fix: str) -> dict:
    """The checkpoint at `path` holding `fields`, or a one-line UserError ending in `fix`."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise UserError(f"{path} cannot be read (permission denied); fix its permissions") from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, AttributeError, pickle.UnpicklingError,
            zipfile.BadZipFile) as e:  # truncated, not a torch file, a pickle needing code: all mean "not ours"
        raise UserError(f"{path} is not a readable cskd checkpoint ({short_reason(e)}); {fix}") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} is not a cskd checkpoint (no dict of fields); {fix}")
    problem = format_problem(path, state.get("format"), CHECKPOINT_FORMAT, fix=fix)
    if problem:
        raise UserError(problem)
    bad = [name for name, kind in fields.items() if not isinstance(state.get(name), kind)
           or (kind is int and isinstance(state.get(name), bool))]
    best = state.get("best")
    if "best" in fields and isinstance(best, dict) and not (
            _number(best.get("acc")) and isinstance(best.get("epoch"), int) and not isinstance(best["epoch"], bool)):
        bad.append("best")
    if "step" in fields and isinstance(state.get("step"), int) and state["step"] > 0:
        partial = state.get("partial")
        if not (isinstance(partial, torch.Tensor) and partial.shape == (5,)):
            bad.append("partial")
    if "step" in fields and isinstance(state.get("step"), int) and state["step"] < 0:
        bad.append("step")
    if bad:
        raise UserError(f"{path} is incomplete or damaged (missing or malformed: {', '.join(bad)}); {fix}")
    return state


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def rng_state() -> dict:
    """Every RNG the training loop may touch besides its per-step generators (torch CPU and CUDA)."""
    import torch

    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_model_state(model, state: dict, path: Path) -> None:
    """model.load_state_dict(state), with a mismatch reported as a one-line UserError."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"{path} does not fit the model its config describes ({first}); "
                        f"it was written by another version of cskd — train the run again") from None
