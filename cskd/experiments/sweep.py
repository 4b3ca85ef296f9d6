"""`cskd sweep`: a grid of presets x methods x (T, λ) x seeds, one run folder each, then the tables.

Run folders are named as every run (cskd.runfolder.run_names) under `--runs`. A finished run is
skipped, an interrupted one resumed (`--resume auto`), so re-running the same command after a kill
continues where it stopped. The T and λ grid applies
to the methods with a class-wise term (cskd, mixup_cskd, kd_cskd, cskd_e); the others get one run
per seed. At the end every data set's runs are analysed together (`cskd analyze`): mean ± std
tables over seeds (the paper's Tables 1/6 layout) and, when the grid has several T or λ, the
Table 7 T x λ heatmap.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from cskd.config import CLASS_WISE, KD_METHODS, TrainConfig, resolve
from cskd.errors import UserError
from cskd.experiments.launch import check_data, train_item
from cskd.experiments.plans import assumed_tflops
from cskd.method.registry import methods_where
from cskd.runfolder.folder import RunFolder
from cskd.runfolder.layout import LAST
from cskd.runfolder.run_names import SWEEP_RUNS_ROOT, run_name
from cskd.runfolder.training_log import finished_summary
from cskd.training.session import changed_settings


def plan(presets, methods, seeds, temperatures, lambdas, overrides: dict, runs_root: str) -> list:
    """All (run folder, config) pairs of the grid, validated before anything is trained."""
    if not (presets and methods and seeds and temperatures and lambdas):
        raise UserError("a sweep needs at least one preset, method, seed, temperature and lambda")
    items = []
    for preset, method, seed in itertools.product(presets, methods, seeds):
        grid = itertools.product(temperatures, lambdas) if method in CLASS_WISE else [(None, None)]
        for t, lam in grid:
            # --pairing is a CS-KD option (the other methods keep the paper's data path), --teacher a KD one
            per_method = {k: v for k, v in overrides.items()
                          if (k != "pairing" or method in methods_where("in_batch_pairing"))
                          and (k != "teacher" or method in KD_METHODS)}
            cfg = resolve({**per_method, "method": method, "seed": seed, "temperature": t, "lambda_cls": lam},
                          preset)
            out = Path(runs_root) / run_name(cfg)
            cfg.out = str(out)
            items.append((out, cfg))
    names = [out.name for out, _ in items]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"the grid names {', '.join(repeated)} more than once; drop the repeated seeds, methods, "
                        f"temperatures or lambdas")
    for out, cfg in items:  # a folder from an earlier sweep with other settings would be reused silently
        changed = changed_settings(RunFolder(out), cfg)
        if changed:
            raise UserError(f"{out} holds a run with other settings ({'; '.join(changed[:3])}); "
                            f"use another --runs folder, or delete that run")
    return items


def run_sweep(*, presets, methods, seeds, temperatures=(TrainConfig.temperature,),
              lambdas=(TrainConfig.lambda_cls,), overrides=None, runs_root: str = SWEEP_RUNS_ROOT,
              report: str | None = None, progress: bool | None = None,
              nproc_per_node: int = 1, launch=None, status: bool = False) -> dict:
    """Train (or skip, or resume) every run of the grid, then analyse each data set's runs.
    `nproc_per_node` > 1: each run is trained by torchrun over that many local processes (one run
    at a time across all local GPUs). `launch` (cskd.experiments.slurm.Launch): through submitit
    instead; the report is written once every run is finished. `status`: print where the runs stand
    (launch.show_status) and train nothing.

    Returns {"trained": [...], "resumed": [...], "skipped": [...], "reports": {dataset: folder}}.
    """
    from cskd.evaluation.analyze import analyze

    items = plan(presets, methods, seeds, temperatures, lambdas, dict(overrides or {}), runs_root)
    if status:
        launch.show_status([(cfg, False) for _, cfg in items], runs_root, tflops=assumed_tflops(items[0][1].precision))
        return {}
    report_root = Path(report) if report else Path(runs_root) / "report"
    if report_root.exists() and not report_root.is_dir():  # found out now, not after hours of training
        raise UserError(f"--out {report_root} exists and is not a folder; choose a folder for the report")
    finished = {out for out, _ in items if finished_summary(RunFolder(out))}
    check_data([cfg for out, cfg in items if out not in finished])
    done = {"trained": [], "resumed": [], "skipped": [], "reports": {}}
    t0 = time.time()
    launched = set()
    if launch is not None:
        if not launch.run([(cfg, False) for _, cfg in items], runs_root, name="sweep",
                          tflops=assumed_tflops(items[0][1].precision)):
            print("the report is written once every run is finished: the same command then (or --status meanwhile)")
            return done
        launched = {out for out, _ in items if out not in finished}
        finished = finished | launched
    for i, (out, cfg) in enumerate(items, 1):
        print(f"[{i}/{len(items)}] {out.name}")
        if out in finished:
            done["trained" if out in launched else "skipped"].append(out.name)
            continue
        resumed = RunFolder(out).file(LAST).is_file()
        train_item(cfg, nproc_per_node=nproc_per_node, progress=progress)
        done["resumed" if resumed else "trained"].append(out.name)
    by_dataset: dict[str, list[str]] = {}
    for out, cfg in items:
        by_dataset.setdefault(cfg.dataset, []).append(str(out))
    for dataset, runs in by_dataset.items():
        folder = report_root if len(by_dataset) == 1 else report_root / dataset
        analyze(runs, str(folder), progress=progress)
        done["reports"][dataset] = str(folder)
        print(f"{dataset}: {folder}/table.md")
    print(f"sweep of {len(items)} runs: {len(done['trained'])} trained, {len(done['resumed'])} resumed, "
          f"{len(done['skipped'])} already finished; {time.time() - t0:.1f} s")
    return done
