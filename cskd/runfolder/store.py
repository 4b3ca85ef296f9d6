"""Writing into a folder safely: atomic replacement, the user's umask, one writer at a time, and
the marks by which cskd recognises the files it wrote.

- `atomic_write` writes a temporary file next to the target (`.<name>.<random>.tmp`), fsyncs it,
  then renames it over the target: a reader sees the old file or the new one, never half of one.
  A full disk is a one-line `UserError` naming the file and the free space; the old file stays.
- `FolderLock` is an OS lock (flock) on `<folder>/.cskd/lock`, held by every command that writes
  into a run folder. It dies with its process (no stale lock after kill -9); a second writer gets
  a one-line error naming the holder's PID and command.
- `Manifest` (`<folder>/.cskd/manifest.json`) records every file cskd wrote: its size, mtime and
  SHA-256. A file is cskd's own when its size and mtime match the current or the previous record
  (the previous one covers a kill between recording and renaming), or, after a copy that changed
  the times, when its SHA-256 matches. Anything else under one of cskd's names is foreign: cskd
  never overwrites or deletes it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from cskd.errors import UserError

META_DIR = ".cskd"  # per-folder bookkeeping: the lock and the manifest
LOCK_NAME = "lock"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
TEMP_SUFFIX = ".tmp"
_HASH_CHUNK = 8 << 20


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Permissions of a new file under the process's umask (mkstemp alone would give 0600)."""
    return 0o666 & ~_current_umask()


def fresh_folder_next_to(target: Path, tag: str) -> Path:
    """A new empty hidden folder `.<target name>.<tag>-<random>` beside `target`, with the
    permissions a folder gets under the process's umask (mkdtemp alone would give 0700)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.{tag}-", dir=target.parent))
    os.chmod(folder, 0o777 & ~_current_umask())
    return folder


@contextlib.contextmanager
def replaced_as_a_whole(target: Path):
    """Yield a fresh folder beside `target`; when the block succeeds it takes the place of `target`
    (the old one is removed), and when it fails it is removed and `target` stays as it was."""
    target = Path(target)
    new = fresh_folder_next_to(target, "new")
    try:
        yield new
        old = None
        if target.exists():
            old = fresh_folder_next_to(target, "old")
            os.replace(target, old / "previous")
        try:
            os.replace(new, target)
        except OSError:
            if old is not None:  # put the previous one back
                os.replace(old / "previous", target)
                old.rmdir()
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if new.exists():
            shutil.rmtree(new, ignore_errors=True)


@dataclass(frozen=True)
class FileRecord:
    """What the manifest remembers of one written file."""

    size: int
    mtime_ns: int
    sha256: str


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def record_of(path: Path, sha256: str | None = None) -> FileRecord:
    st = os.stat(path)
    return FileRecord(st.st_size, st.st_mtime_ns, sha256 or sha256_of(path))


def _is_disk_full(e: BaseException | None) -> bool:
    """Whether `e`, or an exception it was raised from or during, is a full disk or quota. Writers
    such as torch.save turn the OSError into a RuntimeError of their own."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        e = e.__cause__ or e.__context__
    return False


def disk_full_error(path: Path) -> UserError:
    try:
        free = shutil.disk_usage(Path(path).parent).free
        left = f"{free / 2**20:.1f} MiB free"
    except OSError:
        left = "free space unknown"
    return UserError(f"no space left to write {path} ({left}); free some space or write elsewhere — "
                     f"the previous version of the file is intact")


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def atomic_write(path: Path, write, *, hashed: bool = True, before_replace=None) -> FileRecord | None:
    """Call `write(fileobj)` on a temporary file next to `path`, fsync it, rename it over `path`.

    Returns the new file's FileRecord (SHA-256 read back from the page cache) or None when not
    `hashed`. `before_replace(record)` runs between the two (a rename keeps size and mtime, so the
    record already describes the final file): the manifest notes the new file before it exists
    under its name. The temporary file is removed on every way out (exceptions, KeyboardInterrupt and
    the SystemExit that the CLI raises on SIGTERM); a SIGKILL leaves it behind for
    `remove_stale_temps`. A full disk becomes a one-line UserError."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        record = record_of(Path(tmp)) if hashed or before_replace else None
        if before_replace is not None:
            before_replace(record)
        os.replace(tmp, path)
        return record
    except Exception as e:
        if _is_disk_full(e):
            raise disk_full_error(path) from None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def remove_stale_temps(folder: Path, is_ours) -> list[str]:
    """Delete the temporary files (`.<name>.<random>.tmp`) whose `name` satisfies `is_ours`, left
    by a killed writer. Call it only while holding the folder's lock: then no live writer owns them."""
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder):
            if entry.is_file() and is_temp_name(entry.name) and \
                    is_ours(entry.name[1:-len(TEMP_SUFFIX)].rsplit(".", 1)[0]):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                removed.append(entry.name)
    return removed


# Locks this process holds: folder (resolved) -> [fd, depth]. flock locks belong to an open file
# description, so a second flock in the same process on a new descriptor would block on itself.
_held: dict[str, list] = {}


class FolderLock:
    """Exclusive writer lock of `folder` (created if needed). Re-entrant within one process.

    By default a held lock is a one-line UserError naming the holder; `wait=True` waits for it
    instead (a shared cache that another process is building: once it is built, it is reused).
    `what` names the folder in the error ("run folder", "decode cache", ...)."""

    def __init__(self, folder: Path, command: str | None = None, *, wait: bool = False, what: str = "run folder"):
        self.folder = Path(folder)
        self.command = command or " ".join(["cskd", *sys.argv[1:]])[:200]
        self.wait, self.what = wait, what
        self.key = ""

    def __enter__(self) -> FolderLock:
        meta = self.folder / META_DIR
        meta.mkdir(parents=True, exist_ok=True)
        self.key = str(meta.resolve())
        if self.key in _held:
            _held[self.key][1] += 1
            return self
        fd = os.open(meta / LOCK_NAME, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if self.wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 400, 0).decode("utf-8", errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"{self.folder} is being written by {holder}; wait until it ends or stop it "
                            f"(two writers would corrupt the {self.what})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} ({self.command})\n".encode(), 0)
        _held[self.key] = [fd, 1]
        return self

    def __exit__(self, *exc) -> None:
        entry = _held.get(self.key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _held[self.key]
            os.ftruncate(entry[0], 0)
            os.close(entry[0])  # closing the descriptor releases the flock


def _valid_entry(entry) -> bool:
    """{"current": record, "previous": record or None}, a record being {size, mtime_ns, sha256}."""
    def record(r):
        return isinstance(r, dict) and set(r) == {"size", "mtime_ns", "sha256"} and \
            all(isinstance(r[k], int) and not isinstance(r[k], bool) for k in ("size", "mtime_ns")) and \
            isinstance(r["sha256"], str)
    return isinstance(entry, dict) and record(entry.get("current")) and \
        (entry.get("previous") is None or record(entry.get("previous")))


class Manifest:
    """The record of the files cskd wrote into one folder (see the module docstring). A damaged
    manifest (unreadable, or an entry of the wrong shape) counts as absent: nothing is known to be
    cskd's."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / META_DIR / MANIFEST_NAME
        self.entries: dict[str, dict] = {}
        self.readable = True
        try:
            data = json.loads(self.path.read_text())
            if data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("files"), dict) or \
                    not all(_valid_entry(e) for e in data["files"].values()):
                raise ValueError("unknown manifest format")
            self.entries = data["files"]
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError):
            self.readable = False  # damaged: nothing is known to be ours

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda f: f.write(json.dumps({"format": MANIFEST_FORMAT, "files": self.entries},
                                                              indent=1, sort_keys=True).encode()), hashed=False)

    def matching(self, name: str) -> FileRecord | None:
        """The record that describes the file `name` as it is on disk now, or None."""
        path = self.folder / name
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        candidates = [FileRecord(**r) for r in (self.entries.get(name) or {}).values() if r]
        # (entries were validated on load; a stale time after a copy is matched by content below)
        for r in candidates:
            if (r.size, r.mtime_ns) == (st.st_size, st.st_mtime_ns):
                return r
        same_size = [r for r in candidates if r.size == st.st_size]
        if same_size:  # copied without its times: the content decides
            digest = sha256_of(path)
            for r in same_size:
                if r.sha256 == digest:
                    return r
        return None

    def owns(self, name: str) -> bool:
        """True when `name` is absent (nothing to protect) or is a file cskd wrote there."""
        return not (self.folder / name).exists() or self.matching(name) is not None

    def write(self, name: str, writer, *, instead: str = "use another folder") -> FileRecord:
        """Replace `name` atomically with what `writer(f)` writes and record it here; a file there that
        cskd did not write is refused in one line (`instead`: what the user can do). The caller holds
        the folder's lock."""
        if not self.owns(name):
            raise UserError(f"{self.folder / name} was not written by cskd (or was changed since); cskd never "
                            f"replaces such a file: move it away, or {instead}")
        return atomic_write(self.folder / name, writer, before_replace=lambda rec: self.record(name, rec))

    def record(self, name: str, rec: FileRecord) -> None:
        """Remember `rec` as the current version of `name`; the one before stays acceptable, so a
        kill between this call and the rename that puts the new file in place loses nothing."""
        old = (self.entries.get(name) or {}).get("current")
        self.entries[name] = {"current": asdict(rec), "previous": old}
        self._save()

    def forget(self, name: str) -> None:
        if self.entries.pop(name, None) is not None:
            self._save()
