"""Facts about the data sets cskd knows by name, independent of how they are loaded.

OFFICIAL: the publishers' counts of the data sets `cskd prepare` makes (train images, test
images, classes); every prepared copy is checked against them.
"""

# The official figures every prepared copy is checked against (tests replace this table for their miniatures).
OFFICIAL = {
    "cub200": {"train": 5_994, "test": 5_794, "classes": 200},
    "dogs": {"train": 12_000, "test": 8_580, "classes": 120},
    "mit67": {"train": 5_360, "test": 1_340, "classes": 67},
    "tinyimagenet": {"train": 100_000, "test": 10_000, "classes": 200},
    "imagenet": {"train": 1_281_167, "test": 50_000, "classes": 1_000},
}
