"""Checkpoints (`last.pt`, `best.pt`): what they hold, and reading them back safely.

A checkpoint is a dict of tensors and plain Python values saved with `torch.save` and read with
`torch.load(..., weights_only=True)`, so loading never runs code:

  format    CHECKPOINT_FORMAT
  run_id    the run's id (config.json meta), so a checkpoint of another run is recognised
  model     the model's state_dict
  config    the run's TrainConfig as a dict (a lost config.json can be rewritten from it)
  epoch     0-based index of the last epoch the weights have seen in full
  best      {"acc": selection accuracy, "epoch": 1-based epoch} of the best epoch so far
last.pt also holds what resuming needs:
  optimizer  the optimizer's state_dict
  sampler    the pair sampler's state ({seed, epoch, allow_self_pair})
  rng        the torch RNG states
  step       steps already taken in epoch `epoch + 1` (0 at an epoch boundary; > 0 when a
             preempted run saved mid-epoch), with `partial`: that epoch's running sums
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

from cskd.errors import UserError, short_reason

CHECKPOINT_FORMAT = 2
# Fields by kind: name -> type. best.pt is a model to evaluate; last.pt also carries what resuming needs.
BEST_FIELDS = {"model": dict, "config": dict, "epoch": int, "best": dict}
LAST_FIELDS = {**BEST_FIELDS, "optimizer": dict, "sampler": dict, "rng": dict, "step": int}


def checkpoint_bytes(state: dict):
    """A writer for cskd.runfolder.store.atomic_write: torch.save of `state` with the format field."""
    import torch  # here, not at import: the dashboard reads run folders without torch

    state = {"format": CHECKPOINT_FORMAT, **state}
    return lambda f: torch.save(state, f)


def read_checkpoint(path: Path, *, fields: dict = BEST_FIELDS, map_location="cpu", fix: str) -> dict:
    """The checkpoint at `path` holding `fields`, or a one-line UserError ending in `fix`.

    A format-1 checkpoint (cskd 0.1) still gives its model and config for evaluation; resuming
    from one (`fields` with "step") is refused because its random streams differ from today's."""
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
    if not isinstance(state, dict) or state.get("format") not in (1, CHECKPOINT_FORMAT):
        raise UserError(f"{path} is not a cskd checkpoint (no known format field); {fix}")
    if state["format"] == 1:
        if "step" in fields:
            raise UserError(f"{path} was written by cskd 0.1 (checkpoint format 1), whose random streams differ "
                            f"from this version's, so its run cannot be continued exactly; {fix}")
        state.setdefault("run_id", None)
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
