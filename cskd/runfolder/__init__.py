"""The run folder: the one place that names, writes and reads every file of a run.

Layout (format versions in brackets; a file without one was written by cskd 0.1):

  config.json        [CONFIG_FORMAT 2] {"format", "kind": "trained"|"imported", "config": the
                     TrainConfig as a dict (an import: dataset, model, method), "meta": run_id (a
                     fresh id per run), cskd/torch versions, git commit, creation time, device,
    precision, selection, class names, split sizes, world size, prepared data}
  metrics.jsonl      one JSON object per finished epoch: epoch (1-based), lr, train_loss, train_ce,
    train_reg, train_acc, <split>_acc and <split>_loss of the selection split, seconds
  summary.json       [SUMMARY_FORMAT 2] written when training ends: finished, best_epoch, best_acc,
                     selected_on ("val"|"test"), train_seconds, test_acc/test_loss/test_n of best.pt
  last.pt, best.pt   [CHECKPOINT_FORMAT 2] see cskd.runfolder.checkpoints
  predictions-<split>.npz, tsne-<split>.npz, stats-<split>.npz
                     [PREDICTIONS_FORMAT 2, DERIVED_FORMAT 1] see cskd.runfolder.arrays
  .cskd/lock         the writer lock (see cskd.runfolder.store.FolderLock)
  .cskd/manifest.json  size, mtime and SHA-256 of every file cskd wrote (own-file marks, checksums)

Module map: `layout` (the files' names), `folder` (RunFolder: every file's writer and validated
reader, freshness, ownership), `legacy` (recognising files of folders without a manifest), `store`
(atomic writes, lock, manifest), `checkpoints`, `arrays` (predictions and derived caches), `npz`
(lazily readable npz), `run_names` (run folder names), `provenance`.
"""

from cskd.config import CONFIG_FORMAT
from cskd.runfolder.arrays import DERIVED_FORMAT, PREDICTIONS_FORMAT, Predictions
from cskd.runfolder.checkpoints import (
    BEST_FIELDS,
    CHECKPOINT_FORMAT,
    LAST_FIELDS,
    load_model_state,
    rng_state,
    set_rng_state,
)
from cskd.runfolder.folder import RunFolder, config_from_record
from cskd.runfolder.layout import (
    BEST,
    CONFIG,
    LAST,
    MARKERS,
    METRICS,
    SPLITS,
    SUMMARY,
    SUMMARY_FORMAT,
    predictions_name,
    stats_name,
    tsne_name,
)
from cskd.runfolder.store import atomic_write

__all__ = [
    "CONFIG_FORMAT", "CHECKPOINT_FORMAT", "PREDICTIONS_FORMAT", "DERIVED_FORMAT", "SUMMARY_FORMAT", "SPLITS",
    "RunFolder", "Predictions", "config_from_record", "predictions_name", "tsne_name", "stats_name",
    "BEST_FIELDS", "LAST_FIELDS", "load_model_state", "rng_state", "set_rng_state", "atomic_write",
    "CONFIG", "METRICS", "SUMMARY", "LAST", "BEST", "MARKERS",
]
