"""Run folder names: the one naming scheme of `cskd train`, `cskd sweep`, `cskd demo` and
`cskd reproduce`.

    <dataset>-<model>-<method>[-T<T>][-L<λ>][-n<per class>][-authors][-<precision>]-e<epochs>-s<seed>

T appears for the methods whose loss reads it, λ for those with the class-wise term; `-n` when
training on a per-class subset; `-authors` under the authors' protocol; the precision when it is not
the protocol's default (auto; fp32 under the authors' protocol), so runs in another arithmetic never
share a folder. Example:
digits-small-cskd-T4-L1-e30-s0.
"""

from __future__ import annotations

from pathlib import Path

from cskd.config import CLASS_WISE, USES_TEMPERATURE, TrainConfig

DEFAULT_RUNS_ROOT = "checkpoints"  # the runs folder of every command that is given none
SWEEP_RUNS_ROOT = f"{DEFAULT_RUNS_ROOT}/sweep"  # cskd sweep's
REPRODUCE_RUNS_ROOT = f"{DEFAULT_RUNS_ROOT}/reproduce"  # cskd reproduce's; its smoke runs: + "-smoke"
# run_name's
NAME_PATTERN = "<dataset>-<model>-<method>[-T<T>][-L<λ>][-n<per class>][-authors][-<precision>]-e<epochs>-s<seed>"


def run_name(cfg: TrainConfig) -> str:
    name = f"{cfg.dataset}-{cfg.model}-{cfg.method}"
    if cfg.method in USES_TEMPERATURE:
        name += f"-T{cfg.temperature:g}"
    if cfg.method in CLASS_WISE:
        name += f"-L{cfg.lambda_cls:g}"
    if cfg.train_per_class:
        name += f"-n{cfg.train_per_class}"
    if cfg.protocol == "authors":
        name += "-authors"
    if cfg.precision != ("fp32" if cfg.protocol == "authors" else "auto"):  # cskd.config.PROTOCOL_AUTHORS_DEFAULTS
        name += f"-{cfg.precision}"
    return f"{name}-e{cfg.epochs}-s{cfg.seed}"


def generated_folder(cfg: TrainConfig, *, runs_root: str = DEFAULT_RUNS_ROOT, existing: bool = False) -> Path:
    """`runs_root/<run_name>` when that folder holds no run, else the first free `-2`, `-3`, ...
    With `existing` (resuming): the last folder of that series that holds a run."""
    from cskd.runfolder.folder import RunFolder

    base = Path(runs_root) / run_name(cfg)
    folder, n, last = base, 1, base
    while RunFolder(folder).holds_run():
        last = folder
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return last if existing else folder
