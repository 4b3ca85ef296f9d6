"""The README's main job: cross-entropy vs CS-KD on the embedded digits data set, then their analysis.

Finished runs are reused (a second `cskd demo` only re-analyses); an interrupted run is resumed
from its last checkpoint; a run made with other settings (e.g. another --epochs) is trained again.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import resolve
from .errors import UserError
from .train import changed_settings, run_training


def demo_run_dir(runs_root: str, method: str, seed: int) -> Path:
    return Path(runs_root) / f"demo-digits-{method}-s{seed}"


def run_demo(*, runs_root: str = "checkpoints", seeds: int = 1, epochs: int | None = None,
             dashboard: bool = False) -> int:
    from .analyze import analyze

    if seeds <= 0:
        raise UserError(f"--seeds must be a positive integer; got {seeds}")
    t0 = time.time()
    runs = []
    for seed in range(seeds):
        for method in ("ce", "cskd"):
            out = demo_run_dir(runs_root, method, seed)
            cfg = resolve({"method": method, "seed": seed, "epochs": epochs, "out": str(out)}, "digits-small")
            changed = changed_settings(out, cfg)
            if changed:  # e.g. another --epochs: the demo's own folder is trained again with the new settings
                print(f"run {out}: settings changed ({'; '.join(changed)}), training it again")
                run_training(cfg, overwrite=True)
            elif (out / "summary.json").is_file():
                print(f"run {out}: finished earlier, reused")
            else:  # resume an interrupted run; restart one killed before its first checkpoint
                resume = (out / "last.pt").is_file()
                run_training(cfg, resume=resume, overwrite=not resume and out.exists())
            runs.append(str(out))
    report = Path(runs_root) / "demo-analysis"
    metrics = analyze(runs, str(report), progress=False)
    print(f"\nDigits test set (360 images), {seeds} seed(s) per method:")
    print(f"  {'run':<22} {'test acc':>9} {'top-5 err':>9} {'ECE':>7} {'NLL':>7} {'R@1':>7}")
    for run in runs:
        m = metrics[Path(run).name]
        print(f"  {Path(run).name:<22} {100 * (1 - m['top1_error']):8.2f}% {100 * m['top5_error']:8.2f}% "
              f"{100 * m['ece']:6.2f}% {m['nll']:7.3f} {100 * m['recall_at_1']:6.2f}%")
    print(f"\ndemo finished in {time.time() - t0:.1f} s")
    print(f"  runs:    {Path(runs_root)}/demo-digits-*")
    print(f"  report:  {report}/table.md, {report}/metrics.json")
    print(f"  figures: {report}/figures/ (reliability diagram, log-probability histograms, t-SNE; PNG and PDF)")
    print(f"  browse:  cskd dashboard --runs {runs_root}")
    if dashboard:
        from .dashboard import launch

        return launch(runs_root)
    return 0
