"""`cskd train`'s and `cskd sweep`'s options, generated from TrainConfig's fields: each shows the
field's default (and no other), train_arguments is their inverse, and a resume merges the options
given with the saved config once."""

import argparse
import dataclasses
import re

import pytest

from cskd.cli.main import build_parser
from cskd.cli.train_options import SWEEP_OVERRIDES, config_from_args, given_options, train_arguments
from cskd.config import PRESETS, TrainConfig, resolve
from cskd.errors import UserError
from cskd.training.session import resumed_config

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _actions(command: str) -> dict:
    """option string -> argparse action of a `cskd COMMAND`."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {s: a for a in sub.choices[command]._actions for s in a.option_strings}


def _parse_shown(f: dataclasses.Field, text: str):
    """The value a shown default stands for, parsed independently of how it was written."""
    if isinstance(f.default, bool):
        return {"off": False, "on": True}[text]
    if isinstance(f.default, tuple):
        return () if text == "none" else tuple(type(f.default[0])(v) for v in text.split())
    return type(f.default)(text)


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_every_field_option_shows_the_fields_default(command):
    actions = _actions(command)
    names = [n for n in FIELDS if n in SWEEP_OVERRIDES] if command == "sweep" else list(FIELDS)
    assert names  # every field has a train option; the sweep ones are a subset
    for name in names:
        f, action = FIELDS[name], actions["--" + name.replace("_", "-")]
        assert action.default is None and action.dest == name  # not given = None: presets and resume rely on it
        body, _, shown = action.help.rpartition(" (default: ")
        assert shown.endswith(")") and "default" not in body.lower(), action.help
        shown = shown[:-1].replace("%%", "%")
        preset_sets_it = any(name in p for p in PRESETS.values())
        assert shown.endswith(", or the preset's") == preset_sets_it, name
        shown = shown.removesuffix(", or the preset's")
        if "shown" in f.metadata:  # a sentinel default: its meaning is shown instead
            assert f.default in ("", None) and shown and shown != str(f.default)
        else:
            assert _parse_shown(f, shown) == f.default, name
            assert not re.search(rf"(?<!Eq\. )\({re.escape(shown)}\)", body), name  # the old style: "(30)"


def test_no_help_of_train_sweep_dashboard_demo_or_reproduce_states_another_default():
    for command in ("train", "sweep", "dashboard", "demo", "reproduce", "models"):
        for action in set(_actions(command).values()):
            text = action.help or ""
            assert text.lower().count("default") <= 1, (command, text)
            if "default" in text.lower():
                assert "(default: " in text and text.endswith(")"), (command, text)
            default = action.default
            if default not in (None, False, argparse.SUPPRESS) and not isinstance(default, bool):
                words = default if isinstance(default, list) else [default]
                shown = " ".join(f"{w:g}" if isinstance(w, float) else str(w) for w in words)
                assert text.endswith(f"(default: {shown})"), (command, action.option_strings, text)


def test_sweep_overrides_are_the_fields_marked_for_it_spelt_as_train_spells_them():
    assert set(SWEEP_OVERRIDES) == {"epochs", "teacher", "device", "threads", "pairing", "data_root", "download",
                                    "protocol", "select_on", "val_fraction", "split_seed", "train_per_class",
                                    "precision"}
    train, sweep = _actions("train"), _actions("sweep")
    for name in SWEEP_OVERRIDES:
        option = "--" + name.replace("_", "-")
        a, b = train[option], sweep[option]
        assert (type(a), a.type, a.choices, a.nargs, a.const) == (type(b), b.type, b.choices, b.nargs, b.const)
    args = build_parser().parse_args(["sweep", "--epochs", "3", "--download", "--pairing", "in-batch", "--seeds", "4"])
    assert given_options(args, SWEEP_OVERRIDES) == {"epochs": 3, "download": True, "pairing": "in-batch"}


# Non-default configs; together they give every field but preset and out a value other than its default.
INVERSE_CASES = [
    ({"method": "cskd", "channels_last": True, "compile": True}, "cifar100-preact18"),
    ({"method": "mixup", "dataset": "mixed", "mixed_roots": ("a", "b"), "mixed_per_class": 7, "channels_last": False,
      "mixup_alpha": 0.4}, "digits-small"),
    ({"method": "kd", "teacher": "t", "protocol": "authors", "download": True, "train_per_class": 5,
      "kd_alpha": 0.5, "temperature": 2.5}, None),
    ({"method": "cskd", "lambda_cls": 0.5, "partner_bn": "eval", "allow_self_pair": True, "pairing": "in-batch",
      "lr_milestones": (0.3, 0.6, 0.9), "select_on": "test", "val_fraction": 0.25, "split_seed": 7, "seed": 11,
      "width": 16, "data_root": "d d", "decode_cache": "off", "decode_cache_dir": "cache", "precision": "fp32",
      "device": "cpu", "workers": 0, "loader": "host", "threads": 3, "log_interval": 5, "sync_bn": True,
      "epochs": 3, "batch_size": 10, "lr": 0.05, "momentum": 0.0, "weight_decay": 5e-4, "model": "small_nobn"},
     None),
    ({"method": "label_smoothing", "ls_epsilon": 0.2, "me_beta": 0.3, "lambda_e": 2.0, "ddgsd_lambda_kl": 0.5,
      "ddgsd_lambda_mmd": 1e-3, "ddgsd_temperature": 2.0, "byot_alpha": 0.1, "byot_beta": 0.2,
      "byot_temperature": 1.5, "dataset": "synthetic", "lr_milestones": (1 / 3, 2 / 3)}, "imagenet-resnet50"),
]


@pytest.mark.parametrize("overrides, preset", INVERSE_CASES)
def test_parsing_train_arguments_gives_the_config_back(overrides, preset):
    cfg = resolve({**overrides, "out": "x"}, preset)
    assert cfg != TrainConfig()
    assert config_from_args(build_parser().parse_args(["train", *train_arguments(cfg)])) == cfg


def test_the_inverse_cases_change_every_field():
    changed = {k for overrides, _ in INVERSE_CASES for k, v in overrides.items() if v != FIELDS[k].default}
    assert set(FIELDS) - changed == {"preset", "out"}  # preset: the cases' presets; out: set by every case


def test_a_resume_of_out_resolves_no_config_from_the_command_line(monkeypatch):
    import cskd.cli.main as main_module
    import cskd.training.trainer as trainer

    seen = {}
    monkeypatch.setattr(trainer, "run_training", lambda cfg, **kw: seen.update(cfg=cfg, **kw))
    monkeypatch.setattr(main_module, "resolve", lambda *a: pytest.fail("a config was resolved"))
    # --method kd alone would be refused by resolve (it needs --teacher); the saved run decides
    assert main_module.main(["train", "--out", "run", "--resume", "--workers", "0", "--method", "kd"]) == 0
    assert seen["cfg"] is None and seen["resume"] is True
    assert seen["explicit"] == {"out": "run", "workers": 0, "method": "kd"}


def test_resumed_config_refuses_result_changes_applies_the_rest_and_validates():
    saved = resolve({"method": "ce", "epochs": 2, "out": "old/run", "workers": 2}, "digits-small")
    cfg = resumed_config("F", saved, {"workers": 0, "device": "cpu", "out": "new", "method": "ce",
                                      "lr_milestones": [0.5, 0.75], "epochs": None})
    assert cfg == dataclasses.replace(saved, workers=0, device="cpu")  # the folder stays the saved one
    with pytest.raises(UserError) as e:
        resumed_config("F", saved, {"lr": 0.5, "epochs": 3, "workers": 0})
    assert str(e.value) == ("--resume continues F with its saved config; these options differ from it: "
                            "--epochs, --lr (drop them, or start a new run)")
    with pytest.raises(UserError, match="--workers must be at most 256"):
        resumed_config("F", saved, {"workers": 999})
