"""config.json, the run's record and identity: its writer and its checked reader.

A record is {"format": CONFIG_FORMAT, "kind": "trained" | "imported", "config": dict, "meta": dict};
meta's "run_id" (a fresh id per run) ties the run's other files to it. The TrainConfig the record
describes is read by cskd.runfolder.run_config. `folder` is a cskd.runfolder.folder.RunFolder
(not imported: this module sits below it in the import graph).
"""

from __future__ import annotations

import json
import uuid

from cskd.errors import UserError, short_reason
from cskd.runfolder.formats import CONFIG_FORMAT, format_problem, json_writer
from cskd.runfolder.layout import CONFIG, KINDS

RETRAIN = "train the run again with this cskd"
REIMPORT = "import it again with `cskd import`"


def read_record(folder) -> dict:
    """config.json as {"format", "kind", "config" (dict), "meta" (dict)}, of this cskd's format."""
    path = folder.file(CONFIG)
    if not path.is_file():
        raise UserError(f"{folder.path} is not a cskd run: {path} is missing")
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:  # ValueError: bad JSON, or bytes that are not UTF-8
        raise UserError(f"{path} is not a valid cskd config ({short_reason(e)}); "
                        f"the run folder is damaged") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise UserError(f"{path} is not a cskd config (no config object); the run folder is damaged "
                        f"or the file is not cskd's")
    kind = data.get("kind")
    problem = format_problem(path, data.get("format"), CONFIG_FORMAT, fix=REIMPORT if kind == "imported" else RETRAIN)
    if problem:
        raise UserError(problem)
    if kind not in KINDS:
        raise UserError(f"{path} has an unknown kind ({kind!r}); the run folder is damaged")
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    return {"format": data["format"], "kind": kind, "config": data["config"], "meta": meta}


def read_run_id(folder) -> str | None:
    return read_record(folder)["meta"].get("run_id")


def is_imported(folder) -> bool:
    return read_record(folder)["kind"] == "imported"


def write_config(folder, config: dict, meta: dict, *, kind: str = "trained") -> str:
    """Write config.json for a new run; returns its run id (a fresh one unless `meta` has it)."""
    meta = {**meta, "run_id": meta.get("run_id") or uuid.uuid4().hex}
    folder.write(CONFIG, json_writer({"format": CONFIG_FORMAT, "kind": kind, "config": config, "meta": meta}))
    return meta["run_id"]
