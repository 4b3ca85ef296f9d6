"""Data: the data sets cskd loads by name, their splits, image folders, the decode-once cache,
batch sources with on-device augmentation, and `cskd prepare` (cskd.data.prepare)."""
