"""The README's main job: cross-entropy vs CS-KD on the embedded digits data set.

Finished runs are reused (a second `cskd demo` only reprints the comparison); an interrupted run is
resumed from its last checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import resolve
from .errors import UserError
from .train import run_training


def demo_run_dir(runs_root: str, method: str, seed: int) -> Path:
    return Path(runs_root) / f"demo-digits-{method}-s{seed}"


def run_demo(*, runs_root: str = "checkpoints", seeds: int = 1, epochs: int | None = None) -> int:
    if seeds <= 0:
        raise UserError(f"--seeds must be a positive integer; got {seeds}")
    t0 = time.time()
    results: dict[str, list[float]] = {"ce": [], "cskd": []}
    for seed in range(seeds):
        for method in ("ce", "cskd"):
            out = demo_run_dir(runs_root, method, seed)
            cfg = resolve({"method": method, "seed": seed, "epochs": epochs, "out": str(out)}, "digits-small")
            summary = run_training(cfg, resume=(out / "last.pt").is_file())
            if "test_acc" not in summary:
                raise UserError(f"{out} did not finish; run `cskd demo` again to resume it")
            results[method].append(summary["test_acc"])
    print(f"\nTest accuracy on digits ({len(results['ce'])} seed(s), {len(_test_size(runs_root))} test images):")
    for method, accs in results.items():
        print(f"  {method:<5} " + "  ".join(f"{100 * a:.2f}%" for a in accs))
    print(f"demo finished in {time.time() - t0:.1f} s; runs are in {Path(runs_root)}/demo-digits-*")
    return 0


def _test_size(runs_root: str):
    from .data import load_digits_bundle

    return load_digits_bundle().test.labels
