"""The settings a run folder records: the TrainConfig of a trained run (from config.json, or the
config dict inside a checkpoint), or the dataset/model/method an import named. `folder` is a
cskd.runfolder.folder.RunFolder.
"""

from __future__ import annotations

from pathlib import Path

from cskd.config import TrainConfig, validate
from cskd.errors import UserError, short_reason
from cskd.runfolder.config_file import read_record
from cskd.runfolder.layout import CONFIG


def read_config(folder) -> TrainConfig:
    """The run's TrainConfig (a trained run's only: an import has none)."""
    record = read_record(folder)
    if record["kind"] != "trained":
        raise UserError(f"{folder.path} holds imported predictions, not a trained run: it has no model to "
                        f"evaluate or train")
    return config_from_record(record["config"], folder.file(CONFIG), fix="the run folder is damaged")


def read_config_dict(folder) -> dict:
    """The run's settings as a plain dict (for tables): a trained run's TrainConfig, or the
    dataset/model/method an import named."""
    record = read_record(folder)
    if record["kind"] == "trained":
        return read_config(folder).to_dict()
    cfg = record["config"]
    if not all(isinstance(cfg.get(k), str) for k in ("dataset", "model", "method")):
        raise UserError(f"{folder.file(CONFIG)} of an imported run lacks dataset, model or method")
    return dict(cfg)


def config_from_record(record, path: Path, *, fix: str) -> TrainConfig:
    """The validated TrainConfig of a saved config dict (config.json's, or a checkpoint's, whose
    format its reader checked); anything else is a UserError naming `path`, with `fix` saying what
    to do."""
    try:
        cfg = TrainConfig.from_record(record)
        validate(cfg)
    except (UserError, TypeError, ValueError, KeyError, AttributeError) as e:
        raise UserError(f"{path} holds an invalid config ({short_reason(e)}); {fix}") from None
    return cfg
