"""The names of a run folder's files (one place: the folder and every reader and writer use these)."""

from __future__ import annotations

SPLITS = ("test", "val")  # the splits a run folder holds predictions (and caches) of
DEFAULT_SPLIT = SPLITS[0]  # test: the split predicted, analysed and shown when none is named
CONFIG, METRICS, SUMMARY, LAST, BEST = "config.json", "metrics.jsonl", "summary.json", "last.pt", "best.pt"
FIXED_NAMES = (CONFIG, METRICS, SUMMARY, LAST, BEST)
ARRAY_PREFIXES = ("predictions-", "tsne-", "stats-")  # + split + ".npz", split in SPLITS
MARKERS = (CONFIG, LAST, BEST, METRICS)  # any of these (cskd's own) means the folder holds a run
KINDS = ("trained", "imported")


def predictions_name(split: str) -> str:
    return f"predictions-{split}.npz"


def tsne_name(split: str) -> str:
    return f"tsne-{split}.npz"


def stats_name(split: str) -> str:
    return f"stats-{split}.npz"


def is_cskd_name(name: str) -> bool:
    """A name cskd writes in a run folder (`predictions-mine.npz` is not one: "mine" is no split)."""
    return name in FIXED_NAMES or any(name == f"{p}{s}.npz" for p in ARRAY_PREFIXES for s in SPLITS)
