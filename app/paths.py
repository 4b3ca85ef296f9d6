"""The runs folder and the only ways the dashboard turns names into paths.

Every file the dashboard opens goes through `run_file`: the run name must be one that
`discover_runs` found, and the resolved path (symlinks followed) must lie inside the resolved
runs folder. A run name from the URL (`?run=../../etc`) or a symlink pointing elsewhere is refused
with a one-line `UserError`. Nothing here imports Streamlit, so it is tested on its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cskd.errors import UserError

MAX_DEPTH = 3  # runs may sit in sub-folders (e.g. sweeps/T4/run-s0) up to this depth
CONFIG = "config.json"


def resolve_root(runs_dir) -> Path:
    """The runs folder, absolute and with symlinks resolved, or a UserError when it is not a folder."""
    root = Path(os.path.expanduser(str(runs_dir))).resolve()
    if not root.is_dir():
        raise UserError(f"runs folder {runs_dir} does not exist or is not a folder; "
                        f"create a run with `cskd demo --runs {runs_dir}`")
    return root


def inside(root: Path, path: Path) -> Path:
    """`path` resolved (symlinks followed), or a UserError when that leaves `root`."""
    resolved = Path(path).resolve()
    if resolved != root and root not in resolved.parents:
        raise UserError(f"{path} is outside the runs folder {root}; the dashboard reads nothing there")
    return resolved


def discover_runs(root: Path) -> list[str]:
    """Names (folder paths relative to `root`, '/'-separated) of the run folders under `root`.

    A run folder is one holding config.json; its sub-folders are not searched. Hidden folders and
    folders whose real location is outside `root` (symlinks) are skipped.
    """
    found = []

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:  # unreadable folder: nothing to list there
            return
        for e in entries:
            if e.name.startswith(".") or not e.is_dir():
                continue
            sub = Path(e.path)
            try:
                inside(root, sub)
            except (UserError, OSError):
                continue
            if (sub / CONFIG).exists():
                found.append(sub.relative_to(root).as_posix())
            elif depth < MAX_DEPTH:
                walk(sub, depth + 1)

    walk(root, 1)
    return found


def run_dir(root: Path, name: str, known) -> Path:
    """The folder of run `name`, which must be one of `known` (from discover_runs) and inside `root`."""
    if not isinstance(name, str) or name not in known:
        raise UserError(f"{name!r} is not a run under the runs folder {root}")
    return inside(root, root / name)


def run_file(root: Path, name: str, filename: str, known) -> Path:
    """The resolved path of `filename` in run `name`, checked to lie inside `root`."""
    if "/" in filename or "\\" in filename or filename in ("", ".", ".."):
        raise UserError(f"{filename!r} is not a file name")
    return inside(root, run_dir(root, name, known) / filename)


FileKey = tuple  # (resolved path, mtime_ns, size): what the caches key on


def file_key(path: Path) -> FileKey | None:
    """Cache key of a file: a rewritten file (new mtime or size) gets a new key; None if absent."""
    try:
        s = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    return (str(path), s.st_mtime_ns, s.st_size)


@dataclass(frozen=True)
class RunFiles:
    """One run's files as cache keys (None where the file is absent), read at the start of a rerun."""

    name: str
    path: Path
    config: FileKey | None
    summary: FileKey | None
    metrics: FileKey | None
    test: FileKey | None
    val: FileKey | None
    tsne: FileKey | None
    best: FileKey | None

    @property
    def stale(self) -> bool:
        """True when best.pt is newer than the test predictions made from it."""
        return bool(self.test and self.best and self.best[1] > self.test[1])


def run_files(root: Path, name: str, known) -> RunFiles:
    """Stat the files of run `name` (every path checked to lie inside `root`)."""
    def key(filename: str):
        return file_key(run_file(root, name, filename, known))

    best, val = key("best.pt"), key("predictions-val.npz")
    if val and best and best[1] > val[1]:
        val = None  # validation predictions of an older best.pt: never fit a temperature on them
    return RunFiles(name=name, path=run_dir(root, name, known), config=key("config.json"),
                    summary=key("summary.json"), metrics=key("metrics.jsonl"),
                    test=key("predictions-test.npz"), val=val, tsne=key("tsne-test.npz"), best=best)
