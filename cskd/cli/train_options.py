"""`cskd train`'s and `cskd sweep`'s TrainConfig options, generated from the fields' metadata
(cskd.config: help text, group, choices, ...), and back: train_arguments rebuilds the options of a
config, for runs launched by torchrun from a sweep.

Every field option's argparse default is None, meaning "not given": a preset or the field's
default fills it (cskd.config.resolve), and a resumed run compares only the given ones with its
saved config (cskd.training.session). The help shows the field's default, "(default: X)".
"""

from __future__ import annotations

import argparse
import dataclasses

from cskd.config import METHODS, PRESETS, TrainConfig
from cskd.data.catalog import DATASET_SPECS
from cskd.runfolder.run_names import DEFAULT_RUNS_ROOT, NAME_PATTERN

# help groups of `cskd train`, in the order shown: group key -> title
GROUPS = {"run": "run", "data": "data", "model": "model", "method": "method",
          "baselines": "baselines (defaults: each method's paper; see cskd/method/baselines.py)",
          "optimisation": "optimisation"}
# `cskd train` options that are no TrainConfig field (and `preset`, which resolve() takes apart)
TRAIN_ONLY = ("preset", "resume", "overwrite", "progress", "command", "func")


def nonempty_path(text: str) -> str:
    """argparse type of a path option: an empty path would silently mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a folder path")
    return text


def option_fields() -> tuple[dataclasses.Field, ...]:
    """The TrainConfig fields that have a command-line option (all of them have help metadata)."""
    return tuple(f for f in dataclasses.fields(TrainConfig) if "help" in f.metadata)


SWEEP_OVERRIDES = tuple(f.name for f in option_fields() if f.metadata.get("sweep"))  # what `cskd sweep` may set


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _one_of(name: str) -> tuple[str, ...] | None:
    """The names a free-text field accepts (checked where they are used, so listed in the help only)."""
    if name == "dataset":
        return tuple(DATASET_SPECS)
    if name == "model":
        from cskd.models import MODELS
        return tuple(MODELS)
    return {"method": tuple(METHODS), "preset": tuple(PRESETS)}.get(name)


def shown_default(f: dataclasses.Field) -> str:
    """The field's default as the help shows it; ", or the preset's" when a preset may set it."""
    value = f.default
    if "shown" in f.metadata:
        text = f.metadata["shown"].format(runs=DEFAULT_RUNS_ROOT, run_name=NAME_PATTERN)
    elif isinstance(value, bool):
        text = "on" if value else "off"
    elif isinstance(value, tuple):
        text = " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "none"
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    if any(f.name in fields for fields in PRESETS.values()):
        text += ", or the preset's"
    return text


def with_default(help_text: str, default: str) -> str:
    """`help_text (default: default)`, with argparse's % escaped."""
    return f"{help_text} (default: {default})".replace("%", "%%")


def _add_field_option(group, f: dataclasses.Field, help_text: str) -> None:
    meta, kind = f.metadata, str(f.type)
    names = [flag(f.name), *([meta["alias"]] if "alias" in meta else [])]
    one_of = _one_of(f.name)
    if one_of:
        help_text += f"; one of: {', '.join(one_of)}"
    spec: dict = {"help": with_default(help_text, shown_default(f)), "default": None}
    if kind == "bool":
        spec.update(action="store_const", const=True)
    elif kind == "bool | None":
        spec.update(action=argparse.BooleanOptionalAction)
    else:
        element = kind.removeprefix("tuple[").removesuffix(", ...]")
        spec["type"] = nonempty_path if meta.get("path") else {"int": int, "float": float, "str": str}[element]
        if element != kind:
            spec["nargs"] = "+"
        for key in ("choices", "metavar"):
            if key in meta:
                spec[key] = meta[key]
    group.add_argument(*names, **spec)


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Every TrainConfig field's option, in the help groups of GROUPS, and train's own options."""
    groups = {key: p.add_argument_group(title) for key, title in GROUPS.items()}
    for f in sorted(option_fields(), key=lambda f: f.metadata["kind"] != "naming"):  # --preset, --out first
        _add_field_option(groups[f.metadata["group"]], f, f.metadata["help"])
    g = groups["run"]
    g.add_argument("--resume", nargs="?", const=True, default=False, choices=("auto",),
                   help="continue the run in --out from its last.pt; `--resume auto`: continue when there is a "
                        "checkpoint of this run, start when there is none, do nothing when it has finished "
                        "(for torchrun's restarts and preempted jobs)")
    g.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help=with_default("force the per-step progress bar on/off", "on a terminal only"))


def add_sweep_overrides(p: argparse.ArgumentParser) -> None:
    """The options of SWEEP_OVERRIDES, as `cskd train` spells them (a string `sweep` metadata: its help)."""
    for f in option_fields():
        sweep = f.metadata.get("sweep")
        if sweep:
            _add_field_option(p, f, sweep if isinstance(sweep, str) else f.metadata["help"])


def given_options(args: argparse.Namespace, names=None) -> dict:
    """The TrainConfig fields (of `names`, default all but preset) given on the command line."""
    names = names or [f.name for f in option_fields() if f.name not in TRAIN_ONLY]
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def train_arguments(cfg: TrainConfig) -> list[str]:
    """`cskd train` options that resolve to exactly `cfg` (every field explicit), e.g. for a run
    launched by torchrun from `cskd sweep --nproc-per-node`."""
    args = []
    for f in option_fields():
        value, kind = getattr(cfg, f.name), str(f.type)
        if kind == "bool":
            args += [flag(f.name)] if value else []
        elif kind == "bool | None":
            args += [] if value is None else [flag(f.name) if value else "--no-" + flag(f.name)[2:]]
        elif isinstance(value, (tuple, list)):
            args += [flag(f.name), *map(str, value)] if value else []
        elif value != "":  # "" is the default of every str field that may be empty, and an empty path is refused
            args += [flag(f.name), str(value)]
    return args


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Field defaults <- --preset <- the options given."""
    from cskd.config import resolve

    return resolve(given_options(args), args.preset)
