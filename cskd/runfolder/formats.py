"""The format version of each kind of run-folder file, the one rule refusing any other version,
and how cskd's JSON files are encoded. Each kind has exactly one version: this cskd writes it and
reads nothing else (format reference: docs/run-folder.md).

This module imports nothing of cskd (the per-kind readers sit low in the import graph), so
`format_problem` returns the refusal's message and the reader raises it as a UserError.
"""

from __future__ import annotations

import json

CONFIG_FORMAT = 2  # config.json, and the config dict inside a checkpoint
SUMMARY_FORMAT = 2  # summary.json
CHECKPOINT_FORMAT = 2  # last.pt, best.pt
PREDICTIONS_FORMAT = 2  # predictions-<split>.npz
DERIVED_FORMAT = 1  # tsne-<split>.npz, stats-<split>.npz

NEWER_FIX = "read it with the newer cskd that wrote it"


def format_problem(path, found, current: int, *, fix: str, newer_fix: str = NEWER_FIX) -> str | None:
    """None when `found` (the format a file records) is `current`; else the one-line refusal naming
    `path` and both versions, ending in `fix` (an older file) or `newer_fix` (a newer one)."""
    if type(found) is int and found == current:
        return None
    if type(found) is not int:  # absent, or not a number (bool is no version either)
        return (f"{path} records no format version (this cskd reads format {current}): it is damaged or "
                f"not cskd's; {fix}")
    return f"{path} has format {found}; this cskd reads format {current}: {fix if found < current else newer_fix}"


def json_writer(record):
    """A writer for RunFolder.write: `record` as indented JSON with sorted keys and a final newline."""
    return lambda f: f.write((json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
