"""The run configuration: field kinds (the one source of "what does not change results"), reading a
saved config back, the authors' protocol, and run names (the options that rebuild a config: test_options.py)."""

import dataclasses

import pytest

from cskd.config import (
    NOT_EXPERIMENT,
    RESUME_MAY_CHANGE,
    TrainConfig,
    fields_of_kind,
    resolve,
)
from cskd.errors import UserError
from cskd.runfolder import write_config
from cskd.runfolder.run_names import run_name

# Spelled out on purpose: a new field that lands here (a resume may change it, run comparisons
# ignore it) must be added to this list by hand, as a decision.
# threads is not among them: on a CPU the thread count changes the results (the order of float sums).
WHERE_AND_HOW_FAST = {"channels_last", "compile", "data_root", "decode_cache_dir", "device", "download", "loader",
                      "log_interval", "workers"}
NAMING = {"out", "preset"}


def test_every_field_has_one_kind_and_the_derived_lists_agree():
    kinds = {f.name: f.metadata.get("kind", "experiment") for f in dataclasses.fields(TrainConfig)}
    assert set(kinds.values()) == {"experiment", "execution", "naming", "seed"}
    assert set(fields_of_kind("execution")) == WHERE_AND_HOW_FAST and set(fields_of_kind("naming")) == NAMING
    assert set(RESUME_MAY_CHANGE) == WHERE_AND_HOW_FAST | NAMING
    assert set(NOT_EXPERIMENT) == WHERE_AND_HOW_FAST | NAMING | {"seed"}
    # where and how fast a run ran never distinguishes experiments; what it computes always does
    assert {"device", "workers", "compile", "channels_last", "loader", "data_root"} <= set(NOT_EXPERIMENT)
    # the CPU thread count and the precision change the numbers (cskd.training.machine, .device)
    assert not {"method", "temperature", "precision", "threads", "decode_cache", "protocol", "train_per_class"} & \
        set(NOT_EXPERIMENT)
    assert fields_of_kind("seed") == ("seed",)


def test_a_saved_config_must_name_every_field_and_no_other():
    full = TrainConfig().to_dict()
    assert TrainConfig.from_record(full) == TrainConfig()
    with pytest.raises(UserError, match="lacks the fields protocol that a saved config always holds"):
        TrainConfig.from_record({k: v for k, v in full.items() if k != "protocol"})
    with pytest.raises(UserError, match="unknown fields"):
        TrainConfig.from_record({**full, "frobnicate": 1})


def test_the_authors_protocol_fixes_its_fields_and_refuses_contradictions():
    cfg = resolve({"protocol": "authors"}, "cifar100-preact18")
    assert (cfg.val_fraction, cfg.select_on, cfg.allow_self_pair) == (0.0, "test", True)
    assert resolve({"protocol": "authors", "select_on": "test"}).select_on == "test"  # agreeing is fine
    for key, value in (("select_on", "val"), ("val_fraction", 0.1), ("allow_self_pair", False)):
        with pytest.raises(UserError, match=f"--{key.replace('_', '-')} {value} contradicts --protocol authors"):
            resolve({"protocol": "authors", key: value})


@pytest.mark.parametrize("overrides, name", [
    ({"method": "ce"}, "digits-small-ce-e30-s0"),
    ({"method": "cskd", "temperature": 1.0, "lambda_cls": 2.0, "seed": 3}, "digits-small-cskd-T1-L2-e30-s3"),
    ({"method": "kd", "teacher": "t"}, "digits-small-kd-T4-e30-s0"),
    ({"method": "label_smoothing"}, "digits-small-label_smoothing-e30-s0"),
    ({"method": "cskd", "train_per_class": 20, "protocol": "authors"}, "digits-small-cskd-T4-L1-n20-authors-e30-s0"),
])
def test_run_names_show_what_distinguishes_runs(overrides, name):
    assert run_name(resolve(overrides, "digits-small")) == name


def test_generated_folders_are_numbered_when_taken(tmp_path):
    from cskd.runfolder import RunFolder
    from cskd.runfolder.run_names import generated_folder

    cfg = resolve({"method": "ce", "epochs": 1}, "digits-small")
    first = generated_folder(cfg, runs_root=str(tmp_path))
    assert first == tmp_path / "digits-small-ce-e1-s0" and not first.exists()
    for path in (first, tmp_path / "digits-small-ce-e1-s0-2"):
        folder = RunFolder(path)
        with folder.writing():  # a run there (its config.json)
            write_config(folder, {"dataset": "digits", "model": "small", "method": "ce"}, {}, kind="imported")
    assert generated_folder(cfg, runs_root=str(tmp_path)).name == "digits-small-ce-e1-s0-3"
    assert generated_folder(cfg, runs_root=str(tmp_path), existing=True).name == "digits-small-ce-e1-s0-2"
