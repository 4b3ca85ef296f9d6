"""The training log: metrics.jsonl (one JSON object per finished epoch, "epoch" 1-based) and
summary.json (written when training ends), with their writers and validated readers. `folder`
is a cskd.runfolder.folder.RunFolder.
"""

from __future__ import annotations

import json
import math

from cskd.errors import UserError, short_reason
from cskd.runfolder.config_file import RETRAIN, read_run_id
from cskd.runfolder.formats import SUMMARY_FORMAT, format_problem, json_writer
from cskd.runfolder.layout import METRICS, SUMMARY


def read_summary(folder) -> dict | None:
    """summary.json with checked types, or None when the run has none."""
    path = folder.file(SUMMARY)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not valid JSON ({short_reason(e)}); the run folder is damaged") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a JSON object; the run folder is damaged")
    problem = format_problem(path, data.get("format"), SUMMARY_FORMAT, fix=RETRAIN)
    if problem:
        raise UserError(problem)
    for key in ("best_acc", "test_acc", "test_loss", "train_seconds"):
        v = data.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise UserError(f"{path}: {key} is {v!r}, not a number; the run folder is damaged")
    for key in ("best_epoch", "test_n"):
        v = data.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise UserError(f"{path}: {key} is {v!r}, not an integer; the run folder is damaged")
    if data.get("selected_on") not in (None, "val", "test"):
        raise UserError(f"{path}: selected_on is {data['selected_on']!r}; the run folder is damaged")
    return data


def finished_summary(folder) -> dict | None:
    """summary.json of a finished run of cskd's held here, or None (no run, or not finished)."""
    summary = read_summary(folder) if folder.holds_run() else None
    return summary if summary and summary.get("finished") else None


def write_summary(folder, summary: dict) -> None:
    folder.write(SUMMARY, json_writer({"format": SUMMARY_FORMAT, "run_id": read_run_id(folder), **summary}))


def read_metrics(folder) -> list[dict]:
    """The per-epoch records of metrics.jsonl: JSON objects with an integer "epoch" (1-based).
    Other lines (damage) are skipped."""
    path = folder.file(METRICS)
    if not path.is_file():
        return []
    records = []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            records.append(record)
    return records


def write_metrics(folder, records: list[dict]) -> None:
    """Replace metrics.jsonl with `records` (one JSON object per line), atomically: rewriting the
    whole log each epoch costs little and never leaves a torn line."""
    folder.write(METRICS, lambda f: f.write("".join(json.dumps(r) + "\n" for r in records).encode()))
