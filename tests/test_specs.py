"""One spec per method (cskd.method.registry) and one per data set (cskd.data.catalog): every table
derived from them equals, value for value, the table it replaced. The expected values below were
copied by hand from the code before the specs existed (config.METHODS / KD_METHODS / CLASS_WISE /
USES_TEMPERATURE, objectives.method_for, plans.METHOD_LABELS / METHOD_COST / OTHER_SIZES, demo.LABELS,
data.sets.DATASETS / FOLDER_SETS, paper.SMALL_DATASETS, catalog.OFFICIAL, bundle.*_STATS and
AUTHORS_STATS); the published counts are the publishers' own."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cskd import config
from cskd.cli.main import build_parser
from cskd.data import catalog
from cskd.data.catalog import DATASET_SPECS
from cskd.method import objectives
from cskd.method.batch import PARTNER_MODES
from cskd.method.registry import METHOD_SPECS

OLD_METHODS = ("ce", "cskd", "adacos", "virtual_softmax", "max_entropy", "label_smoothing", "ddgsd", "byot", "mixup",
               "mixup_cskd", "kd", "kd_cskd", "cskd_e")
OLD_METHOD_LABELS = {"ce": "Cross-entropy", "cskd": "CS-KD", "adacos": "AdaCos", "virtual_softmax": "Virtual-softmax",
                     "max_entropy": "Maximum-entropy", "label_smoothing": "Label-smoothing", "ddgsd": "DDGSD",
                     "byot": "BYOT", "mixup": "Mixup", "mixup_cskd": "Mixup + CS-KD", "kd": "KD",
                     "kd_cskd": "KD + CS-KD", "cskd_e": "CS-KD-E"}
OLD_METHOD_COST = {"ce": 1.0, "adacos": 1.0, "virtual_softmax": 1.0, "max_entropy": 1.0, "label_smoothing": 1.0,
                   "mixup": 1.0, "cskd": 4 / 3, "mixup_cskd": 4 / 3, "kd": 4 / 3, "kd_cskd": 5 / 3, "cskd_e": 5 / 3,
                   "ddgsd": 2.0, "byot": 1.2}
# method_for's old table: (partner mode, step function, clean) at --pairing paper
OLD_METHOD_TABLE = {
    "ce": ("none", "ce_step", False), "cskd": ("class", "cskd_step", False),
    "label_smoothing": ("none", "label_smoothing_step", False), "max_entropy": ("none", "max_entropy_step", False),
    "adacos": ("none", "head_step", False), "virtual_softmax": ("none", "head_step", False),
    "mixup": ("none", "mixup_step", False), "mixup_cskd": ("class", "mixup_cskd_step", False),
    "kd": ("none", "kd_step", False), "kd_cskd": ("class", "kd_cskd_step", False),
    "cskd_e": ("class", "cskd_e_step", True), "ddgsd": ("view", "ddgsd_step", False),
    "byot": ("none", "byot_step", False),
}

OLD_DATASETS = ("digits", "synthetic", "cifar100", "mixed", "tinyimagenet", "cub200", "dogs", "mit67", "imagenet",
                "imagefolder")
OLD_FOLDER_SETS = ("tinyimagenet", "cub200", "dogs", "mit67", "imagenet", "imagefolder")
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
TINYIMAGENET_STATS = ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
# (image size, statistics) each loader gave its DataBundle; digits computes its statistics when loaded
OLD_BUNDLE = {"digits": (8, None), "synthetic": (32, ((0.5,) * 3, (0.25,) * 3)), "cifar100": (32, CIFAR100_STATS),
              "mixed": (224, IMAGENET_STATS), "tinyimagenet": (32, TINYIMAGENET_STATS),
              **{d: (224, IMAGENET_STATS) for d in ("cub200", "dogs", "mit67", "imagenet", "imagefolder")}}
OLD_AUTHORS_STATS = {"cifar100": CIFAR10_STATS, "tinyimagenet": IMAGENET_STATS}
# The publishers' splits: (train, test, classes)
PUBLISHED = {
    "cifar100": (50_000, 10_000, 100),  # Krizhevsky 2009
    "tinyimagenet": (100_000, 10_000, 200),  # Stanford CS231n: 500 train and 50 val images per class
    "cub200": (5_994, 5_794, 200),  # CUB-200-2011's train_test_split.txt
    "dogs": (12_000, 8_580, 120),  # Stanford Dogs' train_list.mat / test_list.mat
    "mit67": (5_360, 1_340, 67),  # MIT Indoor 67's TrainImages.txt / TestImages.txt (80 + 20 per class)
    "imagenet": (1_281_167, 50_000, 1_000),  # ILSVRC2012 train / val
}
OLD_OTHER_SIZES = {"cifar100": (50_000, 10_000, 100), "mixed": (387 * 30, 5_794 + 8_580 + 1_340, 387),
                   "digits": (1_437, 360, 10)}


# --- methods -------------------------------------------------------------------------------------------------


def test_every_method_has_exactly_one_spec_in_the_old_order():
    assert tuple(METHOD_SPECS) == OLD_METHODS
    assert [s.name for s in METHOD_SPECS.values()] == list(OLD_METHODS)
    assert config.METHODS == OLD_METHODS


def test_the_old_method_tables_are_derived_unchanged():
    assert config.KD_METHODS == ("kd", "kd_cskd")
    assert config.CLASS_WISE == ("cskd", "mixup_cskd", "kd_cskd", "cskd_e")
    # The old tuple was CLASS_WISE + ("kd",); only membership was ever asked of it.
    assert set(config.USES_TEMPERATURE) == {"cskd", "mixup_cskd", "kd_cskd", "cskd_e", "kd"}
    assert {n: s.label for n, s in METHOD_SPECS.items()} == OLD_METHOD_LABELS
    assert {n: s.relative_cost for n, s in METHOD_SPECS.items()} == OLD_METHOD_COST
    from cskd.experiments.demo import LABELS, METHODS

    assert {m: LABELS[m] for m in METHODS} == {"ce": "CE", "cskd": "CS-KD"}


def test_method_for_gives_the_old_partner_step_and_clean_of_every_method():
    for name, (partner, step, clean) in OLD_METHOD_TABLE.items():
        m = objectives.method_for(config.TrainConfig(method=name))
        assert (m.partner, m.step.__name__, m.clean) == (partner, step, clean), name
        assert m.step is getattr(objectives, step)
    assert objectives.method_for(config.TrainConfig(method="cskd", pairing="in-batch")).partner == "in-batch"
    with pytest.raises(Exception, match="--pairing in-batch applies to --method cskd only; got --method kd"):
        objectives.method_for(config.TrainConfig(method="kd", pairing="in-batch"))


def test_registry_step_names_and_objectives_steps_agree_exactly():
    assert {s.step for s in METHOD_SPECS.values()} == set(objectives.STEPS)
    for name, fn in objectives.STEPS.items():
        assert fn.__name__ == name and getattr(objectives, name) is fn
    assert all(s.partner in PARTNER_MODES for s in METHOD_SPECS.values())
    assert all(s.uses_temperature for s in METHOD_SPECS.values() if s.class_wise)


def test_specs_are_frozen():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        METHOD_SPECS["ce"].label = "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        DATASET_SPECS["cifar100"].train = 1


# --- data sets -----------------------------------------------------------------------------------------------


def test_every_data_set_has_exactly_one_spec_and_the_old_tables_are_derived():
    from cskd.data import sets
    from cskd.data.prepare.sets import SETS
    from cskd.experiments import paper

    assert tuple(DATASET_SPECS) == OLD_DATASETS == sets.DATASETS
    assert [s.name for s in DATASET_SPECS.values()] == list(OLD_DATASETS)
    assert sets.FOLDER_SETS == OLD_FOLDER_SETS
    assert paper.SMALL_DATASETS == frozenset({"cifar100", "tinyimagenet"})
    assert paper.DATASETS == ("cifar100", "tinyimagenet", "cub200", "dogs", "mit67")
    assert set(SETS) == {n for n, s in DATASET_SPECS.items() if s.prepared}
    assert {n: (s.image_size, s.stats and (s.stats.mean, s.stats.std)) for n, s in DATASET_SPECS.items()} == OLD_BUNDLE
    assert {n: s.authors_stats for n, s in DATASET_SPECS.items() if s.authors_stats} == OLD_AUTHORS_STATS


def test_official_counts_are_the_published_ones():
    for name, counts in PUBLISHED.items():
        s = DATASET_SPECS[name]
        assert (s.train, s.test, s.classes) == counts, name
    assert catalog.OFFICIAL == {n: dict(zip(("train", "test", "classes"), PUBLISHED[n]))
                                for n in ("cub200", "dogs", "mit67", "tinyimagenet", "imagenet")}
    unfixed = {n for n, s in DATASET_SPECS.items() if s.train is None}
    assert unfixed == {"mixed", "imagefolder"}


def test_gpu_hour_sizes_are_the_old_ones():
    from cskd.experiments.plans import run_sizes

    for name, sizes in {**OLD_OTHER_SIZES, **{n: PUBLISHED[n] for n in catalog.OFFICIAL}}.items():
        assert run_sizes(config.TrainConfig(dataset=name)) == sizes, name


def test_the_digits_loader_gives_what_its_spec_says():
    from cskd.data.sets import load_digits_bundle

    b, s = load_digits_bundle(), DATASET_SPECS["digits"]
    assert (len(b.train), len(b.test), b.num_classes, b.image_size) == (s.train, s.test, s.classes, s.image_size)


# --- command line and import graph ---------------------------------------------------------------------------


def _help_of(parser, command: str, option: str) -> str:
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return next(a for a in sub._actions if option in a.option_strings).help


def test_cli_choices_come_from_the_specs():
    p = build_parser()
    assert f"one of: {', '.join(OLD_METHODS)} (default" in _help_of(p, "train", "--method")
    assert f"one of: {', '.join(OLD_DATASETS)} (default" in _help_of(p, "train", "--dataset")
    assert _help_of(p, "sweep", "--methods") == f"any of: {', '.join(OLD_METHODS)} (default: ce cskd)"
    assert _help_of(p, "sweep", "--temperatures") == "T grid for cskd, mixup_cskd, kd_cskd, cskd_e (default: 4)"
    assert _help_of(p, "sweep", "--teacher").startswith("kd, kd_cskd: run folder of the teacher")


def test_config_registry_and_catalog_stay_light():
    code = ("import sys; import cskd.config, cskd.method.registry, cskd.data.catalog; "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
