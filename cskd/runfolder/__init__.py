"""The run folder: the one place that names, writes and reads every file of a run.

Format reference (every file, its fields and its format version): docs/run-folder.md.

Module map:
  folder        RunFolder: the folder, its writer lock (`writing()`), manifest and ownership;
                `write()` is the one door every file goes through
  config_file   config.json, the run's record and id: write_config, read_record, read_run_id, is_imported
  run_config    the TrainConfig it describes: read_config, read_config_dict, config_from_record
  training_log  summary.json and metrics.jsonl: write/read_summary, finished_summary, write/read_metrics
  checkpoints   last.pt, best.pt: save_checkpoint, read_checkpoint
  predictions   predictions-<split>.npz: Predictions, write/read_predictions, predictions_status
  derived       tsne-/stats-<split>.npz: write/read_derived, read_tsne, unsaved_derived
  formats       each file kind's one format version, and the one refusal of any other
  layout        the files' names
  store         atomic writes, the lock, the manifest
  npz           lazily readable npz
  run_names     run folder names
  provenance    the source tree's git commit (recorded in config.json's meta)
"""

from cskd.runfolder.checkpoints import (
    BEST_FIELDS,
    LAST_FIELDS,
    load_model_state,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cskd.runfolder.config_file import is_imported, read_record, read_run_id, write_config
from cskd.runfolder.derived import read_derived, read_tsne, write_derived
from cskd.runfolder.folder import RunFolder
from cskd.runfolder.formats import (
    CHECKPOINT_FORMAT,
    CONFIG_FORMAT,
    DERIVED_FORMAT,
    PREDICTIONS_FORMAT,
    SUMMARY_FORMAT,
)
from cskd.runfolder.layout import (
    BEST,
    CONFIG,
    LAST,
    MARKERS,
    METRICS,
    SPLITS,
    SUMMARY,
    predictions_name,
    stats_name,
    tsne_name,
)
from cskd.runfolder.predictions import (
    Predictions,
    predictions_status,
    read_predictions,
    write_predictions,
)
from cskd.runfolder.run_config import config_from_record, read_config, read_config_dict
from cskd.runfolder.store import atomic_write
from cskd.runfolder.training_log import (
    finished_summary,
    read_metrics,
    read_summary,
    write_metrics,
    write_summary,
)

__all__ = [
    "CONFIG_FORMAT", "CHECKPOINT_FORMAT", "PREDICTIONS_FORMAT", "DERIVED_FORMAT", "SUMMARY_FORMAT", "SPLITS",
    "RunFolder", "Predictions", "predictions_name", "tsne_name", "stats_name",
    "BEST_FIELDS", "LAST_FIELDS", "load_model_state", "rng_state", "set_rng_state", "atomic_write",
    "CONFIG", "METRICS", "SUMMARY", "LAST", "BEST", "MARKERS",
    "write_config", "read_record", "read_config", "read_config_dict", "read_run_id", "is_imported",
    "config_from_record", "write_summary", "read_summary", "finished_summary", "write_metrics", "read_metrics",
    "save_checkpoint", "read_checkpoint", "write_predictions", "read_predictions",
    "predictions_status", "write_derived", "read_derived", "read_tsne",
]
