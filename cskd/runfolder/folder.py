"""RunFolder: one run folder as a place — its path, its writer lock, its manifest, which of its
files are cskd's — and the one door through which every file is written. The readers and writers
of each kind of file take a RunFolder: config_file, run_config, training_log, checkpoints,
predictions, derived (which do not import this module: they sit below it in the import graph).

Reading needs no lock: every file is replaced atomically, so a reader sees a whole old or a whole
new version. Writing happens only inside `with folder.writing():`, which holds the folder's lock,
removes temporary files a killed writer left, and refuses to replace a file cskd did not write.
A file is cskd's when the folder's manifest records it (cskd.runfolder.store.Manifest); a file
without a manifest entry is not cskd's, whatever it holds.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from cskd.errors import UserError
from cskd.runfolder.layout import MARKERS, is_cskd_name
from cskd.runfolder.store import (
    MANIFEST_NAME,
    META_DIR,
    FileRecord,
    FolderLock,
    Manifest,
    record_of,
    remove_stale_temps,
)


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
        """Whether `name` is absent or a file cskd wrote here (its manifest entry matches it)."""
        m = manifest or self.manifest()
        return not os.path.lexists(self.path / name) or m.matching(name) is not None

    def recorded_sha256(self, name: str) -> str | None:
        """SHA-256 of cskd's file `name` as written (from the manifest), or None when unknown."""
        rec = self.manifest().matching(name)
        return rec.sha256 if rec is not None else None

    def foreign_files(self) -> list[str]:
        m = self.manifest()
        return [n for n in self.cskd_names() if not self.owns(n, m)]

    def holds_run(self) -> bool:
        m = self.manifest()
        return self.path.is_dir() and any((self.path / n).exists() and self.owns(n, m) for n in MARKERS)

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def writing(self, command: str | None = None) -> Iterator[RunFolder]:
        """Hold the folder's writer lock (creating the folder) and clean up after killed writers;
        every write happens in here."""
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
        """The body of writing() under the lock: load the manifest (re-recording files copied with
        new times), remove stale temporary files."""
        if outermost:
            m = Manifest(self.path)
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

    def write(self, name: str, writer) -> FileRecord:
        """Replace cskd's file `name` atomically with what `writer(f)` writes, and record it (inside
        writing(); a file cskd did not write is refused)."""
        if self._manifest is None:
            raise RuntimeError(f"write of {name} outside RunFolder.writing()")
        return self._manifest.write(name, writer)

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

