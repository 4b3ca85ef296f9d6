"""Starting or continuing a run: which folder, whether to resume, and which settings a resumed run
keeps. Nothing here trains; cskd.training.trainer calls `open_run` while holding the folder's lock, so the
state it checks cannot change before the run's first files are written.

--resume continues the run in the folder from last.pt with the run's saved config; explicit
options may change only where and how fast it runs (cskd.config.RESUME_MAY_CHANGE). They are
compared with the saved config, merged into it and validated once (`resumed_config`); no config is
resolved from the command line for a resume of `--out` (it would describe another run).
--resume auto (for torchrun's restarts, preempted jobs, sweeps) continues when the folder holds a
checkpoint of this run, starts when it holds no run, and does nothing when the run has finished.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cskd.config import RESUME_MAY_CHANGE, TrainConfig, validate
from cskd.errors import UserError
from cskd.runfolder.checkpoints import LAST_FIELDS, read_checkpoint
from cskd.runfolder.config_file import read_record
from cskd.runfolder.folder import RunFolder
from cskd.runfolder.layout import CONFIG, LAST
from cskd.runfolder.run_config import config_from_record, read_config
from cskd.runfolder.run_names import generated_folder
from cskd.runfolder.training_log import finished_summary


@dataclass
class Start:
    folder: RunFolder
    cfg: TrainConfig  # what the run trains with: a resumed run's own config
    checkpoint: dict | None = None  # last.pt to continue from; None: a fresh start
    finished: dict | None = None  # the summary of a run that has already finished (resume auto)
    repair_config: bool = False  # config.json is missing or damaged: rewrite it from last.pt
    run_id: str | None = None  # set when a new run's config.json is written


def choose_folder(cfg: TrainConfig | None, resume, explicit: dict | None = None) -> RunFolder:
    """--out, or the folder generated from `cfg` (with resume: the last one of the series that holds a run)."""
    out = (explicit or {}).get("out") or (cfg.out if cfg is not None else "")
    if out:
        return RunFolder(out)
    if cfg is None:
        raise ValueError("choose_folder needs --out or the config the folder is named after")
    return RunFolder(generated_folder(cfg, existing=bool(resume)))


def changed_settings(folder: RunFolder, cfg: TrainConfig) -> list[str]:
    """The options (as '--flag old -> new') whose value in the run already in `folder` differs from
    `cfg`, leaving out those a resumed run may change; [] when the folder holds no config.json."""
    if not folder.file(CONFIG).is_file():
        return []
    saved, new = read_config(folder).to_dict(), cfg.to_dict()
    return [f"--{k.replace('_', '-')} {saved.get(k)} -> {new[k]}" for k in _differing(saved, new)]


def _differing(old: dict, new: dict) -> list[str]:
    """The keys of `new` whose value differs in `old`, leaving out those a resumed run may change."""
    return [k for k in new if k not in RESUME_MAY_CHANGE and old.get(k) != new[k]]


def _refuse_foreign(folder: RunFolder) -> None:
    foreign = folder.foreign_files()
    if foreign:
        raise UserError(f"{folder} holds {', '.join(foreign)}, which cskd did not write (or which changed since); "
                        f"cskd never replaces such files: move them away, or choose another --out")


def open_run(folder: RunFolder, cfg: TrainConfig | None, *, resume=False, overwrite: bool = False,
             explicit: dict | None = None) -> Start:
    """Decide how the run in `folder` starts. Writes nothing; raises UserError for every conflict.

    `cfg`: the config the command line describes; None only with resume=True (a resumed run
    trains with its saved config). `explicit`: the options given on the command line; a resumed
    run refuses those that would change what it computes and applies the others."""
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pick one")
    _refuse_foreign(folder)
    has_checkpoint = folder.file(LAST).is_file()
    if resume == "auto":
        other = _other_settings(folder, cfg) if folder.holds_run() else ""
        if other:
            raise UserError(f"--resume auto: {folder} holds another run ({other}); choose another --out")
        summary = finished_summary(folder)
        if summary:
            return Start(folder, read_config(folder), finished=summary)
        if not has_checkpoint:
            return Start(folder, cfg)  # nothing to continue: start (replacing cskd's own files, if any)
        resume = True
    if resume:
        return _resume(folder, explicit or {})
    if folder.holds_run() and not overwrite:
        raise UserError(f"{folder} already holds a run; pass --resume to continue it, --overwrite to replace it, "
                        f"or choose another --out")
    return Start(folder, cfg)


def _other_settings(folder: RunFolder, cfg: TrainConfig) -> str:
    """'' when the run in `folder` has `cfg`'s settings, else what differs (or why it is unreadable)."""
    try:
        return "; ".join(changed_settings(folder, cfg)[:3])
    except UserError as e:
        return str(e)


def _resume(folder: RunFolder, explicit: dict) -> Start:
    if not folder.file(LAST).is_file():
        hint = ("it stopped before its first epoch ended; start it again with --overwrite" if folder.holds_run()
                else "train without --resume to start it")
        raise UserError(f"--resume: {folder} holds no checkpoint (last.pt); {hint}")
    fix = "start the run again with --overwrite"
    ckpt = read_checkpoint(folder, "last", fields=LAST_FIELDS, fix=fix)
    saved = config_from_record(ckpt["config"], folder.file(LAST), fix=fix)
    cfg = resumed_config(folder, saved, explicit)
    try:
        record = read_record(folder)
        in_json = config_from_record(record["config"], folder.file(CONFIG), fix=fix)
    except UserError:  # config.json lost or damaged: last.pt holds the run's config and id
        return Start(folder, cfg, checkpoint=ckpt, repair_config=True)
    differ = [f"--{k.replace('_', '-')}" for k in _differing(in_json.to_dict(), saved.to_dict())]
    if record["meta"].get("run_id") != ckpt.get("run_id") or differ:
        why = f"options {', '.join(differ[:3])} differ" if differ else "another run id"
        raise UserError(f"{folder.file(LAST)} belongs to another run than {folder.file(CONFIG)} ({why}); {fix}")
    return Start(folder, cfg, checkpoint=ckpt)


def resumed_config(folder: RunFolder, saved: TrainConfig, explicit: dict) -> TrainConfig:
    """The config a resumed run trains with: `saved` with the options given merged into it, in one
    pass. A given option that changes what the run computes (not in RESUME_MAY_CHANGE) must equal
    its saved value, else UserError naming them all; the others replace the saved value (the run
    folder stays the saved one). The result is validated."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in explicit.items() if v is not None and k in names}
    merged = TrainConfig.from_dict({**saved.to_dict(), **given})  # from_dict: lists given as tuples compare equal
    changed = sorted(k for k in given if k not in RESUME_MAY_CHANGE and getattr(merged, k) != getattr(saved, k))
    if changed:
        raise UserError(f"--resume continues {folder} with its saved config; these options differ from it: "
                        f"{', '.join('--' + k.replace('_', '-') for k in changed)} (drop them, or start a new run)")
    cfg = dataclasses.replace(merged, out=saved.out)
    validate(cfg)
    return cfg
