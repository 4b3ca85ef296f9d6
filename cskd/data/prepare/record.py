"""`DATA_ROOT/NAME/prepared.json`: the record `cskd prepare` leaves in a data set folder it made
(what was prepared, from which sources), and its validated reader. The format is described in
cskd.data.prepare.command's docstring.
"""

from __future__ import annotations

import json
from pathlib import Path

from cskd.data.catalog import OFFICIAL
from cskd.errors import UserError, short_reason

RECORD = "prepared.json"
FORMAT = 1
SPLITS = ("train", "test")


def read_prepared(folder: Path) -> dict | None:
    """The record `folder/prepared.json` of a prepared data set folder (see the module docstring), validated;
    None when there is none; a UserError naming the file when it is damaged."""
    path = Path(folder) / RECORD
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is damaged ({short_reason(e)})") from None

    def count(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    def source(s) -> bool:
        return (isinstance(s, dict) and isinstance(s.get("name"), str)
                and s.get("kind") in ("archive", "file", "folder") and count(s.get("size"))
                and isinstance(s.get("sha256"), str) and len(s["sha256"]) == 64)

    ok = (isinstance(rec, dict) and rec.get("format") == FORMAT and rec.get("name") in OFFICIAL
          and isinstance(rec.get("cskd_version"), str) and isinstance(rec.get("counts"), dict)
          and all(count(rec["counts"].get(s)) for s in SPLITS) and count(rec.get("classes"))
          and isinstance(rec.get("partial"), bool) and isinstance(rec.get("allow_partial"), bool)
          and isinstance(rec.get("files"), str) and isinstance(rec.get("sources"), list) and rec["sources"]
          and all(source(s) for s in rec["sources"]))
    if not ok:
        raise UserError(f"{path} is not a record cskd prepare wrote (fields missing or of the wrong type)")
    keys = ("format", "name", "cskd_version", "counts", "classes", "partial", "allow_partial", "files", "sources")
    return {k: rec[k] for k in keys}
