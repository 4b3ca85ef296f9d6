"""File handling for `cskd prepare`: streamed checksums, extraction of the publishers' archives that never writes
outside its target, and placing images (moved, hard linked or copied).

Definitions:
- a *safe* member name is a relative POSIX path without "..", a drive letter or NUL; "./" prefixes and empty
  or "." components are dropped. Any other name is refused (UserError), whatever the member would be.
- only regular files are extracted; directories are created as needed and links, devices and FIFOs are
  skipped, so no member can point outside the target. Where the running Python has `tarfile.data_filter`
  (3.10.12+, 3.11.4+) every extracted tar member also passes it.
- the *listing* digest of a folder is the sha256 of its lines "<relative path>\\t<size>\\n" (sorted, regular
  files only): it says which files a folder held without reading them.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from cskd.errors import UserError, short_reason

CHUNK = 1 << 22  # 4 MiB: large enough that hashing runs at disk speed, small enough to update the bar often
# A streamed archive whose first this-many files include none that is wanted is the wrong file: stop early
# instead of unpacking gigabytes for nothing.
FOREIGN_AFTER = 1000
# gzip, bzip2 and xz signatures: such a tar can only be read as a stream
COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
# What a damaged or foreign archive raises while being read (BadGzipFile is an OSError: listed on its own so
# that other OSErrors, a full disk for one, keep their own message).
ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error,
                  gzip.BadGzipFile, lzma.LZMAError, NotImplementedError)


def progress_bar(total: int, desc: str, progress: bool | None, unit: str = "B") -> tqdm:
    """A tqdm bar on stderr; `progress` None lets tqdm decide (shown on a terminal only)."""
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", unit_divisor=1024 if unit == "B" else 1000,
                disable=None if progress is None else not progress, leave=False, dynamic_ncols=True)


def file_digests(path: Path, *, md5: bool = False, progress: bool | None = None) -> dict[str, str]:
    """{"sha256": hex} (and "md5" when asked) of a file, read once in CHUNK pieces with a progress bar."""
    sha = hashlib.sha256()
    other = hashlib.md5(usedforsecurity=False) if md5 else None
    try:
        with open(path, "rb") as f, progress_bar(path.stat().st_size, f"sha256 {path.name}", progress) as bar:
            while block := f.read(CHUNK):
                sha.update(block)
                if other is not None:
                    other.update(block)
                bar.update(len(block))
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or short_reason(e)}") from None
    return {"sha256": sha.hexdigest(), **({"md5": other.hexdigest()} if other is not None else {})}


def folder_listing(folder: Path, exclude: Path | None = None) -> tuple[int, str]:
    """(total bytes of the regular files under `folder`, their listing digest); symlinked folders are not
    followed, and the folder `exclude` (the data root, when it lies inside a source folder) is left out."""
    lines, total = [], 0
    skip = os.path.realpath(exclude) if exclude is not None else None
    for dirpath, dirnames, names in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if os.path.realpath(os.path.join(dirpath, d)) != skip)
        for name in names:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
                lines.append(f"{os.path.relpath(path, folder).replace(os.sep, '/')}\t{st.st_size}\n")
    return total, hashlib.sha256("".join(sorted(lines)).encode("utf-8", "surrogateescape")).hexdigest()


def safe_relative(name: str, where: str) -> str:
    """`name` as a safe relative POSIX path ("" for the archive's root); UserError naming `where` otherwise."""
    if "\x00" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UserError(f"{where} holds an unsafe path {name!r}; refusing to use it")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UserError(f"{where} holds an unsafe path {name!r}; refusing to use it")
    return "/".join(parts)


def _damaged(archive: Path, e: BaseException) -> UserError:
    return UserError(f"{archive} is damaged or not the expected archive ({short_reason(e)}); download it again")


def extract(archive: Path, dest: Path, keep: Callable[[str], bool], *, progress: bool | None = None,
            label: str | None = None) -> int:
    """Write the regular-file members of `archive` (tar of any compression, or zip) whose safe name passes `keep`
    to `dest/<name>`; returns how many. A damaged archive, or one whose first FOREIGN_AFTER files include none
    that is kept, is a UserError naming `label` (default: the archive's path)."""
    label = label or str(archive)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            return _extract_zip(archive, dest, keep, progress, label)
        return _extract_tar(archive, dest, keep, progress, label)
    except ARCHIVE_ERRORS as e:
        raise _damaged(Path(label), e) from None


def _foreign(label: str, seen: int, example: str) -> UserError:
    return UserError(f"{label} is not the expected archive: none of its first {seen:,} files is one cskd prepare "
                     f"needs (e.g. {example!r})")


def _extract_tar(archive: Path, dest: Path, keep, progress, label) -> int:
    with open(archive, "rb") as raw:
        # A compressed tar is streamed ("r|*"): read member by member with random access, a .tgz would be
        # decompressed from its start again for every member. A plain tar is read directly ("r:"), several
        # times faster than through the stream's small buffer; either way the file is read once, in order.
        compressed = raw.read(6).startswith(COMPRESSED_MAGIC)
        raw.seek(0)
        with tarfile.open(fileobj=raw, mode="r|*" if compressed else "r:") as tar, \
                progress_bar(archive.stat().st_size, f"extract {Path(label).name}", progress) as bar:
            written, seen, example = _extract_members(tar, raw, bar, dest, keep, label)
    if written == 0:
        raise _foreign(label, seen, example or "nothing") if seen else _damaged(Path(label), EOFError("no files"))
    return written


def _extract_members(tar: tarfile.TarFile, raw, bar, dest: Path, keep, label: str) -> tuple[int, int, str]:
    written = seen = 0
    example = ""
    for member in tar:
        bar.update(raw.tell() - bar.n)
        rel = safe_relative(member.name, label)
        if not member.isfile() or not rel:
            continue
        seen += 1
        example = example or rel
        if not keep(rel):
            if written == 0 and seen >= FOREIGN_AFTER:
                raise _foreign(label, seen, example)
            continue
        if hasattr(tarfile, "data_filter"):
            tarfile.data_filter(member, str(dest))  # the standard library's own check, on top of ours
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with tar.extractfile(member) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
        written += 1
    bar.update(raw.tell() - bar.n)
    return written, seen, example


def _extract_zip(archive: Path, dest: Path, keep, progress, label) -> int:
    written = seen = 0
    example = ""
    with zipfile.ZipFile(archive) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        with progress_bar(sum(i.compress_size for i in infos), f"extract {Path(label).name}", progress) as bar:
            for info in infos:
                bar.update(info.compress_size)
                rel = safe_relative(info.filename, label)
                if not rel or (info.external_attr >> 16) & 0o170000 == 0o120000:  # a symlink stored by Unix zip
                    continue
                seen += 1
                example = example or rel
                if not keep(rel):
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:  # the CRC is checked at the end of the read
                    shutil.copyfileobj(src, out, CHUNK)
                written += 1
    if written == 0:
        raise _foreign(label, seen, example or "nothing")
    return written


def _safe_component(name: str, what: str) -> str:
    if not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name or "\x00" in name:
        raise UserError(f"{what} {name!r} cannot be a folder or file name of the prepared data set")
    return name


def place(items: list[tuple[str, str, Path, bool]], classes: list[str], tmp: Path, splits: tuple[str, ...],
          progress: bool | None) -> str:
    """Put every image (split, class, source, staged) at tmp/<split>/<class>/<file name>, with a folder for every
    class in every split: moved when `staged` (extracted by us), else hard linked where the file system allows
    and copied otherwise; returns how ("copies", "hard links" or both)."""
    for split in splits:
        for cls in classes:
            (tmp / split / _safe_component(cls, "class")).mkdir(parents=True, exist_ok=True)
    how = {"linked": 0, "copied": 0}
    first: dict[Path, Path] = {}  # source -> where it went: a source listed twice is linked or copied from there
    with progress_bar(len(items), "place images", progress, unit="img") as bar:
        for split, cls, src, staged in items:
            dst = tmp / split / cls / _safe_component(src.name, "image")
            if dst.exists():
                raise UserError(f"two listed images would both be {split}/{cls}/{src.name}; not the official lists")
            if src in first:
                how[_link_or_copy(first[src], dst)] += 1
            elif staged:
                os.rename(src, dst)
                how["copied"] += 1
            else:
                how[_link_or_copy(src, dst)] += 1
            first.setdefault(src, dst)
            bar.update()
    return " and ".join(k for k, n in (("hard links", how["linked"]), ("copies", how["copied"])) if n) or "copies"


def _link_or_copy(src: Path, dst: Path) -> str:
    try:
        os.link(src, dst)
        return "linked"
    except OSError:  # another file system, no hard links there, or not permitted (protected_hardlinks)
        shutil.copyfile(src, dst)
        return "copied"
