"""`cskd prepare NAME --from PATH [PATH ...]`: one of the paper's data sets from its publisher's files into the
`DATA_ROOT/NAME/train/<class>/`, `DATA_ROOT/NAME/test/<class>/` layout `cskd train` reads, checked.

PATH is an official archive, the folder it was extracted to, a plain split file (MIT67's TrainImages.txt,
Dogs' train_list.mat), or a folder holding such files; nothing is downloaded. The split is the publisher's
(cskd.data.prepare.sets). Everything is written into a temporary folder `DATA_ROOT/.NAME.prepare-<random>` that is
renamed to `DATA_ROOT/NAME` only once complete and verified, so an interrupted prepare leaves nothing
`cskd train` would read; a lock file `DATA_ROOT/.NAME.prepare.lock` keeps two prepares of one data set apart
and tells a live temporary folder from one a killed prepare left (removed by the next run).

`DATA_ROOT/NAME/prepared.json` (read_prepared) records what was prepared:
- `name`, `format` (1), `cskd_version`;
- `counts` {"train", "test"}: images per split as `cskd train` counts them (files with an image extension
  in the class folders); `classes`: the number of class folders (the same in both splits);
- `partial`: the counts differ from the official ones (only possible with `--allow-partial`, recorded in
  `allow_partial`); `files`: "copies" (extracted from archives, or copied), "hard links", or both;
- `sources`: per file or folder used, `name`, `kind` (archive, file or folder), `size` (bytes; of a folder,
  its files together) and `sha256` (of a file its contents; of a folder its listing, see
  cskd.data.prepare.archives).
A folder holding a valid record was written by prepare; any other existing `DATA_ROOT/NAME` is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cskd import __version__
from cskd.data.catalog import OFFICIAL
from cskd.data.image_files import IMAGE_EXTENSIONS
from cskd.data.prepare import sets as sets
from cskd.data.prepare.archives import extract, file_digests, folder_listing, place
from cskd.data.prepare.record import FORMAT, RECORD, SPLITS, read_prepared
from cskd.data.prepare.sets import SETS, DataSet, Found, Part
from cskd.errors import UserError, choose
from cskd.runfolder.store import fresh_folder_next_to


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `cskd prepare`."""
    parser.add_argument("name", metavar="NAME", choices=tuple(SETS), help=f"one of: {', '.join(SETS)}")
    parser.add_argument("--from", dest="sources", nargs="+", required=True, metavar="PATH",
                        help="the official archive(s), the folder(s) they were extracted to, or a folder holding them")
    parser.add_argument("--data-root", default="data", help="folder that receives NAME/train and NAME/test (data)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="accept counts that differ from the official ones (recorded in prepared.json)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="force the progress bars on/off (default: on a terminal only)")


@dataclass
class Result:
    """What prepare() did: `record` is the target's prepared.json; `noop`: it was already there."""

    target: Path
    record: dict
    noop: bool = False
    stale_removed: int = 0

    def summary(self) -> str:
        r, sources = self.record, ", ".join(s["name"] for s in self.record["sources"])
        counts = f"train {r['counts']['train']:,} and test {r['counts']['test']:,} images, {r['classes']:,} classes"
        stale = f"\nremoved {self.stale_removed} stale temporary folder(s) of an interrupted prepare" \
            if self.stale_removed else ""
        if self.noop:
            return f"{self.target} is already prepared from {sources} ({counts}); nothing to do{stale}"
        official = OFFICIAL[r["name"]]
        check = (f"PARTIAL: the official split has train {official['train']:,} and test {official['test']:,} "
                 f"images, {official['classes']:,} classes" if r["partial"] else "the official counts")
        return (f"prepared {r['name']} into {self.target}: {counts} ({check})\n"
                f"files: {r['files']}, from {sources}; record: {self.target / RECORD}{stale}")


def cmd_prepare(args) -> int:
    """`cskd prepare`: prepare, then print the counts, the class count and how the files were written."""
    result = prepare(args.name, args.sources, data_root=args.data_root, allow_partial=args.allow_partial,
                     progress=args.progress)
    print(result.summary())
    return 0


def prepare(name: str, sources: list[str], *, data_root: str = "data", allow_partial: bool = False,
            progress: bool | None = None) -> Result:
    """Prepare data set `name` from `sources` into `data_root/name` (see the module docstring)."""
    ds = choose("data set", name, SETS)
    if not str(data_root).strip():
        raise UserError("--data-root is empty; give a folder path")
    given = resolve_sources(ds, sources)
    used = {g.path: g.kind for g in given.values()}  # every file or folder used, once, in --from order
    root = Path(data_root)
    if root.exists() and not root.is_dir():
        raise UserError(f"--data-root {root} is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    with _lock(root, name):
        stale = _remove_stale(root, name)
        if target.exists() or target.is_symlink():
            return Result(target, _already_prepared(target, ds, used, allow_partial), noop=True, stale_removed=stale)
        records, md5 = {}, {}
        for path, kind in used.items():
            records[path], md5[path] = _describe(path, kind, root, progress, md5=ds.plan is None)
        tmp = fresh_folder_next_to(target, "prepare")
        try:
            if ds.plan is None:
                classes = sets.build_imagenet({k: g.path for k, g in given.items()},
                                              {k: md5[g.path] for k, g in given.items()}, tmp, progress)
                for split in SPLITS:  # every class gets a folder in both splits, as for the other sets
                    for cls in classes:
                        (tmp / split / cls).mkdir(parents=True, exist_ok=True)
                files = "copies"
            else:
                classes, files = _build(ds, given, tmp, allow_partial, progress)
            counts = _verify(ds.name, tmp, classes, allow_partial)
            record = {"format": FORMAT, "name": ds.name, "cskd_version": __version__,
                      "counts": {s: counts[s] for s in SPLITS}, "classes": counts["classes"],
                      "partial": counts != OFFICIAL[ds.name], "allow_partial": allow_partial, "files": files,
                      "sources": list(records.values())}
            (tmp / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
            os.rename(tmp, target)  # same folder, so atomic: the data set appears complete or not at all
        except BaseException:  # KeyboardInterrupt too: nothing half-written stays behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return Result(target, record, stale_removed=stale)


# --- which --from path is which part --------------------------------------------------------------------------


@dataclass(frozen=True)
class Given:
    """A part as the user gave it: an archive to extract, a folder holding the part's files (`path` is where its
    marker was found), or one plain file."""

    kind: str  # "archive" | "folder" | "file"
    path: Path


def _expected(ds: DataSet) -> str:
    return ", ".join(dict.fromkeys(p.what for p in ds.parts))


def _parts_in(ds: DataSet, p: Path) -> dict[str, Given]:
    """The parts of `ds` that path `p` provides."""
    hits: dict[str, Given] = {}
    if p.is_file():
        for part in ds.parts:
            if part.archive == p.name:
                hits[part.key] = Given("archive", p)
            elif part.single and part.marker == p.name:
                hits[part.key] = Given("file", p)
        return hits
    for part in ds.parts:
        if part.archive and (p / part.archive).is_file():
            hits[part.key] = Given("archive", p / part.archive)
        if part.marker is None:
            continue
        for root in [p / top for top in part.tops if top] + [p]:  # the folder extracted into, or the top itself
            if (root / part.marker).exists():
                found = Given("file", root / part.marker) if part.single else Given("folder", root)
                if part.key in hits and hits[part.key] != found:
                    raise UserError(f"{p} holds both {hits[part.key].path.name} and its extracted files; "
                                    f"pass one of them with --from")
                hits[part.key] = found
                break
    return hits


def _owner(name: str) -> DataSet | None:
    """The data set one of whose official file names is `name`."""
    for ds in SETS.values():
        if any(name in (part.archive, part.marker if part.single else None) for part in ds.parts):
            return ds
    return None


def resolve_sources(ds: DataSet, paths: list[str]) -> dict[str, Given]:
    """{part key: Given} for every part of `ds`; a UserError naming the path for an unknown, doubled or
    missing one."""
    given: dict[str, Given] = {}
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise UserError(f"--from {raw}: no such file or folder")
        hits = _parts_in(ds, p)
        if not hits:
            other = _owner(p.name) if p.is_file() else None
            whose = f"a file of {other.title}, not of {ds.title}" if other and other is not ds \
                else f"not a file of {ds.title} cskd prepare knows" if p.is_file() \
                else f"a folder without any file of {ds.title} cskd prepare knows"
            raise UserError(f"{p} is {whose}; {ds.name} needs {_expected(ds)}")
        for key, g in hits.items():
            if key in given and given[key] != g:
                raise UserError(f"{ds.name}: {given[key].path} and {g.path} both provide "
                                f"{next(q.what for q in ds.parts if q.key == key)}; pass one of them")
            given[key] = g
    for part in ds.parts:
        if part.key not in given:
            raise UserError(f"{ds.name} needs {part.what} as well; add it to --from")
    return given


# --- the target folder, the lock and the record ---------------------------------------------------------------


@contextmanager
def _lock(root: Path, name: str) -> Iterator[None]:
    """Hold `root/.NAME.prepare.lock` (flock, released by the kernel if the process dies) for the duration."""
    import fcntl

    path = root / f".{name}.prepare.lock"
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another cskd prepare of {name} is running in {root} (it holds {path}); "
                            f"wait for it to end") from None
        except OSError:  # a file system without locks: proceed unlocked
            pass
        yield


def _remove_stale(root: Path, name: str) -> int:
    """Remove the temporary folders of earlier prepares of `name`: under the lock, none is alive."""
    stale = [p for p in root.glob(f".{name}.prepare-*") if p.is_dir() and not p.is_symlink()]
    for p in stale:
        shutil.rmtree(p)
    return len(stale)


def _describe(path: Path, kind: str, root: Path, progress: bool | None, md5: bool = False) -> tuple[dict, str | None]:
    """(the source's record: name, kind, size, sha256; its MD5 when asked). `root`: the data root, left out of a
    source folder that holds it (what prepare writes must not change the source's size)."""
    if kind == "folder":
        size, digest = folder_listing(path, exclude=root)
        return {"name": path.resolve().name, "kind": kind, "size": size, "sha256": digest}, None
    d = file_digests(path, md5=md5, progress=progress)
    return {"name": path.name, "kind": kind, "size": path.stat().st_size, "sha256": d["sha256"]}, d.get("md5")


def _size(path: Path, kind: str, root: Path) -> int:
    return folder_listing(path, exclude=root)[0] if kind == "folder" else path.stat().st_size


def _already_prepared(target: Path, ds: DataSet, used: dict[Path, str], allow_partial: bool) -> dict:
    """The record of `target` when it is a complete copy prepared from the same sources (compared by name and
    size, without reading them again); a UserError otherwise, and the folder is left as it is."""
    try:
        rec = read_prepared(target) if target.is_dir() and not target.is_symlink() else None
    except UserError:
        rec = None
    if rec is None or rec["name"] != ds.name:
        raise UserError(f"{target} exists and was not written by cskd prepare (no valid {RECORD}); it is left "
                        f"untouched: move it away or choose another --data-root")
    now = sorted((p.name if k != "folder" else p.resolve().name, _size(p, k, target.parent)) for p, k in used.items())
    if now != sorted((s["name"], s["size"]) for s in rec["sources"]):
        names = ", ".join(s["name"] for s in rec["sources"])
        raise UserError(f"{target} was prepared from other files ({names}); delete it to prepare it from these")
    for split in SPLITS:
        folder = target / split
        n = sum(1 for e in os.scandir(folder) if e.is_dir()) if folder.is_dir() else 0
        if n != rec["classes"]:
            raise UserError(f"{folder} holds {n} class folders, not the {rec['classes']} {RECORD} records; "
                            f"delete {target} and prepare it again")
    if rec["partial"] and not allow_partial:
        raise UserError(f"{target} is a partial copy (train {rec['counts']['train']:,}, test "
                        f"{rec['counts']['test']:,} images, {rec['classes']} classes); pass --allow-partial to "
                        f"accept it, or delete it and prepare it from complete files")
    return rec


# --- building and checking ------------------------------------------------------------------------------------


def _member_filter(parts: list[Part]):
    """keep(member name) for an archive that provides `parts`: below one of a part's tops, kept by that part."""
    def keep(name: str) -> bool:
        for part in parts:
            for top in part.tops:
                if not top or name.startswith(top + "/"):
                    if part.keep(name[len(top) + 1:] if top else name):
                        return True
        return False
    return keep


def _locate(part: Part, dest: Path, archive: Path) -> Found:
    """Where `part` lies in the folder its archive was extracted to."""
    for top in part.tops:
        root = dest / top if top else dest
        if (root / part.marker).exists():
            return Found(root, str(archive), f"{top}/" if top else "", staged=True)
    top = f"{part.tops[0]}/" if part.tops[0] else ""
    raise UserError(f"{archive} has no {top}{part.marker}; it is not the official {part.archive}")


def _build(ds: DataSet, given: dict[str, Given], tmp: Path, allow_partial: bool,
           progress: bool | None) -> tuple[list[str], str]:
    """Extract the archives, plan the split and place every image in tmp/<split>/<class>/; (classes, files)."""
    staging = tmp / ".unpacked"
    found: dict[str, Found] = {}
    archives = list(dict.fromkeys(g.path for g in given.values() if g.kind == "archive"))
    for i, archive in enumerate(archives):
        parts = [part for part in ds.parts if given[part.key] == Given("archive", archive)]
        extract(archive, staging / str(i), _member_filter(parts), progress=progress)
        found.update({part.key: _locate(part, staging / str(i), archive) for part in parts})
    for key, g in given.items():
        if g.kind != "archive":
            root = g.path.parent if g.kind == "file" else g.path
            found[key] = Found(root, str(root))
    plan = ds.plan(found)
    if plan.missing and not allow_partial:
        listing, label, first = plan.missing[0]
        n = sum(1 for m in plan.missing if m[0] == listing)
        raise UserError(f"{n:,} image(s) that {listing} lists are missing from {label}, e.g. {first} (a truncated "
                        f"download? --allow-partial prepares without them)")
    files = place(plan.items, plan.classes, tmp, SPLITS, progress)
    shutil.rmtree(staging, ignore_errors=True)
    return plan.classes, files


def _count_images(folder: Path) -> int:
    """Images below `folder` as `cskd train` counts them (cskd.data.sets: files with an image extension)."""
    return sum(1 for _, _, names in os.walk(folder) for n in names if n.lower().endswith(IMAGE_EXTENSIONS))


def _verify(name: str, tmp: Path, classes: list[str], allow_partial: bool) -> dict[str, int]:
    """Count what was written; {"train", "test", "classes"}. Class folders must equal `classes` in both splits;
    counts that differ from the official ones are a UserError naming the split and both counts, unless
    `allow_partial`."""
    counts = {}
    for split in SPLITS:
        folders = sorted(e.name for e in os.scandir(tmp / split) if e.is_dir())
        if folders != sorted(classes):
            raise RuntimeError(f"{name}: the {split} class folders differ from the planned classes")  # a bug
        counts[split] = _count_images(tmp / split)
    counts["classes"] = len(classes)
    official = OFFICIAL[name]
    wrong = [f"the {k} split has {counts[k]:,} images, the official one {official[k]:,}" for k in SPLITS
             if counts[k] != official[k]]
    if counts["classes"] != official["classes"]:
        wrong.append(f"there are {counts['classes']:,} classes, officially {official['classes']:,}")
    if wrong and not allow_partial:
        raise UserError(f"{name}: {'; '.join(wrong)} (--allow-partial keeps such a copy and records it)")
    return counts
