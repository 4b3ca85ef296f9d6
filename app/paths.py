"""The runs folder, and the only ways the dashboard turns names into paths.

Every run the dashboard opens is one `discover_runs` found, and every file it reads is first
checked by `run_files`: it must be a regular file whose real location (symlinks followed) lies
inside the resolved runs folder. A run name from the URL (`?run=../../etc`), a symlink pointing
elsewhere, a symlink loop or a FIFO under one of cskd's names becomes a one-line problem naming
the file, so the page shows an error card for that file instead of reading it (or hanging on it).
Nothing here imports Streamlit, so it is tested on its own.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cskd.errors import UserError, short_reason
from cskd.runfolder import CONFIG, METRICS, SUMMARY, predictions_name, stats_name, tsne_name

MAX_DEPTH = 3  # runs may sit in sub-folders (e.g. sweeps/T4/run-s0) up to this depth
# The files a page may read, in the order their problems are reported.
FILES = (CONFIG, SUMMARY, METRICS, "best.pt", predictions_name("test"), predictions_name("val"),
         stats_name("test"), tsne_name("test"), ".cskd/manifest.json")


def resolve_root(runs_dir) -> Path:
    """The runs folder, absolute and with symlinks resolved, or a UserError when it is not a folder."""
    try:
        root = Path(os.path.expanduser(str(runs_dir))).resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop (Python < 3.13)
        raise UserError(f"runs folder {runs_dir} cannot be resolved ({short_reason(e)})") from None
    if not root.is_dir():
        raise UserError(f"runs folder {runs_dir} does not exist or is not a folder; "
                        f"create a run with `cskd demo --runs {runs_dir}`")
    return root


def inside(root: Path, path: Path) -> Path:
    """`path` resolved (symlinks followed), or a UserError when that leaves `root` or loops."""
    try:
        resolved = Path(path).resolve(strict=True)
    except FileNotFoundError:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):  # ELOOP, or RuntimeError for a loop before Python 3.13
        raise UserError(f"{path} is a symlink loop or cannot be resolved; the dashboard does not read it") from None
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
            try:
                if e.name.startswith(".") or not e.is_dir():
                    continue
                sub = Path(e.path)
                inside(root, sub)
                if os.path.lexists(sub / CONFIG):
                    found.append(sub.relative_to(root).as_posix())
                elif depth < MAX_DEPTH:
                    walk(sub, depth + 1)
            except (UserError, OSError):
                continue

    walk(root, 1)
    return found


def run_dir(root: Path, name: str, known) -> Path:
    """The folder of run `name`, which must be one of `known` (from discover_runs) and inside `root`."""
    if not isinstance(name, str) or name not in known:
        raise UserError(f"{name!r} is not a run under the runs folder {root}")
    return inside(root, root / name)


Stamp = tuple  # (mtime_ns, size, inode) of a file: what the caches key on


@dataclass(frozen=True)
class RunFiles:
    """One run's files as seen at the start of a rerun: `stamps` holds a Stamp for each of FILES
    present (a rewritten file gets a new one), `problems` a one-line reason for each present
    file that must not be read (outside the runs folder, a symlink loop, not a regular file)."""

    name: str
    path: Path
    stamps: dict = field(default_factory=dict)
    problems: dict = field(default_factory=dict)
    root: Path | None = None  # the runs folder the files were checked against

    @property
    def key(self) -> tuple:
        """Everything the caches of this run depend on: any file rewritten, every entry is new."""
        return (str(self.path), tuple(sorted(self.stamps.items())), tuple(sorted(self.problems.items())))

    def check(self, filename: str) -> None:
        """Raise the file's problem as a UserError, if it has one."""
        if filename in self.problems:
            raise UserError(self.problems[filename])


def run_files(root: Path, name: str, known) -> RunFiles:
    """Stat the files of run `name` (each checked as the module docstring says)."""
    return folder_files(root, run_dir(root, name, known), name)


def folder_files(root: Path, folder: Path, name: str = "") -> RunFiles:
    """Stat the files of the run folder `folder` under `root` (each checked as the module docstring says)."""
    folder = inside(root, folder)
    stamps, problems = {}, {}
    for filename in FILES:
        path = folder / filename
        if not os.path.lexists(path):
            continue
        try:
            real = inside(root, path)
            s = os.stat(real)
            if not stat.S_ISREG(s.st_mode):
                raise UserError(f"{path} is not a regular file; the dashboard does not read it")
            stamps[filename] = (s.st_mtime_ns, s.st_size, s.st_ino)
        except UserError as e:
            problems[filename] = str(e)
        except OSError as e:
            problems[filename] = f"{path} cannot be read ({short_reason(e)})"
    return RunFiles(name or folder.name, folder, stamps, problems, root)
